/* SPDX-License-Identifier: MIT */
/*
 * ring.c - per-CPU rings: creation, lazy arrays, slow paths, pop_cpu.
 */
#define _GNU_SOURCE
#define _ONCPU_BUILDING_EXPORTS 1
#include <errno.h>
#include <stdlib.h>

#include "slot.h"

#define LOCK_OFF offsetof(struct _oncpu_ring_slot, lock)

struct oncpu_ring *oncpu_ring_new_flags(size_t capacity_per_cpu, unsigned flags)
{
	if (capacity_per_cpu == 0 || capacity_per_cpu > ONCPU_RING_MAX_CAPACITY ||
	    (flags & ~ONCPU_F_VCPU)) {
		errno = EINVAL;
		return NULL;
	}
	struct oncpu_ring *r = aligned_alloc(ONCPU_CACHELINE, ONCPU_CACHELINE);
	if (!r) {
		errno = ENOMEM;
		return NULL;
	}
	r->_pcpu =
	    oncpu_percpu_alloc(sizeof(struct _oncpu_ring_slot), sizeof(struct _oncpu_ring_slot));
	if (r->_pcpu && !_oncpu_ds_register(r->_pcpu, LOCK_OFF, NULL)) {
		oncpu_percpu_free(r->_pcpu);
		r->_pcpu = NULL;
	}
	if (!r->_pcpu) {
		free(r);
		errno = ENOMEM;
		return NULL;
	}
	size_t len = 1;
	while (len < capacity_per_cpu)
		len <<= 1;
	r->_mode = (flags & ONCPU_F_VCPU) ? _oncpu_mode_ONCPU_VCPU : _oncpu_mode_ONCPU_CPU;
	r->_flags = 0;
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
	_oncpu_ds_unregister(r->_pcpu);
	oncpu_percpu_free(r->_pcpu);
	free(r);
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

/* Lock holder's push and pop. */
static int locked_push(struct oncpu_ring *r, struct _oncpu_ring_slot *slot, void *p)
{
	intptr_t *array = array_of(r, slot);
	if (!array)
		return -1;
	intptr_t tail = DS_LOAD(&slot->tail), head = DS_LOAD(&slot->head);
	if (tail - head >= r->_cap) {
		errno = ENOBUFS;
		return -1;
	}
	DS_STORE(&array[tail & r->_mask], (intptr_t)p);
	__atomic_store_n(&slot->tail, tail + 1, __ATOMIC_RELEASE);
	return 0;
}

static void *locked_pop(struct oncpu_ring *r, struct _oncpu_ring_slot *slot)
{
	intptr_t head = DS_LOAD(&slot->head), tail = DS_LOAD(&slot->tail);
	if (head == tail)
		return NULL;
	void *p = (void *)DS_LOAD(&slot->array[head & r->_mask]);
	__atomic_store_n(&slot->head, head + 1, __ATOMIC_RELEASE);
	return p;
}

int _oncpu_ring_push_slow(struct oncpu_ring *r, void *p)
{
	if (!r || !p) {
		errno = EINVAL;
		return -1;
	}
	int mode = r->_mode;
	if (_oncpu_ds_sections(&r->_flags, mode)) {
		for (;;) {
			int cpu = _oncpu_cs_id(mode);
			struct _oncpu_ring_slot *slot = oncpu_ptr(r->_pcpu, cpu);
			intptr_t *array = array_of(r, slot);
			if (!array)
				return -1;
			if (_oncpu_ds_parked(&slot->lock))
				break; /* the locked path */
			intptr_t tail = __atomic_load_n(&slot->tail, __ATOMIC_ACQUIRE);
			intptr_t head = __atomic_load_n(&slot->head, __ATOMIC_ACQUIRE);
			if (tail - head >= r->_cap) {
				/* Full when head was read (tail was read first); a
				 * lock holder may be mid-operation: let it finish. */
				if (!DS_LOAD(&slot->lock)) {
					errno = ENOBUFS;
					return -1;
				}
				continue;
			}
			int res = _oncpu_cs_cmpeq_cmpeq_trystore_store(
			    mode, _oncpu_mo_ONCPU_RELEASE, &slot->lock, 0, &slot->tail, tail,
			    &array[tail & r->_mask], (intptr_t)p, tail + 1, cpu);
			if (res == ONCPU_CS_COMMITTED)
				return 0;
		}
	}
	int idx;
	struct _oncpu_ring_slot *slot =
	    _oncpu_ds_lock_current(r->_pcpu, LOCK_OFF, mode, &r->_flags, &idx);
	int ret = locked_push(r, slot, p);
	_oncpu_ds_unlock_current(&slot->lock);
	return ret;
}

void *_oncpu_ring_pop_slow(struct oncpu_ring *r)
{
	if (!r) {
		errno = EINVAL;
		return NULL;
	}
	int mode = r->_mode;
	if (_oncpu_ds_sections(&r->_flags, mode)) {
		for (;;) {
			int cpu = _oncpu_cs_id(mode);
			struct _oncpu_ring_slot *slot = oncpu_ptr(r->_pcpu, cpu);
			if (_oncpu_ds_parked(&slot->lock))
				break; /* the locked path */
			intptr_t head = __atomic_load_n(&slot->head, __ATOMIC_ACQUIRE);
			intptr_t tail = __atomic_load_n(&slot->tail, __ATOMIC_ACQUIRE);
			if (head == tail)
				return NULL;
			intptr_t *array = __atomic_load_n(&slot->array, __ATOMIC_ACQUIRE);
			intptr_t p;
			int res = _oncpu_cs_cmpeq_cmpeq_load_store(
			    mode, &slot->lock, 0, &slot->head, head, &array[head & r->_mask], &p,
			    head + 1, cpu);
			if (res == ONCPU_CS_COMMITTED)
				return (void *)p;
		}
	}
	int idx;
	struct _oncpu_ring_slot *slot =
	    _oncpu_ds_lock_current(r->_pcpu, LOCK_OFF, mode, &r->_flags, &idx);
	void *p = locked_pop(r, slot);
	_oncpu_ds_unlock_current(&slot->lock);
	return p;
}

void *oncpu_ring_pop_cpu(struct oncpu_ring *r, int cpu)
{
	if (!r || cpu < 0 || cpu >= _oncpu_ds_slots()) {
		errno = EINVAL;
		return NULL;
	}
	int mode = r->_mode;
	struct _oncpu_ring_slot *slot = oncpu_ptr(r->_pcpu, cpu);
	if (__atomic_load_n(&slot->head, __ATOMIC_ACQUIRE) ==
	    __atomic_load_n(&slot->tail, __ATOMIC_ACQUIRE))
		return NULL; /* empty when read; commits no memory on unused CPUs */
	if (_oncpu_ds_sections(&r->_flags, mode)) {
		while (_oncpu_cs_id(mode) == cpu && !_oncpu_ds_parked(&slot->lock)) {
			intptr_t head = __atomic_load_n(&slot->head, __ATOMIC_ACQUIRE);
			intptr_t tail = __atomic_load_n(&slot->tail, __ATOMIC_ACQUIRE);
			if (head == tail)
				return NULL;
			intptr_t p;
			int res = _oncpu_cs_cmpeq_cmpeq_load_store(
			    mode, &slot->lock, 0, &slot->head, head, &slot->array[head & r->_mask],
			    &p, head + 1, cpu);
			if (res == ONCPU_CS_COMMITTED)
				return (void *)p;
		}
	}
	_oncpu_ds_lock_slot(r->_pcpu, LOCK_OFF, mode, &r->_flags, cpu);
	void *p = locked_pop(r, slot);
	_oncpu_ds_unlock(&slot->lock);
	return p;
}

/* Exported copies of the inline paths. */
int oncpu_ring_push(struct oncpu_ring *r, void *p)
{
	return _oncpu_ring_push_fast(r, p);
}

void *oncpu_ring_pop(struct oncpu_ring *r)
{
	return _oncpu_ring_pop_fast(r);
}
