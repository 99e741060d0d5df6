/* SPDX-License-Identifier: MIT */
/*
 * mutex.c - the adaptive mutex (contract in oncpu/mutex.h).
 *
 * _word (the futex word): the owner in the low 30 bits (0: free; a block
 * index, 1 .. ONCPU_DESCHED_MAX_INDEX; ANON for an owner without a block,
 * i.e. an exiting thread or ENOMEM; HANDOFF while the lock is handed to a
 * sleeper) and WAITERS (bit 31): a thread may sleep in futex_wait().
 *
 * _aux: the number of spinners, the starving flag, and the fork generation
 * they belong to (an _aux of an older generation was copied by fork() and
 * reads as zero).
 *
 * No lost wake-up. A waiter sets WAITERS before futex_wait(), which sleeps
 * only while _word still holds the value with WAITERS. Unlock exchanges
 * _word for 0; when WAITERS was set it either wakes one sleeper (which sets
 * WAITERS again before it sleeps, or takes the lock with it set: a thread
 * that has slept always takes it with WAITERS, since others may sleep too),
 * or, when a spinner exists, leaves WAITERS in the free word and no wake-up:
 * whoever takes the lock next inherits WAITERS and wakes at its unlock. The
 * skip is safe because unlock reads the spinner count after its release and
 * a spinner drops its count before it reads _word (both sequentially
 * consistent): a spinner that unlock counted still sees the free lock.
 *
 * Spinning: only while the owner's on-CPU word says it runs (bounded by
 * SPIN_ONCPU_MAX); for owners nobody tracks, glibc's adaptive estimate
 * (_spins, at most SPIN_UNTRACKED_MAX); never with the owner off CPU; and by
 * at most max(1, CPUs - 1) threads at once.
 *
 * Starvation: a sleeper that waited ONCPU_MUTEX_STARVATION_NS sets the
 * starving flag (one at a time); while it is set, unlock stores HANDOFF and
 * wakes the oldest sleeper; only a thread that has slept may take HANDOFF;
 * the starving thread clears the flag once it owns the lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "desched_provider.h"
#include "internal.h"

#define OWNER_MASK 0x3FFFFFFFU
#define OWNER_ANON 0x3FFFFFFFU
#define OWNER_HANDOFF 0x3FFFFFFEU
#define WAITERS 0x80000000U
_Static_assert(ONCPU_DESCHED_MAX_INDEX < OWNER_HANDOFF, "owner ids");

#define AUX_SPINNER 1ULL
#define AUX_SPINNERS_MASK ((1ULL << 24) - 1)
#define AUX_STARVING (1ULL << 24)
#define AUX_GEN_SHIFT 25

/* Spin bounds, in pause iterations. */
#define SPIN_ONCPU_MAX 4000    /* owner running: its critical section may be long */
#define SPIN_UNTRACKED_MAX 100 /* glibc's default max_adaptive_count */

static uint32_t max_spinners;
int _oncpu_mutex_ignore_provider;

static inline uint64_t aux_gen(void)
{
	return (uint64_t)__atomic_load_n(&_oncpu_fork_generation, __ATOMIC_RELAXED) << AUX_GEN_SHIFT;
}
/* _aux as seen by this process: the state of an older generation is zero. */
static inline uint64_t aux_valid(uint64_t a)
{
	uint64_t gen = aux_gen();
	return (a & ~((1ULL << AUX_GEN_SHIFT) - 1)) == gen ? a : gen;
}
static inline uint32_t aux_spinners(uint64_t a)
{
	return (uint32_t)(a & AUX_SPINNERS_MASK);
}

