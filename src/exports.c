/* SPDX-License-Identifier: MIT */
/*
 * exports.c - the functions behind the operations that the headers also
 * offer as inline fast paths (ONCPU_INLINE_FASTPATHS, oncpu/config.h): what
 * programs built with ONCPU_INLINE_FASTPATHS=0 call, and what dlsym, FFI,
 * function pointers and (name)(args) calls reach. Every such copy is here.
 * Each is its fast path, compiled once; a parenthesized name is the
 * function, not the header's macro.
 */
#include "internal.h"

int(oncpu_cpu)(void)
{
	return _oncpu_cpu_fast();
}

int(oncpu_vcpu)(void)
{
	return _oncpu_vcpu_fast();
}

void(oncpu_counter_add)(struct oncpu_counter *c, long delta)
{
	_oncpu_counter_add_fast(c, delta);
}

void(oncpu_stack_push)(struct oncpu_stack *s, struct oncpu_stack_node *n)
{
	_oncpu_stack_push_fast(s, n);
}

struct oncpu_stack_node *(oncpu_stack_pop)(struct oncpu_stack *s)
{
	return _oncpu_stack_pop_fast(s);
}

int(oncpu_ring_push)(struct oncpu_ring *r, void *p)
{
	return _oncpu_ring_push_fast(r, p);
}

void *(oncpu_ring_pop)(struct oncpu_ring *r)
{
	return _oncpu_ring_pop_fast(r);
}

void *(oncpu_cache_alloc)(struct oncpu_cache *c)
{
	return _oncpu_cache_alloc_fast(c);
}

void(oncpu_cache_free)(struct oncpu_cache *c, void *obj)
{
	_oncpu_cache_free_fast(c, obj, NULL, 0);
}

bool(oncpu_resched_arm)(void)
{
	return _oncpu_resched_arm_fast();
}

bool(oncpu_resched_check)(void)
{
	return _oncpu_resched_check_fast();
}

uint64_t(oncpu_resched_epoch)(void)
{
	return _oncpu_resched_epoch_fast();
}

void *(oncpu_resched_cpu_ptr)(struct oncpu_resched_cache *c, void *handle)
{
	return _oncpu_resched_cpu_ptr_fast(c, handle);
}
