/* SPDX-License-Identifier: MIT */
/*
 * percpu_list.c - raw critical sections: a per-CPU LIFO list.
 *
 * Every CPU has its own list head (per-CPU memory). A push links the node
 * to the head it saw and commits "head = node" only if the head is still
 * what it saw (compare-equal-then-store). A pop commits "head = head->next"
 * unless the list is empty (compare-not-equal, load-offset, store). Both run
 * as rseq critical sections on the current CPU's head: no atomic
 * instruction, no ABA problem (nothing else runs on that CPU in between).
 *
 * The retry loop is the one in <oncpu/cs.h>: a fresh id on ONCPU_CS_ABORTED,
 * the fallback (here a list under a mutex) on ONCPU_CS_UNAVAILABLE.
 *
 *   cc percpu_list.c $(pkg-config --cflags --libs oncpu) -pthread -o percpu_list
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oncpu.h>

struct node {
	struct node *next;
	long value;
};

static void *heads; /* per-CPU: one intptr_t head, 0 when empty */

/* Threads that cannot run sections share one list under a mutex. They never
 * touch the per-CPU heads, so the two kinds of threads never race. */
static pthread_mutex_t fallback_lock = PTHREAD_MUTEX_INITIALIZER;
static struct node *fallback_head;

static void fallback_push(struct node *n)
{
	pthread_mutex_lock(&fallback_lock);
	n->next = fallback_head;
	fallback_head = n;
	pthread_mutex_unlock(&fallback_lock);
}

static struct node *fallback_pop(void)
{
	pthread_mutex_lock(&fallback_lock);
	struct node *n = fallback_head;
	if (n)
		fallback_head = n->next;
	pthread_mutex_unlock(&fallback_lock);
	return n;
}

static void push(struct node *n)
{
	for (;;) {
		int cpu = oncpu_cs_id(ONCPU_CPU);
		if (cpu < 0)
			break; /* ONCPU_CS_UNAVAILABLE */
		intptr_t *head = oncpu_ptr(heads, cpu);
		/* Only sections on this CPU write *head; reading it outside
		 * one is a snapshot that the section compares against. */
		intptr_t old = __atomic_load_n(head, __ATOMIC_RELAXED);
		n->next = (struct node *)old;
		int r = oncpu_cs_cmpeq_store(ONCPU_CPU, head, old, (intptr_t)n, cpu);
		if (r == ONCPU_CS_COMMITTED)
			return;
		if (r == ONCPU_CS_UNAVAILABLE)
			break;
		/* ONCPU_CS_CMPFAIL (the head moved) or ONCPU_CS_ABORTED: again */
	}
	fallback_push(n);
}

/* The current CPU's first node, or NULL when that CPU's list is empty. */
static struct node *pop(void)
{
	for (;;) {
		int cpu = oncpu_cs_id(ONCPU_CPU);
		if (cpu < 0)
			break;
		intptr_t *head = oncpu_ptr(heads, cpu), n;
		int r = oncpu_cs_cmpne_load_off_store(ONCPU_CPU, head, 0,
		                                      offsetof(struct node, next), &n, cpu);
		if (r == ONCPU_CS_COMMITTED)
			return (struct node *)n;
		if (r == ONCPU_CS_CMPFAIL)
			return NULL; /* *head == 0: empty */
		if (r == ONCPU_CS_UNAVAILABLE)
			break;
	}
	return fallback_pop();
}

#define THREADS          4
#define NODES_PER_THREAD 100000
#define ROUNDS           20

static struct node nodes[THREADS][NODES_PER_THREAD];
static int seen[THREADS * NODES_PER_THREAD];
static long popped_total;

static void see(struct node *n)
{
	__atomic_fetch_add(&seen[n->value], 1, __ATOMIC_RELAXED);
}

static void *worker(void *arg)
{
	struct node *mine = arg;
	struct node *held[NODES_PER_THREAD / ROUNDS];
	long popped = 0;

	/* Push our nodes in rounds; after each round pop as many as we
	 * pushed (from whatever CPU we run on now) and push them back. */
	for (int round = 0; round < ROUNDS; round++) {
		int k = NODES_PER_THREAD / ROUNDS, got = 0;
		for (int i = 0; i < k; i++)
			push(&mine[round * k + i]);
		for (int i = 0; i < k; i++) {
			struct node *n = pop();
			if (!n)
				break;
			held[got++] = n;
		}
		popped += got;
		while (got > 0)
			push(held[--got]);
	}
	__atomic_fetch_add(&popped_total, popped, __ATOMIC_RELAXED);
	return NULL;
}

int main(void)
{
	pthread_t threads[THREADS];

	heads = oncpu_percpu_alloc(sizeof(intptr_t), 0);
	if (!heads) {
		fprintf(stderr, "oncpu_percpu_alloc: %s\n", strerror(errno));
		return 1;
	}
	for (int t = 0; t < THREADS; t++)
		for (int i = 0; i < NODES_PER_THREAD; i++)
			nodes[t][i].value = (long)t * NODES_PER_THREAD + i;
	for (int t = 0; t < THREADS; t++)
		if (pthread_create(&threads[t], NULL, worker, nodes[t]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			return 1;
		}
	for (int t = 0; t < THREADS; t++)
		pthread_join(threads[t], NULL);

	/* Quiescent now: walk every CPU's list (and the fallback list) directly. */
	long listed = 0;
	for (int cpu = 0; cpu < oncpu_cpu_count(); cpu++) {
		intptr_t *head = oncpu_ptr(heads, cpu);
		for (struct node *n = (struct node *)*head; n; n = n->next, listed++)
			see(n);
	}
	for (struct node *n = fallback_head; n; n = n->next, listed++)
		see(n);

	int bad = 0;
	for (int i = 0; i < THREADS * NODES_PER_THREAD; i++)
		if (seen[i] != 1) {
			if (bad++ < 5)
				fprintf(stderr, "node %d listed %d times\n", i, seen[i]);
		}
	printf("percpu_list: %ld nodes listed, %ld pops committed, %s\n", listed, popped_total,
	       bad ? "CORRUPTED" : "every node exactly once");
	oncpu_percpu_free(heads);
	return bad ? 1 : 0;
}
