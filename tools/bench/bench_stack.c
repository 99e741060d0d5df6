/* SPDX-License-Identifier: MIT */
/*
 * bench_stack.c - free-list stacks. One operation is a push+pop pair: the
 * thread pushes the node it holds and pops one back (LIFO free-list use).
 * Every teardown checks that every node is held by a thread, left in a spare
 * pool, or on the stack, exactly once.
 *
 *   stack.oncpu    oncpu_stack_push + oncpu_stack_pop: one rseq section each
 *   stack.mutex    one list under a pthread mutex (lock per push and pop)
 *   stack.treiber  one lock-free list, top = {pointer, 64-bit tag} swapped by
 *                  a 16-byte compare-and-swap (x86-64 cmpxchg16b; elsewhere a
 *                  48-bit pointer with a 16-bit tag in one word)
 *   stack.vcpu     stack.oncpu with one list per virtual CPU
 *   stack.vcpu_mixed  stack.vcpu with every second thread without rseq
 *                  (mixed.h)
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

#define SPARES 256 /* per thread: replacements when a pop finds another CPU's list empty */

struct node {
	struct oncpu_stack_node link; /* also the mutex and Treiber lists' link */
	int id;
};

/* n's link, NULL for no node (&NULL->link would be undefined). */
static struct oncpu_stack_node *link_of(struct node *n)
{
	return n ? &n->link : NULL;
}

struct tagged {
	struct node *ptr;
	uintptr_t tag;
} __attribute__((aligned(16)));

struct per_thread {
	struct node *held; /* the node this thread holds after its run */
	int nspare;        /* spares left */
	struct node *spare[SPARES];
} __attribute__((aligned(64)));

struct stack_ctx {
	const char *name;
	int threads, nnodes;
	struct node *nodes;
	struct per_thread *pt;
	struct oncpu_stack *stack;                         /* oncpu */
	atomic_int mixed_failed;                           /* vcpu_mixed */
	pthread_mutex_t lock __attribute__((aligned(64))); /* mutex */
	struct node *head;
	struct tagged top __attribute__((aligned(64))); /* treiber */
};

