/* SPDX-License-Identifier: MIT */
/*
 * oncpu/stack.h - per-CPU intrusive LIFO lists (free lists).
 *
 * A stack is one singly linked list per CPU (or per virtual CPU). push and
 * pop act on the list of the CPU the thread runs on, in one critical section
 * each: no atomic instruction, no lock, and no ABA problem, because nothing
 * else runs on that CPU's list while the section runs (a preempted, migrated
 * or signalled section aborts and is retried). The nodes are the caller's
 * memory: embed a struct oncpu_stack_node in an object; the stack allocates
 * nothing per node and never touches a node that is not on one of its lists.
 *
 * The lists are per CPU, not one global LIFO: pop returns NULL when the
 * current CPU's list is empty even if other lists hold nodes, and a thread
 * that migrates between push and pop finds another list. Use
 * oncpu_stack_pop_cpu() to take from a chosen list and oncpu_stack_drain()
 * to take everything (shutdown, rebalancing).
 *
 * Indexing, chosen at creation:
 *   default           one list per possible CPU, selected by the CPU the
 *                     thread runs on. A list is only ever written from its
 *                     CPU (cache-local).
 *   ONCPU_F_VCPU      one list per virtual CPU (mm_cid, see oncpu/thread.h).
 *                     Ids are dense: a process with 4 threads on a 256-CPU
 *                     machine uses about 4 lists instead of up to 256, so
 *                     pops find nodes more often and fewer nodes sit stranded
 *                     on CPUs the process left. The price: a list may be
 *                     written from different CPUs over time (its cache lines
 *                     move), and in a mixed process the lists that threads
 *                     without sections use run locked for every thread for
 *                     a while ("parked", see below).
 *                     Where the kernel has no mm_cid (before 6.3) vcpu is the
 *                     cpu and both modes behave alike.
 *
 * Threads without sections (fallback mode: rseq refused by the kernel or by
 * seccomp, ONCPU_DISABLE_RSEQ, another library's rseq area on the thread, an
 * architecture without rseq assembly) stay correct through a lock word in
 * every per-CPU slot, which every section compares with 0 before it commits;
 * a lock holder excludes the sections that may still be in flight (by
 * running on the slot's CPU, or membarrier(PRIVATE_EXPEDITED_RSEQ)), and
 * with vCPU indexing leaves the slot "parked" so that the system call is
 * paid once per parking. Every mix of threads with and without sections is
 * supported. The same protocol serves oncpu/ring.h and oncpu/cache.h; it and
 * why it is sound are in doc/slot-protocol.md (steps 1-4) of the source.
 *
 * Concurrency: push, pop, pop_cpu and drain may run concurrently with each
 * other from any threads. drain returns every node that was on a list when
 * it started and was not popped meanwhile; nodes pushed while it runs may be
 * left for later. new and destroy must not run concurrently with other calls
 * on the same stack.
 *
 * Signals: in a thread that runs sections, push and pop are
 * async-signal-safe, on parked lists too: a handler whose thread holds
 * the lock of the list it should use takes another list. In fallback mode
 * a handler's push or pop likewise never waits for its own thread. pop_cpu
 * and drain spin on the locks of the lists they name: called from a signal
 * handler whose thread holds one of those (in any call on the stack), they
 * wait forever.
 *
 * fork(): the child may use every stack, ring and cache of the parent (a
 * node a vanished thread was moving is lost to the child, never duplicated;
 * doc/slot-protocol.md).
 */
#ifndef ONCPU_STACK_H
#define ONCPU_STACK_H

#include <stddef.h>
#include <stdint.h>

#include <oncpu/config.h>
#include <oncpu/percpu.h>
#if ONCPU_INLINE_FASTPATHS
#include <oncpu/cs.h>
#endif

ONCPU_BEGIN_DECLS

/* Embed in the objects to be listed. next is the stack's while listed. */
struct oncpu_stack_node {
	struct oncpu_stack_node *next;
};

/* Flags of oncpu_stack_new_flags: ONCPU_F_VCPU (oncpu/percpu.h; see above).
 * ONCPU_STACK_VCPU is its deprecated alias, removed in the next release. */