/* _aux += add - sub, in this process's generation. */
static uint64_t aux_update(oncpu_mutex_t *m, uint64_t add, uint64_t sub)
{
	uint64_t old = __atomic_load_n(&m->_aux, __ATOMIC_RELAXED), nw;
	do {
		uint64_t base = aux_valid(old);
		/* State of an older generation was dropped: nothing to take. */
		nw = base == old ? old + add - sub : base + add;
	} while (!__atomic_compare_exchange_n(&m->_aux, &old, nw, true, __ATOMIC_SEQ_CST,
					      __ATOMIC_RELAXED));
	return nw;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

static long futex(uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, uaddr, op, val, ts, NULL, 0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint32_t self_id(void)
{
	uint32_t id = _oncpu_desched_self_index;
	if (ONCPU_UNLIKELY(id == 0)) {
		_oncpu_desched_block_self();
		id = _oncpu_desched_self_index;
	}
	return id == ONCPU_DESCHED_INDEX_NONE || id == 0 ? OWNER_ANON : id;
}

/* The owner's on-CPU word, or UNTRACKED for owners without a block. */
static inline uint32_t owner_state(const struct _oncpu_desched_block *blk)
{
	return blk ? __atomic_load_n(&blk->oncpu, __ATOMIC_RELAXED) : ONCPU_DESCHED_WORD_UNTRACKED;
}

/*
 * Whether the caller may take the lock in state w: when free; when handed
 * off, only a thread that has waited in the futex queue (a hand-off that
 * fork() copied from the parent, to anyone).
 */
static inline bool takeable(uint32_t w, bool slept, const oncpu_mutex_t *m)
{
	uint32_t owner = w & OWNER_MASK;
	if (owner == 0)
		return true;
	if (owner != OWNER_HANDOFF)
		return false;
	return slept || !(aux_valid(__atomic_load_n(&m->_aux, __ATOMIC_RELAXED)) & AUX_STARVING);
}

/* Take the lock from state w. A thread that has slept keeps WAITERS set:
 * other sleepers may remain, and its unlock must look for them. */
static inline bool take(oncpu_mutex_t *m, uint32_t w, uint32_t self, bool slept)
{
	uint32_t nw = self | (w & WAITERS) | (slept ? WAITERS : 0);
	return __atomic_compare_exchange_n(&m->_word, &w, nw, false, __ATOMIC_ACQUIRE,
					   __ATOMIC_RELAXED);
}

/* Spin while spinning can pay off. Returns true with the lock held. */
static bool spin(oncpu_mutex_t *m, uint32_t self, bool slept)
{
	uint64_t a = aux_valid(__atomic_load_n(&m->_aux, __ATOMIC_RELAXED));
	if (aux_spinners(a) >= max_spinners)
		return false;
	aux_update(m, AUX_SPINNER, 0);

	uint32_t spins = __atomic_load_n(&m->_spins, __ATOMIC_RELAXED);
	uint32_t untracked_max = spins * 2 + 10;
	if (untracked_max > SPIN_UNTRACKED_MAX)
		untracked_max = SPIN_UNTRACKED_MAX;
	uint32_t owner = 0, untracked_spins = 0;
	const struct _oncpu_desched_block *blk = NULL;
	bool got = false;
	for (uint32_t i = 0; i < SPIN_ONCPU_MAX; i++) {
		uint32_t w = __atomic_load_n(&m->_word, __ATOMIC_RELAXED);
		if (takeable(w, slept, m)) {
			if (take(m, w, self, slept)) {
				got = true;
				break;
			}
			continue;
		}
		if ((w & OWNER_MASK) == OWNER_HANDOFF)
			break; /* sleepers are being served: queue behind them */
		if ((w & OWNER_MASK) != owner) {
			owner = w & OWNER_MASK;
			blk = owner == OWNER_ANON || _oncpu_mutex_ignore_provider
				      ? NULL
				      : _oncpu_desched_block_at(owner);
		}
		uint32_t st = owner_state(blk);
		if (st == ONCPU_DESCHED_WORD_OFF)
			break; /* the owner cannot release it before it runs again */
		if (st != ONCPU_DESCHED_WORD_ON && ++untracked_spins > untracked_max)
			break;
		cpu_relax();
	}
	if (untracked_spins > 0)
		__atomic_store_n(&m->_spins, spins + (uint32_t)((int32_t)(untracked_spins - spins) / 8),
				 __ATOMIC_RELAXED);
	/* Sequentially consistent, before the caller reads _word again: an
	 * unlock that saw this spinner and skipped its wake-up has released
	 * the lock before this point (see unlock). */
	aux_update(m, 0, AUX_SPINNER);
	return got;
}

/* Mark this thread starving (if no other sleeper is); true when it did. */
static bool set_starving(oncpu_mutex_t *m)
{
	uint64_t a = __atomic_load_n(&m->_aux, __ATOMIC_RELAXED), nw;
	do {
		nw = aux_valid(a);
		if (nw & AUX_STARVING)
			return false; /* another sleeper is served first */
		nw |= AUX_STARVING;
	} while (!__atomic_compare_exchange_n(&m->_aux, &a, nw, true, __ATOMIC_SEQ_CST,
					      __ATOMIC_RELAXED));
	return true;
}

static void lock_slow(oncpu_mutex_t *m)
{
	uint32_t self = self_id();
	bool slept = false, starving = false, got = false;
	uint64_t since = 0;

	if (ONCPU_UNLIKELY(max_spinners == 0)) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		__atomic_store_n(&max_spinners, n > 2 ? (uint32_t)n - 1 : 1U, __ATOMIC_RELAXED);
	}
	while (!got) {
		if (spin(m, self, slept))
			break;
		/* Sleep until woken; a wake-up goes back to spinning. */
		for (;;) {
			uint32_t w = __atomic_load_n(&m->_word, __ATOMIC_SEQ_CST);
			if (takeable(w, slept, m)) {
				if (take(m, w, self, true)) {
					got = true;
					break;
				}
				continue;
			}
			/* WAITERS before sleeping: the owner's unlock wakes. */
			if (!(w & WAITERS)) {
				if (!__atomic_compare_exchange_n(&m->_word, &w, w | WAITERS, false,
								 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
					continue;
				w |= WAITERS;
			}
			uint64_t now = now_ns();
			if (since == 0)
				since = now;
			else if (!starving && now - since >= ONCPU_MUTEX_STARVATION_NS)
				starving = set_starving(m);
			/* Timed, so that a sleeper that unlocks keep skipping notices
			 * it starves; untimed once starving, to keep its place in the
			 * futex queue (FIFO among equal priorities). */
			struct timespec ts = {0, ONCPU_MUTEX_STARVATION_NS};
			long r = futex(&m->_word, FUTEX_WAIT_PRIVATE, w, starving ? NULL : &ts);
			slept = true;
			if (r == 0)
				break; /* woken: spin again if the owner runs */
		}
	}
	if (starving)
		aux_update(m, 0, AUX_STARVING);
}

void oncpu_mutex_lock(oncpu_mutex_t *m)
{
	uint32_t self = _oncpu_desched_self_index, free_word = 0;
	if (ONCPU_LIKELY(self - 1 < ONCPU_DESCHED_MAX_INDEX) &&
	    __atomic_compare_exchange_n(&m->_word, &free_word, self, false, __ATOMIC_ACQUIRE,
					__ATOMIC_RELAXED))
		return;
	lock_slow(m);
}

int oncpu_mutex_trylock(oncpu_mutex_t *m)
{
	uint32_t self = self_id(), w = __atomic_load_n(&m->_word, __ATOMIC_RELAXED);
	if (takeable(w, false, m) && take(m, w, self, false))
		return 0;
	return EBUSY;
}

static void unlock_slow(oncpu_mutex_t *m)
{
	/* Sequentially consistent after the release: a spinner drops its
	 * count and then reads _word, so if it is gone from the count it sees
	 * the release, and if it is still counted it will see the word below. */
	uint64_t a = aux_valid(__atomic_load_n(&m->_aux, __ATOMIC_SEQ_CST));
	if (aux_spinners(a) > 0) {
		/* Leave the wake-up to a spinner: free, WAITERS kept, so whoever
		 * takes it next wakes at its unlock. */
		uint32_t zero = 0;
		if (__atomic_compare_exchange_n(&m->_word, &zero, WAITERS, false, __ATOMIC_SEQ_CST,
						__ATOMIC_RELAXED))
			return;
	}
	/* WAITERS is clear now: the woken thread sets it again before it
	 * sleeps, or takes the lock with it. */
	futex(&m->_word, FUTEX_WAKE_PRIVATE, 1, NULL);
}

void oncpu_mutex_unlock(oncpu_mutex_t *m)
{
	uint64_t a = __atomic_load_n(&m->_aux, __ATOMIC_RELAXED);
	if (ONCPU_UNLIKELY(a & AUX_STARVING) && (aux_valid(a) & AUX_STARVING)) {
		/* Hand-off: only a thread that has slept may take HANDOFF; the
		 * starving one is such a thread until it owns the lock, so
		 * HANDOFF cannot stay. */
		__atomic_store_n(&m->_word, OWNER_HANDOFF | WAITERS, __ATOMIC_SEQ_CST);
		futex(&m->_word, FUTEX_WAKE_PRIVATE, 1, NULL);
		return;
	}
	uint32_t old = __atomic_exchange_n(&m->_word, 0, __ATOMIC_SEQ_CST);
	if (ONCPU_UNLIKELY(old & WAITERS))
		unlock_slow(m);
}

int oncpu_mutex_init(oncpu_mutex_t *m)
{
	*m = (oncpu_mutex_t)ONCPU_MUTEX_INIT;
	return 0;
}

int oncpu_mutex_destroy(oncpu_mutex_t *m)
{
	return __atomic_load_n(&m->_word, __ATOMIC_RELAXED) != 0 ? EBUSY : 0;
}
