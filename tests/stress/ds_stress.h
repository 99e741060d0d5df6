/* SPDX-License-Identifier: MIT */
/*
 * ds_stress.h - what the stress programs of stack, ring and cache share:
 * worker threads (6 per CPU), forced aborts (a SIGUSR1 storm, sched_yield,
 * affinity changes, delays injected into the sections), and threads made to
 * run without rseq in an rseq process (the mixed case).
 *
 * Duration: argv[1] or ONCPU_STRESS_SECONDS (default 4 seconds).
 */
#ifndef ONCPU_DS_STRESS_H
#define ONCPU_DS_STRESS_H

#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <oncpu.h>

#include "testutil.h"

ONCPU_INJECT_DEFINE();
volatile long _oncpu_ds_aborts; /* counted by the inline paths (ONCPU_INJECT) */

#define DS_MAX_THREADS 256

static struct {
	double seconds;
	int cpus, threads;
	atomic_bool stop;
	atomic_long signals, fallback_ops, rseq_threads, fallback_threads;
	pthread_t workers[DS_MAX_THREADS];
	int nworkers;
	pthread_t helpers[2];
} ds;

static double ds_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* xorshift64*: per-thread, seeded by the caller. */
static inline uint64_t ds_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static void ds_on_signal(int sig)
{
	(void)sig;
	atomic_fetch_add_explicit(&ds.signals, 1, memory_order_relaxed);
}

/* Signal storm: SIGUSR1 to a random worker every few microseconds. */
static void *ds_signal_thread(void *arg)
{
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	(void)arg;
	while (!atomic_load(&ds.stop)) {
		int n = ds.nworkers;
		if (n)
			pthread_kill(ds.workers[ds_rand(&seed) % (uint64_t)n], SIGUSR1);
		struct timespec ts = {0, 20000};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/*
 * Delays injected into every section (points 1-4: before the id check,
 * after the guard, after the compares, before the commit). Phases of about
 * a millisecond alternate between no delay (fast operations: the most
 * interleavings per second) and random delays per point (wide windows).
 */
static void *ds_inject_thread(void *arg)
{
	static const int loops[] = {0, 10, 100, 1000, 3000};
	uint64_t seed = 0x2545f4914f6cdd1dULL;
	(void)arg;
#ifdef ONCPU_HAVE_RSEQ_ASM
	while (!atomic_load(&ds.stop)) {
		bool quiet = ds_rand(&seed) & 1;
		for (int i = 1; i <= 4; i++)
			_oncpu_inject_loops[i] =
			    quiet ? 0 : loops[ds_rand(&seed) % (sizeof(loops) / sizeof(loops[0]))];
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < 8; i++)
		_oncpu_inject_loops[i] = 0;
#endif
	return NULL;
}

/* Every so often: yield, move to one CPU, or back to all of them. */
static void ds_churn(uint64_t *seed)
{
	uint64_t r = ds_rand(seed) % 1024;
	if (r < 8) {
		sched_yield();
	} else if (r < 10 && ds.cpus > 1) {
		cpu_set_t set;
		CPU_ZERO(&set);
		if (r == 8)
			CPU_SET((int)(ds_rand(seed) % (uint64_t)ds.cpus), &set);
		else
			for (int c = 0; c < ds.cpus; c++)
				CPU_SET(c, &set);
		sched_setaffinity(0, sizeof(set), &set); /* may fail under a cpuset: fine */
	}
}

/*
 * Worker start: threads with index % every == every - 1 become fallback
 * threads in the rseq modes (mixed), all threads are fallback threads in
 * the fallback modes. Checks that the thread runs the mode it should.
 */
static bool ds_worker_start_mixed(int tid, int every)
{
	bool fallback = !test_expect_rseq();
	if (!fallback && tid % every == every - 1) {
		CHECK_MSG(test_leave_rseq(), "thread %d: could not leave rseq (mode %s)", tid,
		          test_mode());
		fallback = true;
	}
	CHECK_MSG(oncpu_thread_rseq_active() == !fallback, "thread %d: rseq %s, expected %s", tid,
	          oncpu_thread_rseq_active() ? "active" : "inactive",
	          fallback ? "inactive" : "active");
	atomic_fetch_add(fallback ? &ds.fallback_threads : &ds.rseq_threads, 1);
	return fallback;
}

/* Every fourth thread a fallback thread in the rseq modes. */
static TEST_UNUSED bool ds_worker_start(int tid)
{
	return ds_worker_start_mixed(tid, 4);
}

static void ds_init(int argc, char **argv)
{
	const char *env = getenv("ONCPU_STRESS_SECONDS");
	ds.seconds = argc > 1 ? atof(argv[1]) : env ? atof(env) : 4.0;
	if (!(ds.seconds > 0))
		ds.seconds = 4.0;
	cpu_set_t set;
	CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
	ds.cpus = CPU_COUNT(&set);
	ds.threads = 6 * ds.cpus;
	if (ds.threads > DS_MAX_THREADS)
		ds.threads = DS_MAX_THREADS;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = ds_on_signal;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
}

static void ds_start(void *(*worker)(void *), void *args, size_t arg_size)
{
	for (int t = 0; t < ds.threads; t++)
		CHECK(pthread_create(&ds.workers[t], NULL, worker,
		                     (char *)args + (size_t)t * arg_size) == 0);
	ds.nworkers = ds.threads;
	CHECK(pthread_create(&ds.helpers[0], NULL, ds_signal_thread, NULL) == 0);
	CHECK(pthread_create(&ds.helpers[1], NULL, ds_inject_thread, NULL) == 0);
}

static bool ds_running(void)
{
	return !atomic_load_explicit(&ds.stop, memory_order_relaxed);
}

/* Sleep for the duration, stop everyone, join. */
static void ds_run_and_join(void)
{
	double end = ds_now() + ds.seconds;
	while (ds_now() < end) {
		struct timespec ts = {0, 50000000};
		nanosleep(&ts, NULL);
	}
	atomic_store(&ds.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(ds.helpers[i], NULL);
	ds.nworkers = 0;
	for (int t = 0; t < ds.threads; t++)
		pthread_join(ds.workers[t], NULL);
}

/* The checks every stress program ends with. */
static void ds_report(const char *name, long ops)
{
	long aborts = _oncpu_ds_aborts;
	printf("%s [%s]: %d threads (%ld rseq, %ld fallback) on %d CPUs, %.1f s: %ld operations, "
	       "%ld sections aborted, %ld signals, %ld fallback-thread operations\n",
	       name, test_mode(), ds.threads, atomic_load(&ds.rseq_threads),
	       atomic_load(&ds.fallback_threads), ds.cpus, ds.seconds, ops, aborts,
	       atomic_load(&ds.signals), atomic_load(&ds.fallback_ops));
	CHECK(ops > 0);
	if (test_expect_rseq()) {
		/* The abort path ran, and the mixed case was exercised. */
		CHECK_MSG(aborts > 0,
		          "no section aborted: the stress did not reach the abort path");
		CHECK(atomic_load(&ds.rseq_threads) > 0 && atomic_load(&ds.fallback_threads) > 0);
	} else {
		CHECK(aborts == 0 && atomic_load(&ds.rseq_threads) == 0);
	}
	CHECK(atomic_load(&ds.fallback_ops) > 0);
}

#endif /* ONCPU_DS_STRESS_H */
