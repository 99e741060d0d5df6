/* SPDX-License-Identifier: MIT */
/*
 * oncpu/ring.h - per-CPU bounded rings of pointers (FIFO per CPU).
 *
 * A ring holds, for every CPU (or virtual CPU), an array of
 * capacity_per_cpu pointers and two counters that only grow: tail (pushes)
 * and head (pops); the CPU's ring holds tail - head pointers. push stores
 * the pointer into slot tail and then commits tail + 1; pop loads slot head
 * and commits head + 1: one critical section each, no atomic instruction.
 * Because the counters never repeat a value, a section that finds the
 * counter it expects cannot be fooled by an intervening pop and push (no
 * ABA), and the slot it reads or writes cannot be in use by anyone else.
 *
 * Order: pop returns the oldest pointer pushed on the current CPU's ring.
 * There is no order between rings: a thread that migrates between two
 * pushes puts them in different rings, and pop on a CPU whose ring is empty
 * returns NULL even when other rings hold pointers (oncpu_ring_pop_cpu
 * reaches a chosen ring).
 *
 * Memory: the arrays are allocated per CPU on the first push on that CPU,
 * so CPUs that never push cost nothing but a 32-byte per-CPU slot that is
 * never committed either (oncpu/percpu.h).
 *
 * Indexing, chosen at creation: by CPU (default), or ONCPU_F_VCPU: by
 * virtual CPU (mm_cid). With vCPU indexing a process with few threads
 * allocates few arrays and a consumer finds what was pushed under its vcpu
 * wherever it now runs; a ring's cache lines may move between CPUs, and in
 * a mixed process the rings that threads without sections use run locked
 * for every thread for a while (parked). The trade-off and the fallback
 * protocol are those of oncpu/stack.h (doc/slot-protocol.md).
 *
 * Fallback mode and mixed processes: as in oncpu/stack.h, every mix of
 * threads with and without sections is supported; threads without sections
 * take the per-CPU lock word.
 *
 * Concurrency: push, pop and pop_cpu run concurrently from any threads.
 * new and destroy must not run concurrently with other calls on the ring.
 * Signals: as oncpu/stack.h (push and pop are async-signal-safe in threads
 * that run sections, except for the first push on a CPU, which allocates).
 */
#ifndef ONCPU_RING_H
#define ONCPU_RING_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include <oncpu/config.h>
#include <oncpu/percpu.h>
#if ONCPU_INLINE_FASTPATHS
#include <oncpu/cs.h>
#endif

ONCPU_BEGIN_DECLS

/* Flags of oncpu_ring_new_flags: ONCPU_F_VCPU (oncpu/percpu.h; see above).
 * ONCPU_RING_VCPU is its deprecated alias, removed in the next release. */
enum { ONCPU_RING_VCPU ONCPU_DEPRECATED("use ONCPU_F_VCPU") = ONCPU_F_VCPU };
/* Largest capacity_per_cpu accepted (2^24 pointers, 128 MiB per CPU). */
#define ONCPU_RING_MAX_CAPACITY ((size_t)1 << 24)

#if ONCPU_INLINE_FASTPATHS
/* The handle. Its fields are internal; they are here for the inline paths. */
struct oncpu_ring {
	void *_pcpu;     /* per-CPU struct _oncpu_ring_slot */
	int _mode;       /* _oncpu_mode_ONCPU_CPU or _oncpu_mode_ONCPU_VCPU */
	unsigned _flags; /* _ONCPU_RING_SECTIONS once a section ran on it */
	intptr_t _cap;   /* capacity_per_cpu */
	intptr_t _mask;  /* array length - 1 (a power of two >= _cap) */
};
#define _ONCPU_RING_SECTIONS 1u

struct _oncpu_ring_slot {
	intptr_t head;   /* pops so far */
	intptr_t tail;   /* pushes so far */
	intptr_t lock;   /* 0: free; odd: held; even: parked (src/slot.h) */
	intptr_t *array; /* NULL until the first push here; then fixed */
};
#else
struct oncpu_ring; /* opaque */
#endif

/*
 * oncpu_ring_new - a ring of capacity_per_cpu pointers for every CPU.
 * oncpu_ring_new_flags - the same with flags (ONCPU_F_VCPU).
 * Returns NULL with errno EINVAL (capacity 0 or above
 * ONCPU_RING_MAX_CAPACITY, unknown flag) or ENOMEM.
 */
ONCPU_API struct oncpu_ring *oncpu_ring_new(size_t capacity_per_cpu);
ONCPU_API struct oncpu_ring *oncpu_ring_new_flags(size_t capacity_per_cpu, unsigned flags);

/*
 * oncpu_ring_push - append p to the current CPU's ring. Returns 0, or -1
 * with errno ENOBUFS (that ring held capacity_per_cpu pointers when
 * checked), EINVAL (r or p NULL: NULL is pop's "empty") or ENOMEM (the
 * CPU's array could not be allocated).
 *
 * oncpu_ring_pop - remove and return the oldest pointer of the current
 * CPU's ring; NULL when it is empty (errno unchanged), or NULL with errno
 * EINVAL for a NULL r.
 *
 * Functions of liboncpu; with ONCPU_INLINE_FASTPATHS (oncpu/config.h)
 * macros over their fast paths (one critical section each).
 */
ONCPU_API int oncpu_ring_push(struct oncpu_ring *r, void *p);
ONCPU_API void *oncpu_ring_pop(struct oncpu_ring *r);

#if ONCPU_INLINE_FASTPATHS
ONCPU_API int _oncpu_ring_push_slow(struct oncpu_ring *r, void *p);
ONCPU_API void *_oncpu_ring_pop_slow(struct oncpu_ring *r);

