/* SPDX-License-Identifier: MIT */
/*
 * stack.c - per-CPU lists: slow paths, pop_cpu, drain; and the locked-slot
 * protocol (slot.h) that ring.c and cache.c share. The protocol and why it
 * is sound are described in <oncpu/stack.h>.
 */
#define _GNU_SOURCE
#define _ONCPU_BUILDING_EXPORTS 1
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "slot.h"

/* ---- the locked-slot protocol ---- */

bool _oncpu_ds_sections(unsigned *flags, int mode)
{
	if (_oncpu_cs_id(mode) < 0)
		return false;
	/* Full fence (lock or) before this thread's next section reads a lock
	 * word; pairs with the CAS-then-load of lock holders (stack.h, 3a).
	 * Threads that find the flag already set read it before their
	 * sections' loads of the lock word: an acquire load keeps that order
	 * on weakly ordered architectures (a plain load on x86-64). */
	if (!(__atomic_load_n(flags, __ATOMIC_ACQUIRE) & DS_SECTIONS))
		__atomic_fetch_or(flags, DS_SECTIONS, __ATOMIC_SEQ_CST);
	return true;
}

/* Spin a little, then yield: the holder may be preempted on our CPU. */
static void backoff(unsigned *spins)
{
	if (++*spins < 100)
		_oncpu_cpu_relax();
	else
		sched_yield();
}

intptr_t _oncpu_ds_lock(intptr_t *lock)
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

void _oncpu_ds_unlock(intptr_t *lock)
{
	/* Release: the slot's new contents are visible before the lock is free. */
	__atomic_store_n(lock, DS_LOAD(lock) & ~DS_HELD, __ATOMIC_RELEASE);
}

/*
 * The lock words this thread holds, or is taking, through
 * _oncpu_ds_lock_current, innermost last: one per operation, nested only
 * when a signal handler interrupted one. A handler must not wait for a lock
 * its own thread holds; it takes another slot. Entries past DS_NEST are
 * counted, not recorded. Initial-exec TLS: no allocation in a handler.
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

bool _oncpu_ds_parked(intptr_t *lock)
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

void _oncpu_ds_unlock_current(intptr_t *lock)
{
	_oncpu_ds_unlock(lock);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	mine.n--;
}

static bool sections_used(const unsigned *flags)
{
	return __atomic_load_n(flags, __ATOMIC_SEQ_CST) & DS_SECTIONS;
}

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

void _oncpu_ds_exclude_slot(int mode, const unsigned *flags, int idx)
{
	if (!sections_used(flags))
		return;
	if (mode == _oncpu_mode_ONCPU_CPU) {
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

bool _oncpu_ds_exclude_all(const unsigned *flags)
{
	return !sections_used(flags) || mb_rseq(-1);
}

/*
 * Entry e of a signal handler whose own thread holds the slot it should
 * use (avoid): lock another slot instead, with the exclusion step when
 * sections may be in flight there.
 */
static void *lock_other(void *pcpu, size_t lock_off, int mode, const unsigned *flags, int e,
                        int avoid, int *idx)
{
	for (int j = 0; j < _oncpu_ds_slots(); j++) {
		char *slot = (char *)oncpu_ptr(pcpu, j);
		intptr_t *lock = (intptr_t *)(slot + lock_off);
		if (j == avoid || mine_taking(e, lock))
			continue;
		if (_oncpu_ds_lock(lock) == 0)
			_oncpu_ds_exclude_slot(mode, flags, j);
		*idx = j;
		return slot;
	}
	ONCPU_FATAL("signal handlers nested %d deep hold every slot of a stack, ring or cache", e);
}

/*
 * Lock, as a thread without sections, the slot of the CPU it runs on (the
 * slot's lock word was free and 0 when it took it, unless parked).
 */
static void *lock_current_cpu(void *pcpu, size_t lock_off, int mode, const unsigned *flags, int e,
                              int *idx)
{
	int slots = _oncpu_ds_slots();
	for (;;) {
		int cpu = sched_getcpu();
		int i = cpu >= 0 && cpu < slots ? cpu : 0;
		char *slot = (char *)oncpu_ptr(pcpu, i);
		intptr_t *lock = (intptr_t *)(slot + lock_off);
		if (mine_taking(e, lock))
			return lock_other(pcpu, lock_off, mode, flags, e, i, idx);
		intptr_t was = _oncpu_ds_lock(lock);
		*idx = i;
		if (was != 0 || !sections_used(flags)) {
			/* Parked (4) or no sections (3a). A parked slot counts
			 * from 0 again: a thread without sections uses it. */
			if (was != 0)
				DS_STORE(lock, DS_PARKED | DS_HELD);
			return slot;
		}
		if (mode != _oncpu_mode_ONCPU_CPU) {
			_oncpu_ds_exclude_slot(mode, flags, i); /* 3c */
			DS_STORE(lock, DS_PARKED | DS_HELD);    /* 4 */
			return slot;
		}
		if (sched_getcpu() == i)
			return slot; /* 3b */
		_oncpu_ds_unlock(lock);
		if (cpu < 0 || cpu >= slots) {
			/* No usable CPU number: exclusion by membarrier. */
			_oncpu_ds_lock(lock);
			_oncpu_ds_exclude_slot(mode, flags, i);
			return slot;
		}
	}
}

