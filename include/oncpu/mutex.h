/* SPDX-License-Identifier: MIT */
/*
 * oncpu/mutex.h - an adaptive mutex that spins only while its owner runs.
 *
 * A drop-in for a default (non-recursive, non-robust, process-private)
 * pthread_mutex_t:
 *
 *	static oncpu_mutex_t m = ONCPU_MUTEX_INIT;
 *	oncpu_mutex_lock(&m); ... oncpu_mutex_unlock(&m);
 *
 * The mutex names its owner by its notification-block index
 * (oncpu/desched.h), so a waiter reads the owner's on-CPU word: it spins
 * while the owner runs, for at most twice what a futex sleep and wake-up
 * cost on this machine (measured once per process) and only while the
 * spinner keeps its own CPU, and sleeps on a futex as soon as the owner is
 * switched out. Without a deschedule provider ("none") the owner's state is
 * unknown and a waiter spins a bounded, adaptive number of times (glibc's
 * PTHREAD_MUTEX_ADAPTIVE_NP estimate). At most one waiter fewer than there
 * are CPUs spins at once; the others sleep.
 * A spinner leaves a just-freed lock to its last owner for a while (8 to
 * 512 pauses, adapted per mutex) and sleeps when that owner takes it back
 * (a busy lock stays on one CPU: moving it costs more than a short critical
 * section).
 *
 * Wake-ups: unlock makes a system call only when a waiter sleeps, and at
 * most one woken waiter is on its way at a time (an owner that keeps
 * re-taking a busy lock does not wake every sleeper in turn). The
 * uncontended lock and unlock are one atomic instruction each, and no
 * system call.
 *
 * Fairness: the lock is not FIFO; a running thread may take it ahead of a
 * sleeper (barging keeps the throughput of a short critical section). A
 * sleeper that has waited longer than ONCPU_MUTEX_STARVATION_NS asks for a
 * hand-off (one such request per mutex at a time): spinners and sleepers
 * then leave the free lock alone, and the next unlock gives the lock
 * directly to the requester. So a waiter is passed over for at most about
 * ONCPU_MUTEX_STARVATION_NS, plus one critical section per earlier starving
 * waiter, plus the time to wake it. (Only a new arrival's first attempt
 * and trylock may still take a free lock ahead of it.)
 *
 * fork(): the child gets a copy of the mutex. A lock held by the thread that
 * called fork() is held by the child's thread, which may unlock it. A lock
 * held by another thread of the parent stays held for ever in the child (as
 * with pthread mutexes: take such locks in a pthread_atfork() handler); its
 * waiters sleep rather than spin, since the owner's block reads "off CPU" in
 * the child. Waiter counts copied from the parent are discarded (they carry
 * the process's fork generation).
 *
 * Not checked (as PTHREAD_MUTEX_NORMAL): unlocking a mutex the caller does
 * not own, relocking it (deadlock), destroying a locked mutex. Not async-
 * signal-safe; not for process-shared memory.
 */
#ifndef ONCPU_MUTEX_H
#define ONCPU_MUTEX_H

#include <stdint.h>

#include <oncpu/config.h>

ONCPU_BEGIN_DECLS

/* A sleeper waiting longer than this turns on hand-off (see above). */
#define ONCPU_MUTEX_STARVATION_NS 2000000

struct oncpu_mutex {
	uint32_t _state;   /* futex word: locked, waiters */
	uint32_t _handoff; /* a starving sleeper's id, or 0; its futex word */
	uint32_t _owner;   /* the owner's id while locked: what waiters look up */
	uint32_t _spins;   /* adaptive spin estimate (owners nobody tracks) */
	uint64_t _aux;     /* spinners, wake-ups in flight, fork generation */
};
typedef struct oncpu_mutex oncpu_mutex_t;

/* clang-format off */
#define ONCPU_MUTEX_INIT {0, 0, 0, 0, 0}
/* clang-format on */

/* oncpu_mutex_init - same as ONCPU_MUTEX_INIT; returns 0. */
ONCPU_API int oncpu_mutex_init(oncpu_mutex_t *m);
/* oncpu_mutex_destroy - 0, or EBUSY when the mutex is locked. */
ONCPU_API int oncpu_mutex_destroy(oncpu_mutex_t *m);

/* oncpu_mutex_lock - wait until the calling thread owns m. */
ONCPU_API void oncpu_mutex_lock(oncpu_mutex_t *m);
/* oncpu_mutex_trylock - 0 when the caller now owns m, EBUSY when another
 * thread owns it (or it is being handed to a sleeper). Never waits. */
ONCPU_API int oncpu_mutex_trylock(oncpu_mutex_t *m);
/* oncpu_mutex_unlock - release m, which the caller owns. */
ONCPU_API void oncpu_mutex_unlock(oncpu_mutex_t *m);

ONCPU_END_DECLS

#endif /* ONCPU_MUTEX_H */