/* One push section on slot (id id), a step of oncpu/cs.h; _ONCPU_DS_SLOW
 * when the slot has no array yet or was full when read (tail first:
 * tail - head is then never above the true count). liboncpu's slow path
 * runs the same. */
ONCPU_INLINE int _oncpu_ring_push_step(struct oncpu_ring *r, int mode,
                                       struct _oncpu_ring_slot *slot, void *p, int id)
{
	intptr_t *array = __atomic_load_n(&slot->array, __ATOMIC_ACQUIRE);
	intptr_t tail = __atomic_load_n(&slot->tail, __ATOMIC_ACQUIRE);
	intptr_t head = __atomic_load_n(&slot->head, __ATOMIC_ACQUIRE);
	if (ONCPU_UNLIKELY(!array || tail - head >= r->_cap))
		return _ONCPU_DS_SLOW;
	return _oncpu_ds_step(_oncpu_cs_cmpeq_cmpeq_trystore_store(
	                          mode, _oncpu_mo_ONCPU_RELEASE, &slot->lock, 0, &slot->tail, tail,
	                          &array[tail & r->_mask], (intptr_t)p, tail + 1, id),
	                      &slot->lock);
}

/* One pop section on slot (id id): _ONCPU_DS_DONE with *p (0 when the ring
 * was empty: head first, so head == tail means empty at the tail read),
 * _ONCPU_DS_AGAIN or _ONCPU_DS_LOCKED. */
ONCPU_INLINE int _oncpu_ring_pop_step(struct oncpu_ring *r, int mode, struct _oncpu_ring_slot *slot,
                                      intptr_t *p, int id)
{
	intptr_t head = __atomic_load_n(&slot->head, __ATOMIC_ACQUIRE);
	intptr_t tail = __atomic_load_n(&slot->tail, __ATOMIC_ACQUIRE);
	if (head == tail) {
		*p = 0;
		return _ONCPU_DS_DONE;
	}
	intptr_t *array = __atomic_load_n(&slot->array, __ATOMIC_ACQUIRE);
	return _oncpu_ds_step(_oncpu_cs_cmpeq_cmpeq_load_store(mode, &slot->lock, 0, &slot->head,
	                                                       head, &array[head & r->_mask], p,
	                                                       head + 1, id),
	                      &slot->lock);
}

ONCPU_INLINE int _oncpu_ring_push_fast(struct oncpu_ring *r, void *p)
{
	if (ONCPU_LIKELY(r && p &&
	                 (__atomic_load_n(&r->_flags, __ATOMIC_RELAXED) & _ONCPU_RING_SECTIONS))) {
		int mode = r->_mode;
		for (;;) {
			int cpu = _oncpu_cs_id(mode);
			if (ONCPU_UNLIKELY(cpu < 0))
				break;
			struct _oncpu_ring_slot *slot =
			    (struct _oncpu_ring_slot *)oncpu_ptr(r->_pcpu, cpu);
			int step = _oncpu_ring_push_step(r, mode, slot, p, cpu);
			if (ONCPU_LIKELY(step == _ONCPU_DS_DONE))
				return 0;
			if (step != _ONCPU_DS_AGAIN)
				break; /* locked, first use of this CPU, or full */
		}
	}
	return _oncpu_ring_push_slow(r, p);
}

ONCPU_INLINE void *_oncpu_ring_pop_fast(struct oncpu_ring *r)
{
	if (ONCPU_LIKELY(r &&
	                 (__atomic_load_n(&r->_flags, __ATOMIC_RELAXED) & _ONCPU_RING_SECTIONS))) {
		int mode = r->_mode;
		for (;;) {
			int cpu = _oncpu_cs_id(mode);
			if (ONCPU_UNLIKELY(cpu < 0))
				break;
			struct _oncpu_ring_slot *slot =
			    (struct _oncpu_ring_slot *)oncpu_ptr(r->_pcpu, cpu);
			intptr_t p;
			int step = _oncpu_ring_pop_step(r, mode, slot, &p, cpu);
			if (ONCPU_LIKELY(step == _ONCPU_DS_DONE))
				return (void *)p;
			if (step == _ONCPU_DS_LOCKED)
				break;
		}
	}
	return _oncpu_ring_pop_slow(r);
}

#define oncpu_ring_push(r, p) _oncpu_ring_push_fast(r, p)
#define oncpu_ring_pop(r)     _oncpu_ring_pop_fast(r)
#endif /* ONCPU_INLINE_FASTPATHS */

/*
 * oncpu_ring_pop_cpu - remove the oldest pointer of ring `cpu` (a cpu id,
 * or a vcpu id for ONCPU_F_VCPU rings) from any thread: for consumers
 * that serve every CPU and to empty a ring before oncpu_ring_destroy. Costs a
 * section when the caller runs there, otherwise the slot's lock and, when
 * sections use this ring, an exclusion step (doc/slot-protocol.md). NULL when that
 * ring is empty (errno unchanged), NULL with errno EINVAL for a NULL r or cpu
 * outside [0, oncpu_cpu_count()).
 */
ONCPU_API void *oncpu_ring_pop_cpu(struct oncpu_ring *r, int cpu);

/* oncpu_ring_destroy - release the ring and its arrays (NULL is ignored);
 * pointers still in it are dropped, not freed. */
ONCPU_API void oncpu_ring_destroy(struct oncpu_ring *r);
/* Deprecated alias, removed in the next release. */
ONCPU_API void oncpu_ring_free(struct oncpu_ring *r) ONCPU_DEPRECATED("use oncpu_ring_destroy");

ONCPU_END_DECLS

#endif /* ONCPU_RING_H */