/* Lock, as a thread with sections, the slot of its id (a section found it
 * parked; it may have been unparked since). id: its id a moment ago. */
static void *lock_current_id(void *pcpu, size_t lock_off, int mode, const unsigned *flags, int e,
                             int id, int *idx)
{
	for (int i = id;; i = _oncpu_cs_id(mode)) {
		char *slot = (char *)oncpu_ptr(pcpu, i);
		intptr_t *lock = (intptr_t *)(slot + lock_off);
		if (mine_taking(e, lock))
			return lock_other(pcpu, lock_off, mode, flags, e, i, idx);
		intptr_t was = _oncpu_ds_lock(lock);
		*idx = i;
		if (was != 0) {
			/* Parked (4): count this operation; enough of them in a
			 * row unpark the slot. */
			intptr_t next = was + 2;
			DS_STORE(lock,
			         (next >= DS_PARKED + 2 * DS_UNPARK_AFTER ? 0 : next) | DS_HELD);
			return slot;
		}
		if (_oncpu_cs_id(mode) == i)
			return slot; /* 3b, either mode */
		_oncpu_ds_unlock(lock);
	}
}

void *_oncpu_ds_lock_current(void *pcpu, size_t lock_off, int mode, const unsigned *flags, int *idx)
{
	int e = mine_enter();
	/* Registered first: a thread without sections skips the slow call. */
	int id = _oncpu_registered_cpu() >= 0 ? _oncpu_cs_id(mode) : -1;
	if (id >= 0)
		return lock_current_id(pcpu, lock_off, mode, flags, e, id, idx);
	return lock_current_cpu(pcpu, lock_off, mode, flags, e, idx);
}

void *_oncpu_ds_lock_slot(void *pcpu, size_t lock_off, int mode, const unsigned *flags, int idx)
{
	char *slot = (char *)oncpu_ptr(pcpu, idx);
	if (_oncpu_ds_lock((intptr_t *)(slot + lock_off)) == 0)
		_oncpu_ds_exclude_slot(mode, flags, idx);
	return slot;
}

/* ---- fork ---- */

struct registered {
	struct registered *next;
	void *pcpu;
	size_t lock_off;
	pthread_mutex_t *mutex;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct registered *registry;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
	pthread_mutex_lock(&reg_lock);
	for (struct registered *r = registry; r; r = r->next)
		if (r->mutex)
			pthread_mutex_lock(r->mutex);
}

static void fork_parent(void)
{
	for (struct registered *r = registry; r; r = r->next)
		if (r->mutex)
			pthread_mutex_unlock(r->mutex);
	pthread_mutex_unlock(&reg_lock);
}

static void fork_child(void)
{
	int slots = _oncpu_ds_slots();
	for (struct registered *r = registry; r; r = r->next) {
		for (int cpu = 0; cpu < slots; cpu++) {
			intptr_t *lock =
			    (intptr_t *)((char *)oncpu_ptr(r->pcpu, cpu) + r->lock_off);
			if (DS_LOAD(lock)) /* read first: unused CPUs stay uncommitted */
				DS_STORE(lock, 0);
		}
		if (r->mutex)
			pthread_mutex_unlock(r->mutex);
	}
	pthread_mutex_unlock(&reg_lock);
}