enum { ONCPU_STACK_VCPU ONCPU_DEPRECATED("use ONCPU_F_VCPU") = ONCPU_F_VCPU };

#if ONCPU_INLINE_FASTPATHS
/* The handle. Its fields are internal; they are here for the inline paths. */
struct oncpu_stack {
	void *_pcpu;     /* per-CPU struct _oncpu_stack_slot */
	int _mode;       /* _oncpu_mode_ONCPU_CPU or _oncpu_mode_ONCPU_VCPU */
	unsigned _flags; /* _ONCPU_STACK_SECTIONS once a section ran on it */
	unsigned _user_flags;
};
#define _ONCPU_STACK_SECTIONS 1u

/* One CPU's list: head is written by sections (and by lock holders), lock by
 * fallback threads and pop_cpu/drain only. */
struct _oncpu_stack_slot {
	intptr_t head; /* struct oncpu_stack_node *, 0 when empty */
	intptr_t lock; /* 0: free; odd: held; even: parked (src/slot.h) */
};
#else
struct oncpu_stack; /* opaque */
#endif

/*
 * oncpu_stack_new - an empty stack with one list per possible CPU.
 * oncpu_stack_new_flags - the same with flags (ONCPU_F_VCPU).
 * Per-CPU memory is reserved for every possible CPU but only committed on
 * the CPUs that use it (oncpu/percpu.h). Returns NULL with errno EINVAL
 * (unknown flag) or ENOMEM.
 */
ONCPU_API struct oncpu_stack *oncpu_stack_new(void);
ONCPU_API struct oncpu_stack *oncpu_stack_new_flags(unsigned flags);

/*
 * oncpu_stack_push - put n on the current CPU's list. n must not be on any
 * list of any stack. A NULL s or n is reported and aborts the process (push
 * cannot report an error; oncpu(7)).
 *
 * oncpu_stack_pop - take the node last pushed on the current CPU's list and
 * still there, or NULL when that list is empty (errno unchanged), or NULL
 * with errno EINVAL for a NULL s.
 *
 * Functions of liboncpu; with ONCPU_INLINE_FASTPATHS (oncpu/config.h)
 * macros over their fast paths (one critical section each).
 */
ONCPU_API void oncpu_stack_push(struct oncpu_stack *s, struct oncpu_stack_node *n);
ONCPU_API struct oncpu_stack_node *oncpu_stack_pop(struct oncpu_stack *s);

#if ONCPU_INLINE_FASTPATHS
ONCPU_API void _oncpu_stack_push_slow(struct oncpu_stack *s, struct oncpu_stack_node *n);
ONCPU_API struct oncpu_stack_node *_oncpu_stack_pop_slow(struct oncpu_stack *s);

/* One push section on slot (id id), a step of oncpu/cs.h; liboncpu's
 * slow path runs the same. */
ONCPU_INLINE int _oncpu_stack_push_step(int mode, struct _oncpu_stack_slot *slot,
                                        struct oncpu_stack_node *n, int id)
{
	intptr_t head = __atomic_load_n(&slot->head, __ATOMIC_RELAXED);
	/* Written before the section: the commit publishes it (TSO). */
	n->next = (struct oncpu_stack_node *)head;
	return _oncpu_ds_step(
	    _oncpu_cs_cmpeq_cmpeq_store(mode, &slot->lock, 0, &slot->head, head, (intptr_t)n, id),
	    &slot->lock);
}

/* One pop section on slot (id id): _ONCPU_DS_DONE with *node (0 when the
 * list was empty), _ONCPU_DS_AGAIN or _ONCPU_DS_LOCKED. */
ONCPU_INLINE int _oncpu_stack_pop_step(int mode, struct _oncpu_stack_slot *slot, intptr_t *node,
                                       int id)
{
	int r = _oncpu_cs_cmpeq_cmpne_load_off_store(
	    mode, &slot->lock, 0, &slot->head, 0,
	    (ptrdiff_t)offsetof(struct oncpu_stack_node, next), node, id);
	if (ONCPU_LIKELY(r == ONCPU_CS_COMMITTED))
		return _ONCPU_DS_DONE;
	_ONCPU_DS_NOTE(r);
	if (r == ONCPU_CS_CMPFAIL) {
		/* Empty, or locked: an empty list read now is a valid answer. */
		if (__atomic_load_n(&slot->head, __ATOMIC_RELAXED) == 0) {
			*node = 0;
			return _ONCPU_DS_DONE;
		}
		if (__atomic_load_n(&slot->lock, __ATOMIC_RELAXED))
			return _ONCPU_DS_LOCKED;
	}
	return _ONCPU_DS_AGAIN;
}

