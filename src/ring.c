/* SPDX-License-Identifier: MIT */
/*
 * ring.c - per-CPU rings: creation, lazy arrays, the operations' bodies
 * for the slot layer (slot.h), pop_cpu.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "slot.h"

static const struct slot_kind ring_kind =
    SLOT_KIND(struct oncpu_ring, struct _oncpu_ring_slot, sizeof(struct _oncpu_ring_slot), -1);

struct oncpu_ring *oncpu_ring_new_flags(size_t capacity_per_cpu, unsigned flags)
{
	if (capacity_per_cpu == 0 || capacity_per_cpu > ONCPU_RING_MAX_CAPACITY ||
	    (flags & ~ONCPU_F_VCPU)) {
		errno = EINVAL;
		return NULL;
	}
	struct oncpu_ring *r = _oncpu_slot_new(&ring_kind, sizeof(struct _oncpu_ring_slot), flags);
	if (!r)
		return NULL;
	size_t len = 1;
	while (len < capacity_per_cpu)
		len <<= 1;
	r->_cap = (intptr_t)capacity_per_cpu;
	r->_mask = (intptr_t)len - 1;
	return r;
}

struct oncpu_ring *oncpu_ring_new(size_t capacity_per_cpu)
{
	return oncpu_ring_new_flags(capacity_per_cpu, 0);
}

void oncpu_ring_destroy(struct oncpu_ring *r)
{
	if (!r)
		return;
	int slots = _oncpu_ds_slots();
	for (int cpu = 0; cpu < slots; cpu++) {
		struct _oncpu_ring_slot *slot = oncpu_ptr(r->_pcpu, cpu);
		free(slot->array); /* reading an unused slot commits nothing */
	}
	_oncpu_slot_delete(&ring_kind, r);
}

/* The slot's array, allocated by whoever needs it first. NULL: ENOMEM. */
static intptr_t *array_of(struct oncpu_ring *r, struct _oncpu_ring_slot *slot)
{
	intptr_t *a = __atomic_load_n(&slot->array, __ATOMIC_ACQUIRE);
	if (a)
		return a;
	intptr_t *fresh = calloc((size_t)r->_mask + 1, sizeof(intptr_t));
	if (!fresh) {
		errno = ENOMEM;
		return NULL;
	}
	/* Release: a thread that sees the array sees it zeroed. */
	if (__atomic_compare_exchange_n(&slot->array, &a, fresh, false, __ATOMIC_ACQ_REL,
	                                __ATOMIC_ACQUIRE))
		return fresh;
	free(fresh);
	return a;
}

/* ---- push ---- */

struct push {
	struct slot_op op; /* first */
	struct oncpu_ring *r;
	void *p;
	int ret; /* the result: 0, or -1 with errno set */
};

static int push_section(struct slot_op *op, void *slot, int id)
{
	struct push *o = (struct push *)op;
	struct _oncpu_ring_slot *sl = slot;
	if (!array_of(o->r, sl)) {
		o->ret = -1;
		return SLOT_DONE;
	}
	int step = _oncpu_ring_push_step(o->r, o->r->_mode, sl, o->p, id);
	if (step != _ONCPU_DS_SLOW)
		return step;
	/* Full when head was read (tail was read first); a lock holder may be
	 * mid-operation: let it finish. */
	if (DS_LOAD(&sl->lock))
		return SLOT_AGAIN;
	errno = ENOBUFS;
	o->ret = -1;
	return SLOT_DONE;
}

static void push_locked(struct slot_op *op, void *slot)
{
	struct push *o = (struct push *)op;
	struct _oncpu_ring_slot *sl = slot;
	intptr_t *array = array_of(o->r, sl);
	if (!array) {
		o->ret = -1;
		return;
	}
	intptr_t tail = DS_LOAD(&sl->tail), head = DS_LOAD(&sl->head);
	if (tail - head >= o->r->_cap) {
		errno = ENOBUFS;
		o->ret = -1;
		return;
	}
	DS_STORE(&array[tail & o->r->_mask], (intptr_t)o->p);
	__atomic_store_n(&sl->tail, tail + 1, __ATOMIC_RELEASE);
}

int _oncpu_ring_push_slow(struct oncpu_ring *r, void *p)
{
	if (!r || !p) {
		errno = EINVAL;
		return -1;
	}
	struct slot_set set = _oncpu_slot_set(&ring_kind, r);
	struct push o = {{push_section, push_locked}, r, p, 0};
	_oncpu_slot_run(&set, &o.op);
	return o.ret;
}

/* ---- pop ---- */

struct pop {
	struct slot_op op; /* first */
	struct oncpu_ring *r;
	intptr_t p; /* the result: the pointer, 0 for empty */
};

static int pop_section(struct slot_op *op, void *slot, int id)
{
	struct pop *o = (struct pop *)op;
	return _oncpu_ring_pop_step(o->r, o->r->_mode, slot, &o->p, id);
}

static void pop_locked(struct slot_op *op, void *slot)
{
	struct pop *o = (struct pop *)op;
	struct _oncpu_ring_slot *sl = slot;
	intptr_t head = DS_LOAD(&sl->head), tail = DS_LOAD(&sl->tail);
	if (head == tail)
		return;
	o->p = DS_LOAD(&sl->array[head & o->r->_mask]);
	__atomic_store_n(&sl->head, head + 1, __ATOMIC_RELEASE);
}

void *_oncpu_ring_pop_slow(struct oncpu_ring *r)
{
	if (!r) {
		errno = EINVAL;
		return NULL;
	}
	struct slot_set set = _oncpu_slot_set(&ring_kind, r);
	struct pop o = {{pop_section, pop_locked}, r, 0};
	_oncpu_slot_run(&set, &o.op);
	return (void *)o.p;
}

void *oncpu_ring_pop_cpu(struct oncpu_ring *r, int cpu)
{
	if (!r || cpu < 0 || cpu >= _oncpu_ds_slots()) {
		errno = EINVAL;
		return NULL;
	}
	struct _oncpu_ring_slot *slot = oncpu_ptr(r->_pcpu, cpu);
	if (__atomic_load_n(&slot->head, __ATOMIC_ACQUIRE) ==
	    __atomic_load_n(&slot->tail, __ATOMIC_ACQUIRE))
		return NULL; /* empty when read; commits no memory on unused CPUs */
	struct slot_set set = _oncpu_slot_set(&ring_kind, r);
	struct pop o = {{pop_section, pop_locked}, r, 0};
	_oncpu_slot_run_on(&set, &o.op, cpu);
	return (void *)o.p;
}