static struct stack_ctx *ctx_new(const char *name, int threads)
{
	struct stack_ctx *c = aligned_alloc(64, (sizeof(*c) + 63) & ~(size_t)63);
	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->name = name;
	c->threads = threads;
	c->nnodes = threads * (SPARES + 1);
	c->nodes = calloc((size_t)c->nnodes, sizeof(struct node));
	c->pt = aligned_alloc(64, sizeof(struct per_thread) * (size_t)threads);
	if (!c->nodes || !c->pt) {
		free(c->nodes);
		free(c->pt);
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	for (int i = 0; i < c->nnodes; i++)
		c->nodes[i].id = i;
	for (int t = 0; t < threads; t++) {
		struct per_thread *p = &c->pt[t];
		p->held = &c->nodes[t * (SPARES + 1)];
		p->nspare = SPARES;
		for (int i = 0; i < SPARES; i++)
			p->spare[i] = &c->nodes[t * (SPARES + 1) + 1 + i];
	}
	return c;
}

/* A pop that found nothing (the thread moved to a CPU whose list is
 * empty): continue with a spare, the pushed node stays on the stack. */
static struct node *replacement(struct stack_ctx *c, int tid)
{
	struct per_thread *p = &c->pt[tid];
	if (p->nspare > 0)
		return p->spare[--p->nspare];
	/* Out of spares (many migrations): the other lists have them. */
	for (int cpu = 0; c->stack && cpu < oncpu_cpu_count(); cpu++) {
		struct oncpu_stack_node *n = oncpu_stack_pop_cpu(c->stack, cpu);
		if (n)
			return (struct node *)n;
	}
	fprintf(stderr, "%s: thread %d found no node anywhere\n", c->name, tid);
	abort();
}

/* ---- oncpu ---- */

static void *setup_stack(const char *name, int threads, unsigned flags)
{
	struct stack_ctx *c = ctx_new(name, threads);
	if (c && !(c->stack = oncpu_stack_new_flags(flags))) {
		fprintf(stderr, "%s: oncpu_stack_new_flags: %s\n", name, strerror(errno));
		free(c->nodes);
		free(c->pt);
		free(c);
		return NULL;
	}
	return c;
}

static void *setup_oncpu(int threads)
{
	return setup_stack("stack.oncpu", threads, 0);
}

static void *setup_vcpu(int threads)
{
	return setup_stack("stack.vcpu", threads, ONCPU_F_VCPU);
}

static void *setup_vcpu_mixed(int threads)
{
	return setup_stack("stack.vcpu_mixed", threads, ONCPU_F_VCPU);
}

static void run_oncpu(void *ctx, int tid, long iters)
{
	struct stack_ctx *c = ctx;
	struct oncpu_stack *s = c->stack;
	struct node *n = c->pt[tid].held;
	for (long i = 0; i < iters; i++) {
		oncpu_stack_push(s, &n->link);
		n = (struct node *)oncpu_stack_pop(s);
		if (__builtin_expect(!n, 0))
			n = replacement(c, tid);
		BENCH_BARRIER();
	}
	c->pt[tid].held = n;
}

static void run_mixed(void *ctx, int tid, long iters)
{
	struct stack_ctx *c = ctx;
	mixed_thread_start(tid, &c->mixed_failed);
	run_oncpu(ctx, tid, iters);
	mixed_rejoin();
}

/* ---- mutex ---- */

static void *setup_mutex(int threads)
{
	return ctx_new("stack.mutex", threads);
}

static void run_mutex(void *ctx, int tid, long iters)
{
	struct stack_ctx *c = ctx;
	struct node *n = c->pt[tid].held;
	for (long i = 0; i < iters; i++) {
		pthread_mutex_lock(&c->lock);
		n->link.next = link_of(c->head);
		c->head = n;
		pthread_mutex_unlock(&c->lock);
		pthread_mutex_lock(&c->lock);
		n = c->head;
		if (n)
			c->head = (struct node *)n->link.next;
		pthread_mutex_unlock(&c->lock);
		if (__builtin_expect(!n, 0))
			n = replacement(c, tid);
		BENCH_BARRIER();
	}
	c->pt[tid].held = n;
}

/* ---- Treiber ---- */

#if defined(__x86_64__)
static inline struct tagged load_top(struct tagged *t)
{
	/* Two loads may tear; the compare-and-swap then fails and retries. */
	struct tagged v;
	v.tag = __atomic_load_n(&t->tag, __ATOMIC_ACQUIRE);
	v.ptr = __atomic_load_n(&t->ptr, __ATOMIC_ACQUIRE);
	return v;
}

static inline bool cas_top(struct tagged *t, struct tagged old, struct node *ptr)
{
	bool ok;
	uintptr_t tag = old.tag + 1;
	__asm__ __volatile__("lock cmpxchg16b %1"
	                     : "=@ccz"(ok), "+m"(*t), "+a"(old.ptr), "+d"(old.tag)
	                     : "b"(ptr), "c"(tag)
	                     : "memory");
	return ok;
}
#else
/* One word: 48-bit pointer, 16-bit tag (user addresses fit in 48 bits). */
#define PTR_MASK (((uintptr_t)1 << 48) - 1)
static inline struct tagged load_top(struct tagged *t)
{
	uintptr_t w = __atomic_load_n(&t->tag, __ATOMIC_ACQUIRE);
	struct tagged v = {(struct node *)(w & PTR_MASK), w};
	return v;
}

static inline bool cas_top(struct tagged *t, struct tagged old, struct node *ptr)
{
	uintptr_t want = ((old.tag >> 48) + 1) << 48 | (uintptr_t)ptr;
	return __atomic_compare_exchange_n(&t->tag, &old.tag, want, false, __ATOMIC_ACQ_REL,
	                                   __ATOMIC_ACQUIRE);
}
#endif

static void *setup_treiber(int threads)
{
	return ctx_new("stack.treiber", threads);
}

static void run_treiber(void *ctx, int tid, long iters)
{
	struct stack_ctx *c = ctx;
	struct node *n = c->pt[tid].held;
	for (long i = 0; i < iters; i++) {
		struct tagged old;
		do {
			old = load_top(&c->top);
			n->link.next = link_of(old.ptr);
		} while (!cas_top(&c->top, old, n));
		for (;;) {
			old = load_top(&c->top);
			if (!old.ptr) {
				n = NULL;
				break;
			}
			/* Nodes are never freed, so reading next is safe; the tag
			 * makes a stale next fail the swap (no ABA). */
			struct node *next =
			    (struct node *)__atomic_load_n(&old.ptr->link.next, __ATOMIC_RELAXED);
			if (cas_top(&c->top, old, next)) {
				n = old.ptr;
				break;
			}
		}
		if (__builtin_expect(!n, 0))
			n = replacement(c, tid);
		BENCH_BARRIER();
	}
	c->pt[tid].held = n;
}

/* ---- teardown: every node exactly once ---- */

static int teardown(void *ctx)
{
	struct stack_ctx *c = ctx;
	unsigned char *seen = calloc((size_t)c->nnodes, 1);
	int bad = 0, count = 0;
	struct oncpu_stack_node *list = NULL;
	if (c->stack)
		list = oncpu_stack_drain(c->stack);
	else if (c->head)
		list = &c->head->link;
	else if (c->top.ptr)
		list = &((struct node *)((uintptr_t)c->top.ptr))->link;
#if !defined(__x86_64__)
	if (!c->stack && !c->head && c->top.tag)
		list = &((struct node *)(c->top.tag & PTR_MASK))->link;
#endif
	for (struct oncpu_stack_node *l = list; l && !bad; l = l->next, count++) {
		int id = ((struct node *)l)->id;
		bad |= id < 0 || id >= c->nnodes || seen[id]++;
		if (count > c->nnodes)
			bad = 1;
	}
	for (int t = 0; t < c->threads && !bad; t++) {
		struct per_thread *p = &c->pt[t];
		bad |= seen[p->held->id]++ != 0;
		for (int i = 0; i < p->nspare; i++)
			bad |= seen[p->spare[i]->id]++ != 0;
	}
	for (int i = 0; i < c->nnodes && !bad; i++)
		bad |= seen[i] != 1;
	if (bad)
		fprintf(stderr, "%s: a node was lost or is on the list twice\n", c->name);
	if (mixed_check(c->name, &c->mixed_failed) != 0)
		bad = 1;
	free(seen);
	if (c->stack)
		oncpu_stack_destroy(c->stack);
	pthread_mutex_destroy(&c->lock);
	free(c->nodes);
	free(c->pt);
	free(c);
	return bad ? -1 : 0;
}

const struct bench_case bench_stack[] = {
    {"stack.oncpu", BENCH_THREADS_1_AND_CPUS, setup_oncpu, run_oncpu, teardown, NULL},
    {"stack.mutex", BENCH_THREADS_1_AND_CPUS, setup_mutex, run_mutex, teardown, NULL},
    {"stack.treiber", BENCH_THREADS_1_AND_CPUS, setup_treiber, run_treiber, teardown, NULL},
    {"stack.vcpu", BENCH_THREADS_CPUS_AND_4X, setup_vcpu, run_oncpu, teardown, NULL},
    {"stack.vcpu_mixed", BENCH_THREADS_CPUS_AND_4X, setup_vcpu_mixed, run_mixed, teardown, NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};
