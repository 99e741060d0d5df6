/* SPDX-License-Identifier: MIT */
/*
 * bench_ring.c - bounded rings of pointers. One operation is a push+pop
 * pair. Every teardown checks that pushes = pops + pointers left, and that
 * every pointer left is one that was pushed.
 *
 *   ring.oncpu  oncpu_ring_push + oncpu_ring_pop: one rseq section each,
 *               1024 pointers per CPU
 *   ring.mutex  one ring of 1024 pointers per thread under a pthread mutex
 *   ring.vcpu   ring.oncpu with one ring per virtual CPU
 *   ring.vcpu_mixed  ring.vcpu with every second thread without rseq
 *               (mixed.h)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oncpu.h>

#include "bench.h"
#include "mixed.h"

#define CAPACITY 1024

struct per_thread {
	long pushed, popped, full;
} __attribute__((aligned(64)));

struct ring_ctx {
	const char *name;
	int threads;
	struct per_thread *pt;
	struct oncpu_ring *ring;                           /* oncpu */
	atomic_int mixed_failed;                           /* vcpu_mixed */
	pthread_mutex_t lock __attribute__((aligned(64))); /* mutex */
	size_t head, tail, cap;
	void **array;
};

static struct ring_ctx *ctx_new(const char *name, int threads)
{
	struct ring_ctx *c = aligned_alloc(64, (sizeof(*c) + 63) & ~(size_t)63);
	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->name = name;
	c->threads = threads;
	c->pt = aligned_alloc(64, sizeof(struct per_thread) * (size_t)threads);
	if (!c->pt) {
		free(c);
		return NULL;
	}
	memset(c->pt, 0, sizeof(struct per_thread) * (size_t)threads);
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

/* Tokens: tid in the high half, never NULL. */
static void *token(int tid, long i)
{
	return (void *)(((uintptr_t)(tid + 1) << 32) | ((uintptr_t)i & 0xffffffff) | 1);
}

static void *setup_ring(const char *name, int threads, unsigned flags)
{
	struct ring_ctx *c = ctx_new(name, threads);
	if (c && !(c->ring = oncpu_ring_new_flags(CAPACITY, flags))) {
		fprintf(stderr, "%s: oncpu_ring_new_flags: %s\n", name, strerror(errno));
		free(c->pt);
		free(c);
		return NULL;
	}
	return c;
}

static void *setup_oncpu(int threads)
{
	return setup_ring("ring.oncpu", threads, 0);
}

static void *setup_vcpu(int threads)
{
	return setup_ring("ring.vcpu", threads, ONCPU_F_VCPU);
}

static void *setup_vcpu_mixed(int threads)
{
	return setup_ring("ring.vcpu_mixed", threads, ONCPU_F_VCPU);
}

static void run_oncpu(void *ctx, int tid, long iters)
{
	struct ring_ctx *c = ctx;
	struct per_thread *p = &c->pt[tid];
	struct oncpu_ring *r = c->ring;
	long pushed = 0, popped = 0, full = 0;
	for (long i = 0; i < iters; i++) {
		if (__builtin_expect(oncpu_ring_push(r, token(tid, i)) == 0, 1))
			pushed++;
		else
			full++;
		/* NULL: the thread moved to a CPU whose ring is empty; what it
		 * pushed stays behind for that CPU's next pop. */
		if (__builtin_expect(oncpu_ring_pop(r) != NULL, 1))
			popped++;
		BENCH_BARRIER();
	}
	p->pushed = pushed;
	p->popped = popped;
	p->full = full;
}

static void run_mixed(void *ctx, int tid, long iters)
{
	struct ring_ctx *c = ctx;
	mixed_thread_start(tid, &c->mixed_failed);
	run_oncpu(ctx, tid, iters);
	mixed_rejoin();
}

static void *setup_mutex(int threads)
{
	struct ring_ctx *c = ctx_new("ring.mutex", threads);
	if (!c)
		return NULL;
	c->cap = (size_t)CAPACITY * (size_t)threads;
	if (!(c->array = calloc(c->cap, sizeof(void *)))) {
		free(c->pt);
		free(c);
		return NULL;
	}
	return c;
}

static void run_mutex(void *ctx, int tid, long iters)
{
	struct ring_ctx *c = ctx;
	struct per_thread *p = &c->pt[tid];
	long pushed = 0, popped = 0, full = 0;
	for (long i = 0; i < iters; i++) {
		pthread_mutex_lock(&c->lock);
		if (c->tail - c->head < c->cap) {
			c->array[c->tail++ % c->cap] = token(tid, i);
			pushed++;
		} else {
			full++;
		}
		pthread_mutex_unlock(&c->lock);
		pthread_mutex_lock(&c->lock);
		void *v = NULL;
		if (c->head != c->tail)
			v = c->array[c->head++ % c->cap];
		pthread_mutex_unlock(&c->lock);
		if (__builtin_expect(v != NULL, 1))
			popped++;
		BENCH_BARRIER();
	}
	p->pushed = pushed;
	p->popped = popped;
	p->full = full;
}

static bool is_token(const struct ring_ctx *c, void *v)
{
	uintptr_t t = (uintptr_t)v;
	return (t & 1) && (t >> 32) >= 1 && (t >> 32) <= (uintptr_t)c->threads;
}

static int teardown(void *ctx)
{
	struct ring_ctx *c = ctx;
	long pushed = 0, popped = 0, left = 0;
	int bad = 0;
	for (int t = 0; t < c->threads; t++) {
		pushed += c->pt[t].pushed;
		popped += c->pt[t].popped;
	}
	if (c->ring) {
		for (int cpu = 0; cpu < oncpu_cpu_count(); cpu++) {
			void *v;
			while ((v = oncpu_ring_pop_cpu(c->ring, cpu))) {
				bad |= !is_token(c, v);
				left++;
			}
		}
		oncpu_ring_destroy(c->ring);
	} else {
		for (; c->head != c->tail; c->head++, left++)
			bad |= !is_token(c, c->array[c->head % c->cap]);
		free(c->array);
	}
	if (bad || pushed != popped + left) {
		fprintf(stderr, "%s: pushed %ld, popped %ld, left %ld%s\n", c->name, pushed, popped,
		        left, bad ? ", and a pointer that was never pushed" : "");
		bad = 1;
	}
	if (mixed_check(c->name, &c->mixed_failed) != 0)
		bad = 1;
	pthread_mutex_destroy(&c->lock);
	free(c->pt);
	free(c);
	return bad ? -1 : 0;
}

const struct bench_case bench_ring[] = {
    {"ring.oncpu", BENCH_THREADS_1_AND_CPUS, setup_oncpu, run_oncpu, teardown, NULL},
    {"ring.mutex", BENCH_THREADS_1_AND_CPUS, setup_mutex, run_mutex, teardown, NULL},
    {"ring.vcpu", BENCH_THREADS_CPUS_AND_4X, setup_vcpu, run_oncpu, teardown, NULL},
    {"ring.vcpu_mixed", BENCH_THREADS_CPUS_AND_4X, setup_vcpu_mixed, run_mixed, teardown, NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};
