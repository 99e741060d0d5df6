/* SPDX-License-Identifier: MIT */
/*
 * bench_resched.c - reschedule detection: the cost of "this CPU's instance
 * of a per-CPU item" when it is cached per thread and revalidated only after
 * a reschedule (tcmalloc's slab pointer), against computing it from the
 * current CPU id every time. Every variant produces the pointer and uses it
 * (one load through it) per iteration.
 *
 *   resched.check    oncpu_resched_cpu_ptr(): check the mark in cpu_id_start,
 *                    return the cached pointer (revalidate after a switch)
 *   resched.cpu_id   oncpu_ptr(item, oncpu_cpu()): read rseq's cpu_id
 *   resched.getcpu   oncpu_ptr(item, sched_getcpu())
 * info: resched=yes|no (no: detection unsupported here, so every check
 * revalidates: the fallback cost).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <oncpu.h>

#include "bench.h"

struct resched_ctx {
	long *item; /* per-CPU long, 1 on every CPU */
	atomic_long sum, expected;
	const char *info;
};

static __thread struct oncpu_resched_cache cache;

static void *setup(int threads)
{
	(void)threads;
	struct resched_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->item = oncpu_percpu_alloc(sizeof(long), 0);
	if (!c->item) {
		perror("resched: oncpu_percpu_alloc");
		free(c);
		return NULL;
	}
	for (int cpu = 0; cpu < oncpu_cpu_count(); cpu++)
		*(long *)oncpu_ptr(c->item, cpu) = 1;
	c->info = oncpu_resched_init() == 0 ? "resched=yes" : "resched=no";
	return c;
}

static void run_check(void *ctx, int tid, long iters)
{
	struct resched_ctx *c = ctx;
	long sum = 0;
	(void)tid;
	cache = (struct oncpu_resched_cache)ONCPU_RESCHED_CACHE_INIT;
	for (long i = 0; i < iters; i++) {
		sum += *(long *)oncpu_resched_cpu_ptr(&cache, c->item);
		BENCH_BARRIER();
	}
	atomic_fetch_add(&c->sum, sum);
	atomic_fetch_add(&c->expected, iters);
}

static void run_cpu_id(void *ctx, int tid, long iters)
{
	struct resched_ctx *c = ctx;
	long sum = 0;
	(void)tid;
	for (long i = 0; i < iters; i++) {
		sum += *(long *)oncpu_ptr(c->item, oncpu_cpu());
		BENCH_BARRIER();
	}
	atomic_fetch_add(&c->sum, sum);
	atomic_fetch_add(&c->expected, iters);
}

static void run_getcpu(void *ctx, int tid, long iters)
{
	struct resched_ctx *c = ctx;
	long sum = 0;
	(void)tid;
	for (long i = 0; i < iters; i++) {
		int cpu = sched_getcpu();
		sum += *(long *)oncpu_ptr(c->item, cpu < 0 ? 0 : cpu);
		BENCH_BARRIER();
	}
	atomic_fetch_add(&c->sum, sum);
	atomic_fetch_add(&c->expected, iters);
}

static int teardown(void *ctx)
{
	struct resched_ctx *c = ctx;
	long sum = atomic_load(&c->sum), expected = atomic_load(&c->expected);
	oncpu_percpu_free(c->item);
	free(c);
	if (sum != expected) { /* every pointer was some CPU's instance */
		fprintf(stderr, "resched: sum %ld, expected %ld\n", sum, expected);
		return -1;
	}
	return 0;
}

static const char *info(void *ctx)
{
	return ((struct resched_ctx *)ctx)->info;
}

const struct bench_case bench_resched[] = {
    {"resched.check", BENCH_THREADS_1_AND_CPUS, setup, run_check, teardown, info},
    {"resched.cpu_id", BENCH_THREADS_1_AND_CPUS, setup, run_cpu_id, teardown, NULL},
    {"resched.getcpu", BENCH_THREADS_1_AND_CPUS, setup, run_getcpu, teardown, NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};
