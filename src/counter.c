/* SPDX-License-Identifier: MIT */
/*
 * counter.c - per-CPU counters. Each CPU's instance holds two words: the
 * one rseq sections add to, and the one fallback threads add to atomically.
 */
#include <errno.h>

#include "internal.h"

struct counter_slot {
	long rseq;     /* written only by critical sections on this CPU */
	long fallback; /* written by atomic adds from fallback threads */
};

struct oncpu_counter *oncpu_counter_new(void)
{
	return oncpu_percpu_alloc(sizeof(struct counter_slot), sizeof(long));
}

void _oncpu_counter_add_slow(struct oncpu_counter *c, long delta)
{
	if (!c)
		ONCPU_FATAL("oncpu_counter_add(NULL, %ld): NULL counter", delta);
	if (_oncpu_thread_ready_slow()) {
		int r;
		do
			r = oncpu_cs_percpu_add(ONCPU_CPU, c, delta);
		while (r == ONCPU_CS_ABORTED);
		if (r == ONCPU_CS_COMMITTED)
			return;
	}
	struct counter_slot *slot = oncpu_ptr(c, _oncpu_cpu_without_rseq());
	__atomic_fetch_add(&slot->fallback, delta, __ATOMIC_RELAXED);
}

long oncpu_counter_sum(struct oncpu_counter *c)
{
	if (!c)
		ONCPU_FATAL("oncpu_counter_sum(NULL): NULL counter");
	unsigned long sum = 0; /* wraps like the adds do, without UB */
	int cpus = _oncpu_possible_cpus();
	for (int cpu = 0; cpu < cpus; cpu++) {
		struct counter_slot *slot = oncpu_ptr(c, cpu);
		sum += (unsigned long)__atomic_load_n(&slot->rseq, __ATOMIC_RELAXED);
		sum += (unsigned long)__atomic_load_n(&slot->fallback, __ATOMIC_RELAXED);
	}
	return (long)sum;
}

void oncpu_counter_destroy(struct oncpu_counter *c)
{
	oncpu_percpu_free(c);
}
