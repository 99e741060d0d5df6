/* SPDX-License-Identifier: MIT */
/*
 * bench_mutex.c - the adaptive mutex against glibc's mutexes. One op: lock,
 * a short critical section (two dependent updates of shared data, the
 * invariant a == b kept under the lock), unlock, then OUTSIDE_STEPS steps
 * of thread-local work (a multiply chain, about 25 ns): what a real lock
 * user does between two acquisitions, so that the time a waiter needs to
 * get a released lock (spinning, or being woken) counts, and not only how
 * long one thread can keep re-taking it. Thread counts: one per CPU, then 4
 * per CPU (oversubscribed: owners get preempted inside the lock).
 *
 *   mutex.oncpu              oncpu_mutex_t with the process's provider
 *                            (info: provider=<name>)
 *   mutex.oncpu_untracked    the same mutex, waiters told to ignore the
 *                            provider: what the mutex does with "none"
 *   mutex.pthread            pthread_mutex_t, default (normal) type
 *   mutex.pthread_adaptive   PTHREAD_MUTEX_ADAPTIVE_NP (glibc's spinning)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <oncpu.h>

#include "bench.h"

enum kind { ONCPU, ONCPU_UNTRACKED, PTHREAD, PTHREAD_ADAPTIVE };

#ifndef OUTSIDE_STEPS
#define OUTSIDE_STEPS 16
#endif

/* Work outside the lock: a dependent chain the compiler cannot drop. */
static inline uint64_t outside(uint64_t x)
{
	for (int i = 0; i < OUTSIDE_STEPS; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		__asm__ __volatile__("" : "+r"(x));
	}
	return x;
}

struct mutex_ctx {
	_Alignas(128) oncpu_mutex_t om;
	pthread_mutex_t pm;
	/* The protected data, on its own line as a real structure would be. */
	_Alignas(128) long a, b;
	_Alignas(128) atomic_long expected;
	atomic_ullong sink;
	atomic_int broken;
	enum kind kind;
	char info[48];
};

static void *setup(enum kind kind)
{
	struct mutex_ctx *c = aligned_alloc(128, sizeof(*c));
	if (!c)
		return NULL;
	*c = (struct mutex_ctx){.kind = kind};
	oncpu_mutex_init(&c->om);
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	if (kind == PTHREAD_ADAPTIVE)
		pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(&c->pm, &attr);
	pthread_mutexattr_destroy(&attr);
	snprintf(c->info, sizeof(c->info), "provider=%s",
	         kind == ONCPU ? oncpu_desched_provider() : "none");
	_oncpu_mutex_ignore_provider = kind == ONCPU_UNTRACKED;
	return c;
}

static void *setup_oncpu(int threads)
{
	(void)threads;
	return setup(ONCPU);
}
static void *setup_oncpu_untracked(int threads)
{
	(void)threads;
	return setup(ONCPU_UNTRACKED);
}
static void *setup_pthread(int threads)
{
	(void)threads;
	return setup(PTHREAD);
}
static void *setup_pthread_adaptive(int threads)
{
	(void)threads;
	return setup(PTHREAD_ADAPTIVE);
}

/* The critical section: the invariant holds at entry, is broken, restored. */
static inline void section(struct mutex_ctx *c)
{
	long a = c->a;
	if (a != c->b)
		atomic_store_explicit(&c->broken, 1, memory_order_relaxed);
	c->a = a + 1;
	BENCH_BARRIER();
	c->b = a + 1;
}

static void run_oncpu(void *ctx, int tid, long iters)
{
	struct mutex_ctx *c = ctx;
	uint64_t x = (uint64_t)tid;
	for (long i = 0; i < iters; i++) {
		oncpu_mutex_lock(&c->om);
		section(c);
		oncpu_mutex_unlock(&c->om);
		x = outside(x);
		BENCH_BARRIER();
	}
	atomic_fetch_add(&c->sink, x);
	atomic_fetch_add(&c->expected, iters);
}

static void run_pthread(void *ctx, int tid, long iters)
{
	struct mutex_ctx *c = ctx;
	uint64_t x = (uint64_t)tid;
	for (long i = 0; i < iters; i++) {
		pthread_mutex_lock(&c->pm);
		section(c);
		pthread_mutex_unlock(&c->pm);
		x = outside(x);
		BENCH_BARRIER();
	}
	atomic_fetch_add(&c->sink, x);
	atomic_fetch_add(&c->expected, iters);
}

static int teardown(void *ctx)
{
	struct mutex_ctx *c = ctx;
	long expected = atomic_load(&c->expected);
	int bad = atomic_load(&c->broken) || c->a != expected || c->b != expected;
	if (bad)
		fprintf(stderr, "mutex: lost mutual exclusion: a %ld b %ld expected %ld\n", c->a,
		        c->b, expected);
	_oncpu_mutex_ignore_provider = 0;
	pthread_mutex_destroy(&c->pm);
	oncpu_mutex_destroy(&c->om);
	free(c);
	return bad ? -1 : 0;
}

static const char *info(void *ctx)
{
	return ((struct mutex_ctx *)ctx)->info;
}

const struct bench_case bench_mutex[] = {
    {"mutex.oncpu", BENCH_THREADS_CPUS_AND_4X, setup_oncpu, run_oncpu, teardown, info},
    {"mutex.oncpu_untracked", BENCH_THREADS_CPUS_AND_4X, setup_oncpu_untracked, run_oncpu, teardown,
     info},
    {"mutex.pthread", BENCH_THREADS_CPUS_AND_4X, setup_pthread, run_pthread, teardown, NULL},
    {"mutex.pthread_adaptive", BENCH_THREADS_CPUS_AND_4X, setup_pthread_adaptive, run_pthread,
     teardown, NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};
