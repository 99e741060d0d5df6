/* SPDX-License-Identifier: MIT */
/*
 * slot.c - the per-CPU slot protocol shared by stack, ring and cache: the
 * gate, the lock word and its exclusion step (membarrier), parking, the
 * driver that runs an operation as a section or locked, the constructors'
 * shared part, and the process's fork() handling. The protocol and why it
 * is sound: doc/slot-protocol.md (step numbers below refer to it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "slot.h"

/* Every handle starts with the fields the slot layer reads. */
#define SAME_HEAD(type)                                                                            \
	ONCPU_STATIC_ASSERT(offsetof(type, _pcpu) == SLOT_PCPU_OFF &&                              \
	                        offsetof(type, _mode) == SLOT_MODE_OFF &&                          \
	                        offsetof(type, _flags) == SLOT_FLAGS_OFF,                          \
	                    #type " starts with _pcpu, _mode, _flags")
SAME_HEAD(struct oncpu_stack);
SAME_HEAD(struct oncpu_ring);
SAME_HEAD(struct oncpu_cache);

/* A handle's first fields, accessed through their own types. */
static void **pcpu_field(void *handle)
{
	return (void **)((char *)handle + SLOT_PCPU_OFF);
}

static int *mode_field(void *handle)
{
	return (int *)((char *)handle + SLOT_MODE_OFF);
}

/* ---- the gate (step 3a) ---- */

bool _oncpu_slot_sections(const struct slot_set *set)
{
	if (_oncpu_cs_id(set->mode) < 0)
		return false;
	/* Full fence (lock or) before this thread's next section reads a lock
	 * word; pairs with the CAS-then-load of lock holders (3a). Threads
	 * that find the flag already set read it before their sections' loads
	 * of the lock word: an acquire load keeps that order on weakly ordered
	 * architectures (aarch64; a plain load on x86-64). */
	if (!(__atomic_load_n(set->flags, __ATOMIC_ACQUIRE) & DS_SECTIONS))
		__atomic_fetch_or(set->flags, DS_SECTIONS, __ATOMIC_SEQ_CST);
	/* Release, after the flag: an inline path that reads the pointer
	 * reads the initialized process (_oncpu_process) and the flag. */
	if (set->fast && !__atomic_load_n(set->fast, __ATOMIC_RELAXED))
		__atomic_store_n(set->fast, set->pcpu, __ATOMIC_RELEASE);
	return true;
}

static bool sections_used(const struct slot_set *set)
{
	return __atomic_load_n(set->flags, __ATOMIC_SEQ_CST) & DS_SECTIONS;
}

/* ---- the lock word ---- */

/* Spin a little, then yield: the holder may be preempted on our CPU. */
static void backoff(unsigned *spins)
{
	if (++*spins < 100)
		_oncpu_cpu_relax();
	else
		sched_yield();
}

/* Take the lock word: CAS of a free value v to v | DS_HELD, spinning then
 * yielding while it is held. Returns v: 0 when sections may still be in
 * flight (exclusion needed). */
static intptr_t lock_word(intptr_t *lock)
{
	unsigned spins = 0;
	for (;;) {
		intptr_t v = DS_LOAD(lock);
		/* Sequentially consistent: the flag read that follows (3a) must
		 * not move before the lock is visibly taken. */
		if (!(v & DS_HELD) &&
		    __atomic_compare_exchange_n(lock, &v, v | DS_HELD, false, __ATOMIC_SEQ_CST,
		                                __ATOMIC_RELAXED))
			return v;
		backoff(&spins);
	}
}

/* Release store of the held value without DS_HELD: the slot's new
 * contents are visible before the lock is free. */
static void unlock_word(intptr_t *lock)
{
	__atomic_store_n(lock, DS_LOAD(lock) & ~DS_HELD, __ATOMIC_RELEASE);
}

/*
 * The lock words this thread holds, or is taking, through lock_current,
 * innermost last: one per operation, nested only when a signal handler
 * interrupted one. A handler must not wait for a lock its own thread holds;
 * it takes another slot. Entries past DS_NEST are counted, not recorded.
 * Initial-exec TLS: no allocation in a handler.
 */
#define DS_NEST 4
static __thread struct {
	int n;
	intptr_t *lock[DS_NEST];
} mine __attribute__((tls_model("initial-exec")));

/* A locked operation starts: its entry's index. */
static int mine_enter(void)
{
	int e = mine.n;
	mine.n = e + 1; /* first: a handler from here on sees the entry */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	return e;
}

/* Entry e is about to take lock; true when an operation of this thread
 * that e interrupted holds or takes it. */
static bool mine_taking(int e, intptr_t *lock)
{
	if (e < DS_NEST)
		mine.lock[e] = lock;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	for (int i = 0; i < e && i < DS_NEST; i++)
		if (mine.lock[i] == lock)
			return true;
	return false;
}

static void mine_leave(intptr_t *lock)
{
	unlock_word(lock);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	mine.n--;
}

/* Before a section on a slot: wait while its lock word is held. Returns
 * true when the slot is parked or held by the code a signal handler
 * interrupted (take the locked path instead), false when sections may run
 * on it. */
static bool parked(intptr_t *lock)
{
	unsigned spins = 0;
	intptr_t v;
	while ((v = __atomic_load_n(lock, __ATOMIC_ACQUIRE)) & DS_HELD) {
		for (int i = 0; i < mine.n && i < DS_NEST; i++)
			if (mine.lock[i] == lock)
				return true; /* held by the code this handler interrupted */
		backoff(&spins);
	}
	return v != 0;
}

/* ---- exclusion (steps 3b, 3c) ---- */

/* membarrier(2) commands (linux/membarrier.h has them as enumerators, 5.10+). */
#define MB_QUERY                           0
#define MB_PRIVATE_EXPEDITED_RSEQ          (1 << 7)
#define MB_REGISTER_PRIVATE_EXPEDITED_RSEQ (1 << 8)
#define MB_FLAG_CPU                        (1 << 0)

/* membarrier(PRIVATE_EXPEDITED_RSEQ): registered once, on first need. */
static pthread_once_t mb_once = PTHREAD_ONCE_INIT;
static bool mb_ready;

static void mb_register(void)
{
#if defined(SYS_membarrier)
	int saved = errno;
	long cmds = syscall(SYS_membarrier, MB_QUERY, 0, 0);
	if (cmds > 0 && (cmds & MB_PRIVATE_EXPEDITED_RSEQ) &&
	    syscall(SYS_membarrier, MB_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0)
		mb_ready = true;
	errno = saved;
#endif
}

/* Restart the sections in flight on cpu (cpu >= 0) or in the process. */
static bool mb_rseq(int cpu)
{
	pthread_once(&mb_once, mb_register);
	if (!mb_ready)
		return false;
#if defined(SYS_membarrier)
	int saved = errno;
	long r = cpu >= 0 ? syscall(SYS_membarrier, MB_PRIVATE_EXPEDITED_RSEQ, MB_FLAG_CPU, cpu)
	                  : syscall(SYS_membarrier, MB_PRIVATE_EXPEDITED_RSEQ, 0, 0);
	errno = saved;
	return r == 0;
#else
	(void)cpu;
	return false;
#endif
}

/* Move onto cpu for a moment: while this thread ran there, nothing else
 * did, so every section that was in flight there has been preempted. */
static bool visit_cpu(int cpu)
{
	int n = _oncpu_possible_cpus();
	size_t size = CPU_ALLOC_SIZE(n);
	cpu_set_t *old = CPU_ALLOC(n), *one = CPU_ALLOC(n);
	bool ok = false;
	if (old && one && sched_getaffinity(0, size, old) == 0) {
		CPU_ZERO_S(size, one);
		CPU_SET_S(cpu, size, one);
		if (sched_setaffinity(0, size, one) == 0) {
			ok = sched_getcpu() == cpu;
			sched_setaffinity(0, size, old);
		}
	}
	CPU_FREE(old);
	CPU_FREE(one);
	return ok;
}

/* After locking slot idx (its lock word was 0): no section in flight there. */
static void exclude_slot(const struct slot_set *set, int idx)
{
	if (!sections_used(set))
		return;
	if (set->mode == _oncpu_mode_ONCPU_CPU) {
		if (sched_getcpu() == idx || mb_rseq(idx) || visit_cpu(idx))
			return;
		ONCPU_FATAL(
		    "cannot exclude rseq sections from CPU %d: membarrier(PRIVATE_EXPEDITED_RSEQ) "
		    "is unavailable (Linux < 5.10 or seccomp) and the thread cannot run on "
		    "that CPU",
		    idx);
	}
	if (!mb_rseq(-1))
		ONCPU_FATAL(
		    "vCPU-indexed structure used by threads with and without rseq: this needs "
		    "membarrier(PRIVATE_EXPEDITED_RSEQ) (Linux 5.10+), which is unavailable");
}

/* After locking slots: exclude sections from all of them at once. False
 * when that needs per-slot exclusion (exclude_slot) instead. */
static bool exclude_all(const struct slot_set *set)
{
	return !sections_used(set) || mb_rseq(-1);
}

/* ---- choosing and locking a slot ---- */

static char *slot_at(const struct slot_set *set, int idx)
{
	return (char *)oncpu_ptr(set->pcpu, idx);
}

/*
 * Entry e of a signal handler whose own thread holds the slot it should
 * use (avoid): lock another slot instead, with the exclusion step when
 * sections may be in flight there.
 */
static void *lock_other(const struct slot_set *set, int e, int avoid)
{
	for (int j = 0; j < _oncpu_ds_slots(); j++) {
		char *slot = slot_at(set, j);
		intptr_t *lock = _oncpu_slot_lock_word(set, slot);
		if (j == avoid || mine_taking(e, lock))
			continue;
		if (lock_word(lock) == 0)
			exclude_slot(set, j);
		return slot;
	}
	ONCPU_FATAL("signal handlers nested %d deep hold every slot of a stack, ring or cache", e);
}

/*
 * Lock, as a thread without sections, the slot of the CPU it runs on (the
 * slot's lock word was free and 0 when it took it, unless parked).
 */
static void *lock_current_cpu(const struct slot_set *set, int e)
{
	int slots = _oncpu_ds_slots();
	for (;;) {
		int cpu = sched_getcpu();
		int i = cpu >= 0 && cpu < slots ? cpu : 0;
		char *slot = slot_at(set, i);
		intptr_t *lock = _oncpu_slot_lock_word(set, slot);
		if (mine_taking(e, lock))
			return lock_other(set, e, i);
		intptr_t was = lock_word(lock);
		if (was != 0 || !sections_used(set)) {
			/* Parked (4) or no sections (3a). A parked slot counts
			 * from 0 again: a thread without sections uses it. */
			if (was != 0)
				DS_STORE(lock, DS_PARKED | DS_HELD);
			return slot;
		}
		if (set->mode != _oncpu_mode_ONCPU_CPU) {
			exclude_slot(set, i);                /* 3c */
			DS_STORE(lock, DS_PARKED | DS_HELD); /* 4 */
			return slot;
		}
		if (sched_getcpu() == i)
			return slot; /* 3b */
		unlock_word(lock);
		if (cpu < 0 || cpu >= slots) {
			/* No usable CPU number: exclusion by membarrier. */
			lock_word(lock);
			exclude_slot(set, i);
			return slot;
		}
	}
}

/* Lock, as a thread with sections, the slot of its id (a section found it
 * parked; it may have been unparked since). id: its id a moment ago. */
static void *lock_current_id(const struct slot_set *set, int e, int id)
{
	for (int i = id;; i = _oncpu_cs_id(set->mode)) {
		char *slot = slot_at(set, i);
		intptr_t *lock = _oncpu_slot_lock_word(set, slot);
		if (mine_taking(e, lock))
			return lock_other(set, e, i);
		intptr_t was = lock_word(lock);
		if (was != 0) {
			/* Parked (4): count this operation; enough of them in a
			 * row unpark the slot. */
			intptr_t next = was + 2;
			DS_STORE(lock,
			         (next >= DS_PARKED + 2 * DS_UNPARK_AFTER ? 0 : next) | DS_HELD);
			return slot;
		}
		if (_oncpu_cs_id(set->mode) == i)
			return slot; /* 3b, either mode */
		unlock_word(lock);
	}
}

/*
 * Lock the slot this thread should use and exclude sections from it.
 * Threads without sections use the slot of the CPU they run on; threads
 * with sections (a section found the slot parked) the slot of their id; a
 * signal handler whose thread holds that slot's lock another slot. Release
 * with mine_leave.
 */
static void *lock_current(const struct slot_set *set)
{
	int e = mine_enter();
	/* Registered first: a thread without sections skips the slow call. */
	int id = _oncpu_registered_cpu() >= 0 ? _oncpu_cs_id(set->mode) : -1;
	if (id >= 0)
		return lock_current_id(set, e, id);
	return lock_current_cpu(set, e);
}

/* Lock slot idx (any CPU) and exclude sections from it. */
static void *lock_slot(const struct slot_set *set, int idx)
{
	char *slot = slot_at(set, idx);
	if (lock_word(_oncpu_slot_lock_word(set, slot)) == 0)
		exclude_slot(set, idx);
	return slot;
}

static void unlock_slot(const struct slot_set *set, void *slot)
{
	unlock_word(_oncpu_slot_lock_word(set, slot));
}

/* ---- the driver ---- */

void _oncpu_slot_run(const struct slot_set *set, struct slot_op *op)
{
	if (_oncpu_slot_sections(set)) {
		for (;;) {
			int id = _oncpu_cs_id(set->mode);
			char *slot = slot_at(set, id);
			if (parked(_oncpu_slot_lock_word(set, slot)))
				break; /* the locked path */
			if (op->section(op, slot, id) == SLOT_DONE)
				return;
		}
	}
	char *slot = lock_current(set);
	op->locked(op, slot);
	mine_leave(_oncpu_slot_lock_word(set, slot));
}

void _oncpu_slot_run_on(const struct slot_set *set, struct slot_op *op, int idx)
{
	char *slot = slot_at(set, idx);
	if (_oncpu_slot_sections(set)) {
		/* On that CPU now: sections, as long as the thread stays there. */
		while (_oncpu_cs_id(set->mode) == idx && !parked(_oncpu_slot_lock_word(set, slot)))
			if (op->section(op, slot, idx) == SLOT_DONE)
				return;
	}
	lock_slot(set, idx);
	op->locked(op, slot);
	unlock_slot(set, slot);
}

void _oncpu_slot_each_locked(const struct slot_set *set, bool (*want)(void *slot),
                             void (*each)(void *slot, void *arg), void *arg)
{
	int slots = _oncpu_ds_slots(), k = 0;
	int saved = errno;
	int *locked = malloc((size_t)slots * sizeof(int));
	errno = saved;
	if (!locked) {
		/* One slot at a time: the same result, one exclusion per slot. */
		for (int idx = 0; idx < slots; idx++) {
			if (!want(slot_at(set, idx)))
				continue;
			void *slot = lock_slot(set, idx);
			each(slot, arg);
			unlock_slot(set, slot);
		}
		return;
	}
	/* Lock every wanted slot, exclude sections from all at once (from
	 * those that were not parked: the first `unparked` of locked[]). */
	int unparked = 0;
	for (int idx = 0; idx < slots; idx++) {
		char *slot = slot_at(set, idx);
		if (!want(slot))
			continue;
		if (lock_word(_oncpu_slot_lock_word(set, slot)) == 0) {
			locked[k++] = locked[unparked];
			locked[unparked++] = idx;
		} else {
			locked[k++] = idx;
		}
	}
	if (unparked && !exclude_all(set))
		for (int i = 0; i < unparked; i++)
			exclude_slot(set, locked[i]);
	for (int i = 0; i < k; i++) {
		char *slot = slot_at(set, locked[i]);
		each(slot, arg);
		unlock_slot(set, slot);
	}
	free(locked);
}

/* ---- structures, for fork() ---- */

struct registered {
	struct registered *next;
	const struct slot_kind *kind;
	void *handle;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct registered *registry;

static pthread_mutex_t *mutex_of(const struct slot_kind *kind, void *handle)
{
	return kind->mutex_off < 0 ? NULL : (pthread_mutex_t *)((char *)handle + kind->mutex_off);
}

static bool slot_register(const struct slot_kind *kind, void *handle)
{
	struct registered *r = malloc(sizeof(*r));
	if (!r)
		return false;
	_oncpu_fork_register();
	r->kind = kind;
	r->handle = handle;
	pthread_mutex_lock(&reg_lock);
	r->next = registry;
	registry = r;
	pthread_mutex_unlock(&reg_lock);
	return true;
}

static void slot_unregister(void *handle)
{
	pthread_mutex_lock(&reg_lock);
	for (struct registered **p = &registry; *p; p = &(*p)->next) {
		if ((*p)->handle == handle) {
			struct registered *r = *p;
			*p = r->next;
			free(r);
			break;
		}
	}
	pthread_mutex_unlock(&reg_lock);
}

void *_oncpu_slot_new(const struct slot_kind *kind, size_t slot_size, unsigned flags)
{
	size_t bytes = (kind->handle_size + ONCPU_CACHELINE - 1) & ~(size_t)(ONCPU_CACHELINE - 1);
	void *h = aligned_alloc(ONCPU_CACHELINE, bytes);
	if (!h) {
		errno = ENOMEM;
		return NULL;
	}
	memset(h, 0, kind->handle_size);
	pthread_mutex_t *mutex = mutex_of(kind, h);
	if (mutex)
		pthread_mutex_init(mutex, NULL);
	void *pcpu = oncpu_percpu_alloc(slot_size, kind->slot_align);
	if (pcpu && !slot_register(kind, h)) {
		oncpu_percpu_free(pcpu);
		pcpu = NULL;
	}
	if (!pcpu) {
		if (mutex)
			pthread_mutex_destroy(mutex);
		free(h);
		errno = ENOMEM;
		return NULL;
	}
	*pcpu_field(h) = pcpu;
	*mode_field(h) = (flags & ONCPU_F_VCPU) ? _oncpu_mode_ONCPU_VCPU : _oncpu_mode_ONCPU_CPU;
	return h;
}

void _oncpu_slot_delete(const struct slot_kind *kind, void *handle)
{
	slot_unregister(handle);
	oncpu_percpu_free(*pcpu_field(handle));
	pthread_mutex_t *mutex = mutex_of(kind, handle);
	if (mutex)
		pthread_mutex_destroy(mutex);
	free(handle);
}

/* ---- fork(): the one registration ---- */

/* Around fork() the registry and every structure's mutex are held, then
 * the per-CPU allocator's lock (lock order: a structure may allocate). */
static void fork_prepare(void)
{
	pthread_mutex_lock(&reg_lock);
	for (struct registered *r = registry; r; r = r->next) {
		pthread_mutex_t *mutex = mutex_of(r->kind, r->handle);
		if (mutex)
			pthread_mutex_lock(mutex);
	}
	_oncpu_percpu_fork_prepare();
}

static void fork_parent(void)
{
	_oncpu_percpu_fork_release();
	for (struct registered *r = registry; r; r = r->next) {
		pthread_mutex_t *mutex = mutex_of(r->kind, r->handle);
		if (mutex)
			pthread_mutex_unlock(mutex);
	}
	pthread_mutex_unlock(&reg_lock);
}

/* In the child lock words held by threads that do not exist there are
 * released: every locked operation leaves its slot consistent after each
 * of its stores, so a slot is whole wherever its holder stopped. */
static void fork_child(void)
{
	_oncpu_percpu_fork_release();
	int slots = _oncpu_ds_slots();
	for (struct registered *r = registry; r; r = r->next) {
		void *pcpu = *pcpu_field(r->handle);
		for (int cpu = 0; cpu < slots; cpu++) {
			intptr_t *lock =
			    (intptr_t *)((char *)oncpu_ptr(pcpu, cpu) + r->kind->lock_off);
			if (DS_LOAD(lock)) /* read first: unused CPUs stay uncommitted */
				DS_STORE(lock, 0);
		}
		pthread_mutex_t *mutex = mutex_of(r->kind, r->handle);
		if (mutex)
			pthread_mutex_unlock(mutex);
	}
	pthread_mutex_unlock(&reg_lock);
	_oncpu_desched_fork_child();
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void install_atfork(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void _oncpu_fork_register(void)
{
	pthread_once(&fork_once, install_atfork);
}
