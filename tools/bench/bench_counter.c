/* SPDX-License-Identifier: MIT */
/*
 * bench_counter.c - counters: oncpu's per-CPU counter against the usual
 * alternatives. Every variant adds 1 per iteration, followed by the same
 * BENCH_BARRIER(), and every teardown checks the exact total.
 *
 *   counter.oncpu          oncpu_counter_add(): one rseq section, no atomic
 *   counter.atomic         one shared word, relaxed atomic fetch_add
 *   counter.getcpu_atomic  sched_getcpu() picks a padded slot, atomic add
 *   counter.tls            a thread-local add to memory: the floor
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oncpu.h>

#include "bench.h"

/* Two lines apart: adjacent-line prefetchers pair 64-byte lines. */
#define SLOT_ALIGN 128

struct slot {
	_Alignas(SLOT_ALIGN) atomic_long v;
};

struct counter_ctx {
	const char *name;
	atomic_long expected; /* iterations run by all threads */
	struct oncpu_counter *counter;
	struct slot *slots; /* getcpu_atomic: one per possible CPU; atomic: one */
	int nslots;
	atomic_long tls_total;
};

static __thread long tls_count;

static struct counter_ctx *ctx_new(const char *name, int nslots)
{
	struct counter_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->name = name;
	if (nslots) {
		c->slots = aligned_alloc(SLOT_ALIGN, sizeof(struct slot) * (size_t)nslots);
		if (!c->slots) {
			free(c);
			return NULL;
		}
		memset(c->slots, 0, sizeof(struct slot) * (size_t)nslots);
		c->nslots = nslots;
	}
	return c;
}

static void *setup_oncpu(int threads)
{
	(void)threads;
	struct counter_ctx *c = ctx_new("counter.oncpu", 0);
	if (c && !(c->counter = oncpu_counter_new())) {
		perror("counter.oncpu: oncpu_counter_new");
		free(c);
		return NULL;
	}
	return c;
}

static void *setup_atomic(int threads)
{
	(void)threads;
	return ctx_new("counter.atomic", 1);
}

static void *setup_getcpu_atomic(int threads)
{
	(void)threads;
	return ctx_new("counter.getcpu_atomic", oncpu_cpu_count());
}

static void *setup_tls(int threads)
{
	(void)threads;
	return ctx_new("counter.tls", 0);
}

static void run_oncpu(void *ctx, int tid, long iters)
{
	struct counter_ctx *c = ctx;
	struct oncpu_counter *counter = c->counter;
	(void)tid;
	for (long i = 0; i < iters; i++) {
		oncpu_counter_add(counter, 1);
		BENCH_BARRIER();
	}
	atomic_fetch_add(&c->expected, iters);
}

static void run_atomic(void *ctx, int tid, long iters)
{
	struct counter_ctx *c = ctx;
	atomic_long *v = &c->slots[0].v;
	(void)tid;
	for (long i = 0; i < iters; i++) {
		atomic_fetch_add_explicit(v, 1, memory_order_relaxed);
		BENCH_BARRIER();
	}
	atomic_fetch_add(&c->expected, iters);
}

static void run_getcpu_atomic(void *ctx, int tid, long iters)
{
	struct counter_ctx *c = ctx;
	struct slot *slots = c->slots;
	unsigned nslots = (unsigned)c->nslots;
	(void)tid;
	for (long i = 0; i < iters; i++) {
		unsigned cpu = (unsigned)sched_getcpu();
		if (cpu >= nslots) /* -1 (no getcpu) or beyond possible CPUs */
			cpu = 0;
		atomic_fetch_add_explicit(&slots[cpu].v, 1, memory_order_relaxed);
		BENCH_BARRIER();
	}
	atomic_fetch_add(&c->expected, iters);
}

static void run_tls(void *ctx, int tid, long iters)
{
	struct counter_ctx *c = ctx;
	(void)tid;
	tls_count = 0;
	for (long i = 0; i < iters; i++) {
		tls_count++; /* the barrier keeps this a memory add per iteration */
		BENCH_BARRIER();
	}
	atomic_fetch_add(&c->tls_total, tls_count);
	atomic_fetch_add(&c->expected, iters);
}

static int teardown(void *ctx)
{
	struct counter_ctx *c = ctx;
	long sum = 0, expected = atomic_load(&c->expected);
	if (c->counter) {
		sum = oncpu_counter_sum(c->counter);
		oncpu_counter_destroy(c->counter);
	} else if (c->slots) {
		for (int i = 0; i < c->nslots; i++)
			sum += atomic_load(&c->slots[i].v);
	} else {
		sum = atomic_load(&c->tls_total);
	}
	const char *name = c->name;
	free(c->slots);
	free(c);
	if (sum != expected) {
		fprintf(stderr, "%s: sum %ld, expected %ld\n", name, sum, expected);
		return -1;
	}
	return 0;
}

const struct bench_case bench_counter[] = {
    {"counter.oncpu", BENCH_THREADS_1_AND_CPUS, setup_oncpu, run_oncpu, teardown, NULL},
    {"counter.atomic", BENCH_THREADS_1_AND_CPUS, setup_atomic, run_atomic, teardown, NULL},
    {"counter.getcpu_atomic", BENCH_THREADS_1_AND_CPUS, setup_getcpu_atomic, run_getcpu_atomic,
     teardown, NULL},
    {"counter.tls", BENCH_THREADS_1_AND_CPUS, setup_tls, run_tls, teardown, NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};