ONCPU_INLINE void _oncpu_stack_push_fast(struct oncpu_stack *s, struct oncpu_stack_node *n)
{
	if (ONCPU_LIKELY(s && n &&
	                 (__atomic_load_n(&s->_flags, __ATOMIC_RELAXED) & _ONCPU_STACK_SECTIONS))) {
		int mode = s->_mode;
		for (;;) {
			int cpu = _oncpu_cs_id(mode);
			if (ONCPU_UNLIKELY(cpu < 0))
				break;
			struct _oncpu_stack_slot *slot =
			    (struct _oncpu_stack_slot *)oncpu_ptr(s->_pcpu, cpu);
			int step = _oncpu_stack_push_step(mode, slot, n, cpu);
			if (ONCPU_LIKELY(step == _ONCPU_DS_DONE))
				return;
			if (step == _ONCPU_DS_LOCKED)
				break;
		}
	}
	_oncpu_stack_push_slow(s, n);
}

ONCPU_INLINE struct oncpu_stack_node *_oncpu_stack_pop_fast(struct oncpu_stack *s)
{
	if (ONCPU_LIKELY(s &&
	                 (__atomic_load_n(&s->_flags, __ATOMIC_RELAXED) & _ONCPU_STACK_SECTIONS))) {
		int mode = s->_mode;
		for (;;) {
			int cpu = _oncpu_cs_id(mode);
			if (ONCPU_UNLIKELY(cpu < 0))
				break;
			struct _oncpu_stack_slot *slot =
			    (struct _oncpu_stack_slot *)oncpu_ptr(s->_pcpu, cpu);
			intptr_t node;
			int step = _oncpu_stack_pop_step(mode, slot, &node, cpu);
			if (ONCPU_LIKELY(step == _ONCPU_DS_DONE))
				return (struct oncpu_stack_node *)node;
			if (step == _ONCPU_DS_LOCKED)
				break;
		}
	}
	return _oncpu_stack_pop_slow(s);
}

#define oncpu_stack_push(s, n) _oncpu_stack_push_fast(s, n)
#define oncpu_stack_pop(s)     _oncpu_stack_pop_fast(s)
#endif /* ONCPU_INLINE_FASTPATHS */

/*
 * oncpu_stack_pop_cpu - take the top node of list `cpu` (a cpu id, or a
 * vcpu id for ONCPU_F_VCPU stacks), from any thread. Costs one section
 * when the caller runs there, otherwise the slot's lock and, when sections
 * use this stack, an exclusion step (a membarrier system call; see above).
 * Returns NULL when that list is empty (errno unchanged), or NULL with
 * errno EINVAL for a NULL s or cpu outside [0, oncpu_cpu_count()).
 */
ONCPU_API struct oncpu_stack_node *oncpu_stack_pop_cpu(struct oncpu_stack *s, int cpu);

/*
 * oncpu_stack_drain - empty every list; returns all their nodes as one list
 * linked through next (NULL-terminated), or NULL when every list was empty
 * (errno unchanged) or s is NULL (errno EINVAL). The order within the
 * result is unspecified. Lists that were never used are only read, so their
 * per-CPU memory stays uncommitted.
 */
ONCPU_API struct oncpu_stack_node *oncpu_stack_drain(struct oncpu_stack *s);

/*
 * oncpu_stack_destroy - release the stack (NULL is ignored). Nodes still on
 * its lists are not touched: drain first if they need to be found. Nothing
 * may run concurrently on s.
 */
ONCPU_API void oncpu_stack_destroy(struct oncpu_stack *s);
/* Deprecated alias, removed in the next release. */
ONCPU_API void oncpu_stack_free(struct oncpu_stack *s) ONCPU_DEPRECATED("use oncpu_stack_destroy");

ONCPU_END_DECLS

#endif /* ONCPU_STACK_H */