static void install_atfork(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

bool _oncpu_ds_register(void *pcpu, size_t lock_off, pthread_mutex_t *mutex)
{
	struct registered *r = malloc(sizeof(*r));
	if (!r)
		return false;
	pthread_once(&reg_once, install_atfork);
	r->pcpu = pcpu;
	r->lock_off = lock_off;
	r->mutex = mutex;
	pthread_mutex_lock(&reg_lock);
	r->next = registry;
	registry = r;
	pthread_mutex_unlock(&reg_lock);
	return true;
}

void _oncpu_ds_unregister(void *pcpu)
{
	pthread_mutex_lock(&reg_lock);
	for (struct registered **p = &registry; *p; p = &(*p)->next) {
		if ((*p)->pcpu == pcpu) {
			struct registered *r = *p;
			*p = r->next;
			free(r);
			break;
		}
	}
	pthread_mutex_unlock(&reg_lock);
}

/* ---- the stack ---- */

#define LOCK_OFF offsetof(struct _oncpu_stack_slot, lock)

struct oncpu_stack *oncpu_stack_new_flags(unsigned flags)
{
	if (flags & ~ONCPU_F_VCPU) {
		errno = EINVAL;
		return NULL;
	}
	struct oncpu_stack *s = aligned_alloc(ONCPU_CACHELINE, ONCPU_CACHELINE);
	if (!s) {
		errno = ENOMEM;
		return NULL;
	}
	s->_pcpu =
	    oncpu_percpu_alloc(sizeof(struct _oncpu_stack_slot), sizeof(struct _oncpu_stack_slot));
	if (s->_pcpu && !_oncpu_ds_register(s->_pcpu, LOCK_OFF, NULL)) {
		oncpu_percpu_free(s->_pcpu);
		s->_pcpu = NULL;
	}
	if (!s->_pcpu) {
		free(s);
		errno = ENOMEM;
		return NULL;
	}
	s->_mode = (flags & ONCPU_F_VCPU) ? _oncpu_mode_ONCPU_VCPU : _oncpu_mode_ONCPU_CPU;
	s->_flags = 0;
	s->_user_flags = flags;
	return s;
}

struct oncpu_stack *oncpu_stack_new(void)
{
	return oncpu_stack_new_flags(0);
}

void oncpu_stack_destroy(struct oncpu_stack *s)
{
	if (!s)
		return;
	_oncpu_ds_unregister(s->_pcpu);
	oncpu_percpu_free(s->_pcpu);
	free(s);
}

static struct _oncpu_stack_slot *slot_of(struct oncpu_stack *s, int idx)
{
	return (struct _oncpu_stack_slot *)oncpu_ptr(s->_pcpu, idx);
}

/* Lock holder's pop of one slot. */
static struct oncpu_stack_node *locked_pop(struct _oncpu_stack_slot *slot)
{
	struct oncpu_stack_node *n = (struct oncpu_stack_node *)DS_LOAD(&slot->head);
	if (n)
		DS_STORE(&slot->head, (intptr_t)n->next);
	return n;
}

void _oncpu_stack_push_slow(struct oncpu_stack *s, struct oncpu_stack_node *n)
{
	if (!s || !n)
		ONCPU_FATAL("oncpu_stack_push(%p, %p): NULL argument", (void *)s, (void *)n);
	int mode = s->_mode;
	if (_oncpu_ds_sections(&s->_flags, mode)) {
		for (;;) {
			int cpu = _oncpu_cs_id(mode);
			struct _oncpu_stack_slot *slot = slot_of(s, cpu);
			if (_oncpu_ds_parked(&slot->lock))
				break; /* the locked path */
			intptr_t head = DS_LOAD(&slot->head);
			n->next = (struct oncpu_stack_node *)head;
			int r = _oncpu_cs_cmpeq_cmpeq_store(mode, &slot->lock, 0, &slot->head, head,
			                                    (intptr_t)n, cpu);
			if (r == ONCPU_CS_COMMITTED)
				return;
		}
	}
	int idx;
	struct _oncpu_stack_slot *slot =
	    _oncpu_ds_lock_current(s->_pcpu, LOCK_OFF, mode, &s->_flags, &idx);
	n->next = (struct oncpu_stack_node *)DS_LOAD(&slot->head);
	DS_STORE(&slot->head, (intptr_t)n);
	_oncpu_ds_unlock_current(&slot->lock);
}

struct oncpu_stack_node *_oncpu_stack_pop_slow(struct oncpu_stack *s)
{
	if (!s) {
		errno = EINVAL;
		return NULL;
	}
	int mode = s->_mode;
	if (_oncpu_ds_sections(&s->_flags, mode)) {
		for (;;) {
			int cpu = _oncpu_cs_id(mode);
			struct _oncpu_stack_slot *slot = slot_of(s, cpu);
			if (_oncpu_ds_parked(&slot->lock))
				break; /* the locked path */
			intptr_t node;
			int r = _oncpu_cs_cmpeq_cmpne_load_off_store(
			    mode, &slot->lock, 0, &slot->head, 0,
			    (ptrdiff_t)offsetof(struct oncpu_stack_node, next), &node, cpu);
			if (r == ONCPU_CS_COMMITTED)
				return (struct oncpu_stack_node *)node;
			if (r == ONCPU_CS_CMPFAIL && DS_LOAD(&slot->head) == 0)
				return NULL;
		}
	}
	int idx;
	struct _oncpu_stack_slot *slot =
	    _oncpu_ds_lock_current(s->_pcpu, LOCK_OFF, mode, &s->_flags, &idx);
	struct oncpu_stack_node *n = locked_pop(slot);
	_oncpu_ds_unlock_current(&slot->lock);
	return n;
}

struct oncpu_stack_node *oncpu_stack_pop_cpu(struct oncpu_stack *s, int cpu)
{
	if (!s || cpu < 0 || cpu >= _oncpu_ds_slots()) {
		errno = EINVAL;
		return NULL;
	}
	int mode = s->_mode;
	struct _oncpu_stack_slot *slot = slot_of(s, cpu);
	if (DS_LOAD(&slot->head) == 0)
		return NULL; /* empty when read: a valid answer, and commits no memory */
	if (_oncpu_ds_sections(&s->_flags, mode)) {
		/* On that CPU now: one section, as long as the thread stays there. */
		while (_oncpu_cs_id(mode) == cpu && !_oncpu_ds_parked(&slot->lock)) {
			intptr_t node;
			int r = _oncpu_cs_cmpeq_cmpne_load_off_store(
			    mode, &slot->lock, 0, &slot->head, 0,
			    (ptrdiff_t)offsetof(struct oncpu_stack_node, next), &node, cpu);
			if (r == ONCPU_CS_COMMITTED)
				return (struct oncpu_stack_node *)node;
			if (r == ONCPU_CS_CMPFAIL && DS_LOAD(&slot->head) == 0)
				return NULL;
		}
	}
	_oncpu_ds_lock_slot(s->_pcpu, LOCK_OFF, mode, &s->_flags, cpu);
	struct oncpu_stack_node *n = locked_pop(slot);
	_oncpu_ds_unlock(&slot->lock);
	return n;
}

/* Append list `l` (NULL-terminated) in front of *out. */
static void splice(struct oncpu_stack_node **out, struct oncpu_stack_node *l)
{
	if (!l)
		return;
	struct oncpu_stack_node *tail = l;
	while (tail->next)
		tail = tail->next;
	tail->next = *out;
	*out = l;
}

struct oncpu_stack_node *oncpu_stack_drain(struct oncpu_stack *s)
{
	if (!s) {
		errno = EINVAL;
		return NULL;
	}
	int slots = _oncpu_ds_slots(), k = 0;
	int saved = errno;
	int *locked = malloc((size_t)slots * sizeof(int));
	errno = saved;
	struct oncpu_stack_node *out = NULL;

	if (!locked) {
		/* One slot at a time: the same result, one exclusion per slot. */
		for (int cpu = 0; cpu < slots; cpu++) {
			struct _oncpu_stack_slot *slot = slot_of(s, cpu);
			if (DS_LOAD(&slot->head) == 0)
				continue;
			_oncpu_ds_lock_slot(s->_pcpu, LOCK_OFF, s->_mode, &s->_flags, cpu);
			splice(&out, (struct oncpu_stack_node *)DS_LOAD(&slot->head));
			DS_STORE(&slot->head, 0);
			_oncpu_ds_unlock(&slot->lock);
		}
		return out;
	}
	/* Lock every non-empty slot, exclude sections from all at once (from
	 * those that were not parked: the first `unparked` of locked[]). */
	int unparked = 0;
	for (int cpu = 0; cpu < slots; cpu++) {
		struct _oncpu_stack_slot *slot = slot_of(s, cpu);
		if (DS_LOAD(&slot->head) == 0)
			continue;
		if (_oncpu_ds_lock(&slot->lock) == 0) {
			locked[k++] = locked[unparked];
			locked[unparked++] = cpu;
		} else {
			locked[k++] = cpu;
		}
	}
	if (unparked && !_oncpu_ds_exclude_all(&s->_flags))
		for (int i = 0; i < unparked; i++)
			_oncpu_ds_exclude_slot(s->_mode, &s->_flags, locked[i]);
	for (int i = 0; i < k; i++) {
		struct _oncpu_stack_slot *slot = slot_of(s, locked[i]);
		splice(&out, (struct oncpu_stack_node *)DS_LOAD(&slot->head));
		DS_STORE(&slot->head, 0);
		_oncpu_ds_unlock(&slot->lock);
	}
	free(locked);
	return out;
}

/* Exported copies of the inline paths. */
void oncpu_stack_push(struct oncpu_stack *s, struct oncpu_stack_node *n)
{
	_oncpu_stack_push_fast(s, n);
}

struct oncpu_stack_node *oncpu_stack_pop(struct oncpu_stack *s)
{
	return _oncpu_stack_pop_fast(s);
}
