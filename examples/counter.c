/* SPDX-License-Identifier: MIT */
/*
 * counter.c - a per-CPU counter shared by several threads.
 *
 * Each thread adds without atomic instructions (one rseq critical section
 * per add); the sum after the threads joined is exact.
 *
 *   cc counter.c $(pkg-config --cflags --libs oncpu) -pthread -o counter
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oncpu.h>

#define THREADS 4
#define ADDS    1000000L

static struct oncpu_counter *hits;

static void *worker(void *arg)
{
	(void)arg;
	for (long i = 0; i < ADDS; i++)
		oncpu_counter_add(hits, 1);
	oncpu_counter_add(hits, -1); /* deltas may be negative */
	oncpu_counter_add(hits, 1);
	return NULL;
}

int main(void)
{
	pthread_t threads[THREADS];

	hits = oncpu_counter_new();
	if (!hits) {
		fprintf(stderr, "oncpu_counter_new: %s\n", strerror(errno));
		return 1;
	}
	for (int i = 0; i < THREADS; i++)
		if (pthread_create(&threads[i], NULL, worker, NULL) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			return 1;
		}
	for (int i = 0; i < THREADS; i++)
		pthread_join(threads[i], NULL);

	long sum = oncpu_counter_sum(hits); /* exact: no add runs any more */
	printf("counter: %d threads x %ld adds = %ld (%s)\n", THREADS, ADDS, sum,
	       oncpu_thread_rseq_active() ? "rseq" : "fallback");
	oncpu_counter_destroy(hits);
	return sum == THREADS * ADDS ? 0 : 1;
}
