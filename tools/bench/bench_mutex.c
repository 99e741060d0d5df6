/* SPDX-License-Identifier: MIT */
/*
 * bench_mutex.c - the adaptive mutex against glibc's mutexes, with critical
 * sections modelled on four ways real programs use a lock. Every family has
 * the same four variants:
 *
 *   <family>.oncpu              oncpu_mutex_t with the process's provider
 *                               (info: provider=<name>)
 *   <family>.oncpu_untracked    the same mutex, waiters told to ignore the
 *                               provider: what the mutex does with "none"
 *   <family>.pthread            pthread_mutex_t, default (normal) type
 *   <family>.pthread_adaptive   PTHREAD_MUTEX_ADAPTIVE_NP (glibc's spinning)
 *
 * at one thread per CPU, then 4 per CPU (oversubscribed: owners get
 * preempted inside the lock). One op is one acquisition: lock, the critical
 * section, unlock, then the thread's own work outside the lock (so that the
 * time a waiter needs to get a released lock, spinning or being woken,
 * counts, and not only how long one thread can keep re-taking it). Every
 * section keeps the invariant a == b of the protected data: it checks it at
 * entry, breaks it (a + 1) at its start and restores it (b = a) at its end,
 * so that a second thread inside the section at any moment is caught; the
 * case fails when the check or the totals (a == b == the ops done) do not
 * hold. "Work" below is a dependent multiply chain, calibrated once per
 * process (ns per step, the best of a few timed runs) so that a duration is
 * CPU time, not a sleep.
 *
 * mutex.*: two dependent updates of the data inside, 16 steps (about
 *   25 ns) outside: a lock around a counter or a list link. Its waiters
 *   never wait long, so spinning versus sleeping hardly matters.
 * mutex_long.*: about 20 us of work inside and 20 us outside: a lock held
 *   while a structure is rebuilt, a buffer copied or a page compressed. A
 *   waiter should spin exactly while the owner runs: sleeping costs a
 *   wake-up per handoff. mutex_long.bound (one thread per CPU only) times
 *   the section alone, by one thread without a lock: ns/op is the
 *   section's own duration, the bound that a perfect mutex reaches at one
 *   thread per CPU (the lock is then busy all the time).
 * mutex_mixed.*: the section's kind is drawn per acquisition from a
 *   per-thread PRNG with a fixed seed (every variant sees the same
 *   sequence): 96% short (the two updates plus 0-31 work steps, tens of
 *   ns), 3% long on-CPU work (10-50 us, uniform), 1% blocking in
 *   clock_nanosleep (100-500 us, uniform: an owner that waits for I/O with
 *   the lock held); 2 us of work outside. This is the multi-modal lock
 *   (a cache filled from disk on a miss, a log flushed now and then) where
 *   a fixed spin-then-sleep guess is wrong one way or the other: a waiter
 *   should spin through short and long sections and sleep at once while the
 *   owner sleeps. mutex_mixed.bound: the sections alone (every thread's
 *   draws, run by one thread without a lock): the lock is held at least
 *   that long per op, so no mutex gets below it at any thread count.
 * mutex_hog.*: mutex.*'s section and outside work, while one CPU-bound
 *   competing process per CPU (forked, pinned to that CPU, at the
 *   benchmark's own nice value, killed and reaped at the end of the run)
 *   takes half of every CPU: owners get preempted by the scheduler, not by
 *   each other, as on a loaded server. cpu ns/op counts the benchmark's
 *   threads only, never the competing processes.
 *
 * The new families time every Nth acquisition (from before lock() to its
 * return; N = 64 for the short sections, 4 for mixed, 1 for long) and hand
 * it to bench_record_acquire(), which yields acquire_p99_ns.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <oncpu.h>

#include "bench.h"
#include "mutex_hooks.h" /* liboncpu's private hook: the *_untracked variants */

enum kind { ONCPU, ONCPU_UNTRACKED, PTHREAD, PTHREAD_ADAPTIVE };
enum family { SHORT, LONG, MIXED, HOG };

#ifndef OUTSIDE_STEPS
#define OUTSIDE_STEPS 16
#endif

/* mutex_long: work inside and outside the lock, ns. */
#define LONG_SECTION_NS 20000
/* mutex_mixed: per mille of sections that block, and that run long (the
 * rest are short); their durations (ns, uniform) and the work outside. */
#define MIXED_BLOCK_PERMILLE  10
#define MIXED_LONG_PERMILLE   30
#define MIXED_BLOCK_MIN_NS    100000
#define MIXED_BLOCK_MAX_NS    500000
#define MIXED_LONG_MIN_NS     10000
#define MIXED_LONG_MAX_NS     50000
#define MIXED_SHORT_MAX_STEPS 31
#define MIXED_OUTSIDE_NS      2000
#define MIXED_SEED            0x6d757465785f6d78u
/* Every how many acquisitions the time to acquire is recorded. */
#define SAMPLE_EVERY_SHORT 64
#define SAMPLE_EVERY_MIXED 4
#define SAMPLE_EVERY_LONG  1

/* A dependent chain of `steps` multiply-adds the compiler cannot drop. */
static inline uint64_t work(uint64_t x, long steps)
{
	for (long i = 0; i < steps; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		__asm__ __volatile__("" : "+r"(x));
	}
	return x;
}

/* Work outside the lock of mutex.* and mutex_hog.*: about 25 ns. */
static inline uint64_t outside(uint64_t x)
{
	return work(x, OUTSIDE_STEPS);
}

static double work_step_ns; /* what one step of work() takes, once measured */

/* Steps of work() that take about `ns`. Setup only (the main thread). */
static long work_steps(double ns)
{
	if (work_step_ns <= 0) {
		enum { STEPS = 1 << 20, TRIES = 5 };
		uint64_t x = 1;
		double best = 0;
		for (int i = 0; i < TRIES; i++) {
			uint64_t t0 = bench_now_ns();
			x = work(x, STEPS);
			double per_step = (double)(bench_now_ns() - t0) / STEPS;
			if (i == 0 || per_step < best)
				best = per_step;
		}
		__asm__ __volatile__("" ::"r"(x));
		work_step_ns = best > 0.01 ? best : 0.01;
	}
	return (long)(ns / work_step_ns + 0.5);
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
	enum family family;
	int threads;
	long long_steps, mixed_outside_steps; /* work_steps() of the families */
	int nhogs;
	pid_t *hogs; /* mutex_hog's competing processes, nhogs of them */
	char info[64];
};

static void stop_hogs(struct mutex_ctx *c);
static int start_hogs(struct mutex_ctx *c);

static void *setup(enum family family, enum kind kind, int threads)
{
	struct mutex_ctx *c = bench_alloc_shared(sizeof(*c));
	if (!c)
		return NULL;
	*c = (struct mutex_ctx){.kind = kind, .family = family, .threads = threads};
	if (family == LONG)
		c->long_steps = work_steps(LONG_SECTION_NS);
	if (family == MIXED)
		c->mixed_outside_steps = work_steps(MIXED_OUTSIDE_NS);
	oncpu_mutex_init(&c->om);
	if (kind == ONCPU_UNTRACKED)
		_oncpu_mutex_ignore_provider(&c->om);
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	if (kind == PTHREAD_ADAPTIVE)
		pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(&c->pm, &attr);
	pthread_mutexattr_destroy(&attr);
	if (kind == ONCPU || kind == ONCPU_UNTRACKED)
		snprintf(c->info, sizeof(c->info), "provider=%s",
		         kind == ONCPU ? oncpu_desched_provider() : "none");
	if (family == HOG) {
		if (start_hogs(c) != 0) {
			pthread_mutex_destroy(&c->pm);
			oncpu_mutex_destroy(&c->om);
			bench_free_shared(c);
			return NULL;
		}
		size_t len = strlen(c->info);
		snprintf(c->info + len, sizeof(c->info) - len, "%shogs=%d", len ? " " : "",
		         c->nhogs);
	}
	return c;
}

static void *setup_oncpu(int threads)
{
	return setup(SHORT, ONCPU, threads);
}
static void *setup_oncpu_untracked(int threads)
{
	return setup(SHORT, ONCPU_UNTRACKED, threads);
}
static void *setup_pthread(int threads)
{
	return setup(SHORT, PTHREAD, threads);
}
static void *setup_pthread_adaptive(int threads)
{
	return setup(SHORT, PTHREAD_ADAPTIVE, threads);
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

/*
 * The section of mutex_long and mutex_mixed: like section(), with the
 * invariant broken across `steps` of work and a sleep of `sleep_ns`.
 */
static inline uint64_t held_section(struct mutex_ctx *c, uint64_t x, long steps, long sleep_ns)
{
	long a = c->a;
	if (a != c->b)
		atomic_store_explicit(&c->broken, 1, memory_order_relaxed);
	c->a = a + 1;
	BENCH_BARRIER();
	x = work(x, steps);
	if (sleep_ns) {
		struct timespec ts = {.tv_sec = sleep_ns / 1000000000,
		                      .tv_nsec = sleep_ns % 1000000000};
		while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
			;
	}
	BENCH_BARRIER();
	c->b = a + 1;
	return x;
}

/* splitmix64: the per-thread sequence of mutex_mixed's sections. */
static inline uint64_t next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* mutex_mixed's next section: `steps` of work, then a sleep of `sleep_ns`. */
static inline void draw_mixed(uint64_t *rng, long *steps, long *sleep_ns)
{
	uint64_t r = next_random(rng);
	unsigned permille = (unsigned)(r % 1000);
	uint64_t u = r >> 32; /* independent of permille for the duration */
	*steps = 0;
	*sleep_ns = 0;
	if (permille < MIXED_BLOCK_PERMILLE)
		*sleep_ns =
		    MIXED_BLOCK_MIN_NS + (long)(u % (MIXED_BLOCK_MAX_NS - MIXED_BLOCK_MIN_NS + 1));
	else if (permille < MIXED_BLOCK_PERMILLE + MIXED_LONG_PERMILLE)
		*steps = (long)((double)(MIXED_LONG_MIN_NS +
		                         (long)(u % (MIXED_LONG_MAX_NS - MIXED_LONG_MIN_NS + 1))) /
		                work_step_ns);
	else
		*steps = (long)(u % (MIXED_SHORT_MAX_STEPS + 1));
}

/*
 * The lock of the mutex_long, mutex_mixed and mutex_hog loops. Built with
 * BENCH_MUTEX_NO_LOCK (tests/bench only), it excludes nothing, to prove
 * that the families' checks catch a broken mutex.
 */
static inline __attribute__((always_inline)) void lock(struct mutex_ctx *c, bool oncpu)
{
#ifndef BENCH_MUTEX_NO_LOCK
	if (oncpu)
		oncpu_mutex_lock(&c->om);
	else
		pthread_mutex_lock(&c->pm);
#else
	(void)c;
	(void)oncpu;
#endif
}

static inline __attribute__((always_inline)) void unlock(struct mutex_ctx *c, bool oncpu)
{
#ifndef BENCH_MUTEX_NO_LOCK
	if (oncpu)
		oncpu_mutex_unlock(&c->om);
	else
		pthread_mutex_unlock(&c->pm);
#else
	(void)c;
	(void)oncpu;
#endif
}

/*
 * The loop of mutex_long, mutex_mixed and mutex_hog: `family` and `oncpu`
 * are constants, so that each caller compiles to its own loop.
 */
static inline __attribute__((always_inline)) void
run_family(struct mutex_ctx *c, int tid, long iters, enum family family, bool oncpu)
{
	const long sample_every = family == LONG    ? SAMPLE_EVERY_LONG
	                          : family == MIXED ? SAMPLE_EVERY_MIXED
	                                            : SAMPLE_EVERY_SHORT;
	uint64_t x = (uint64_t)tid, rng = MIXED_SEED + (uint64_t)tid;
	for (long i = 0; i < iters; i++) {
		long steps = c->long_steps, sleep_ns = 0;
		if (family == MIXED)
			draw_mixed(&rng, &steps, &sleep_ns);
		bool sample = i % sample_every == 0;
		uint64_t t0 = sample ? bench_now_ns() : 0, waited = 0;
		lock(c, oncpu);
		if (sample)
			waited = bench_now_ns() - t0;
		if (family == HOG)
			section(c);
		else
			x = held_section(c, x, steps, sleep_ns);
		unlock(c, oncpu);
		if (sample)
			bench_record_acquire(tid, waited);
		if (family == HOG)
			x = outside(x);
		else
			x = work(x, family == LONG ? c->long_steps : c->mixed_outside_steps);
		BENCH_BARRIER();
	}
	atomic_fetch_add(&c->sink, x);
	atomic_fetch_add(&c->expected, iters);
}

/* mutex_long.bound: thread 0 alone runs every op's section, without a lock. */
static void run_long_bound(void *ctx, int tid, long iters)
{
	struct mutex_ctx *c = ctx;
	if (tid != 0)
		return;
	long ops = iters * c->threads;
	uint64_t x = 0;
	for (long i = 0; i < ops; i++) {
		x = held_section(c, x, c->long_steps, 0);
		BENCH_BARRIER();
	}
	atomic_fetch_add(&c->sink, x);
	atomic_fetch_add(&c->expected, ops);
}

/* mutex_mixed.bound: thread 0 alone runs the sections of every thread's
 * sequence (the same draws as the mixed cases), without a lock. */
static void run_mixed_bound(void *ctx, int tid, long iters)
{
	struct mutex_ctx *c = ctx;
	if (tid != 0)
		return;
	uint64_t x = 0;
	for (int t = 0; t < c->threads; t++) {
		uint64_t rng = MIXED_SEED + (uint64_t)t;
		for (long i = 0; i < iters; i++) {
			long steps, sleep_ns;
			draw_mixed(&rng, &steps, &sleep_ns);
			x = held_section(c, x, steps, sleep_ns);
			BENCH_BARRIER();
		}
	}
	atomic_fetch_add(&c->sink, x);
	atomic_fetch_add(&c->expected, iters * c->threads);
}

/*
 * mutex_hog's competing processes: one per CPU the benchmark may run on,
 * pinned there. Each dies with the benchmark (PR_SET_PDEATHSIG: setup runs
 * on the main thread), even when it exits without a teardown.
 */
static void __attribute__((noreturn)) hog(int cpu, pid_t parent, int ready)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	(void)sched_setaffinity(0, sizeof(one), &one); /* unpinned still competes */
	char byte = 1;
	if (write(ready, &byte, 1) != 1)
		_exit(1);
	close(ready);
	for (uint64_t x = 0;;)
		x = work(x, 1 << 20);
}

/* Starts the hogs and waits until each runs; 0, or -1 (none left) with a message. */
static int start_hogs(struct mutex_ctx *c)
{
	cpu_set_t set;
	int ready[2];
	if (sched_getaffinity(0, sizeof(set), &set) != 0 || pipe2(ready, O_CLOEXEC) != 0) {
		perror("mutex_hog");
		return -1;
	}
	c->hogs = calloc((size_t)CPU_COUNT(&set), sizeof(*c->hogs));
	pid_t parent = getpid();
	int err = c->hogs ? 0 : ENOMEM;
	for (int cpu = 0; cpu < CPU_SETSIZE && !err && c->nhogs < CPU_COUNT(&set); cpu++) {
		if (!CPU_ISSET(cpu, &set))
			continue;
		pid_t pid = fork();
		if (pid == 0)
			hog(cpu, parent, ready[1]);
		if (pid < 0)
			err = errno;
		else
			c->hogs[c->nhogs++] = pid;
	}
	close(ready[1]);
	for (int running = 0; !err && running < c->nhogs;) {
		char byte;
		ssize_t n = read(ready[0], &byte, 1);
		if (n == 1)
			running++;
		else if (n == 0)
			err = ECHILD; /* a hog died before it ran */
		else if (errno != EINTR)
			err = errno;
	}
	close(ready[0]);
	if (err) {
		fprintf(stderr, "mutex_hog: cannot start the competing processes: %s\n",
		        strerror(err));
		stop_hogs(c);
		return -1;
	}
	return 0;
}

/* Kills and reaps every hog; the ctx has none afterwards. */
static void stop_hogs(struct mutex_ctx *c)
{
	for (int i = 0; i < c->nhogs; i++)
		kill(c->hogs[i], SIGKILL);
	for (int i = 0; i < c->nhogs; i++)
		while (waitpid(c->hogs[i], NULL, 0) < 0 && errno == EINTR)
			;
	free(c->hogs);
	c->hogs = NULL;
	c->nhogs = 0;
}

static int teardown(void *ctx)
{
	struct mutex_ctx *c = ctx;
	stop_hogs(c);
	long expected = atomic_load(&c->expected);
	int bad = atomic_load(&c->broken) || c->a != expected || c->b != expected;
	if (bad)
		fprintf(stderr, "mutex: lost mutual exclusion: a %ld b %ld expected %ld\n", c->a,
		        c->b, expected);
	pthread_mutex_destroy(&c->pm);
	oncpu_mutex_destroy(&c->om);
	bench_free_shared(c);
	return bad ? -1 : 0;
}

static const char *info(void *ctx)
{
	const char *s = ((struct mutex_ctx *)ctx)->info;
	return *s ? s : NULL;
}

/* The setup and run functions of one family's four variants. */
#define FAMILY_FUNCTIONS(name, FAMILY)                                                             \
	static void *setup_##name##_oncpu(int threads)                                             \
	{                                                                                          \
		return setup(FAMILY, ONCPU, threads);                                              \
	}                                                                                          \
	static void *setup_##name##_oncpu_untracked(int threads)                                   \
	{                                                                                          \
		return setup(FAMILY, ONCPU_UNTRACKED, threads);                                    \
	}                                                                                          \
	static void *setup_##name##_pthread(int threads)                                           \
	{                                                                                          \
		return setup(FAMILY, PTHREAD, threads);                                            \
	}                                                                                          \
	static void *setup_##name##_pthread_adaptive(int threads)                                  \
	{                                                                                          \
		return setup(FAMILY, PTHREAD_ADAPTIVE, threads);                                   \
	}                                                                                          \
	static void run_##name##_oncpu(void *ctx, int tid, long iters)                             \
	{                                                                                          \
		run_family(ctx, tid, iters, FAMILY, true);                                         \
	}                                                                                          \
	static void run_##name##_pthread(void *ctx, int tid, long iters)                           \
	{                                                                                          \
		run_family(ctx, tid, iters, FAMILY, false);                                        \
	}

/* Its four cases, in the order of mutex.*. */
#define FAMILY_CASES(name)                                                                         \
	{"mutex_" #name ".oncpu",                                                                  \
	 BENCH_THREADS_CPUS_AND_4X,                                                                \
	 setup_##name##_oncpu,                                                                     \
	 run_##name##_oncpu,                                                                       \
	 teardown,                                                                                 \
	 info},                                                                                    \
	    {"mutex_" #name ".oncpu_untracked",                                                    \
	     BENCH_THREADS_CPUS_AND_4X,                                                            \
	     setup_##name##_oncpu_untracked,                                                       \
	     run_##name##_oncpu,                                                                   \
	     teardown,                                                                             \
	     info},                                                                                \
	    {"mutex_" #name ".pthread",                                                            \
	     BENCH_THREADS_CPUS_AND_4X,                                                            \
	     setup_##name##_pthread,                                                               \
	     run_##name##_pthread,                                                                 \
	     teardown,                                                                             \
	     info},                                                                                \
	{                                                                                          \
		"mutex_" #name ".pthread_adaptive", BENCH_THREADS_CPUS_AND_4X,                     \
		    setup_##name##_pthread_adaptive, run_##name##_pthread, teardown, info          \
	}

FAMILY_FUNCTIONS(long, LONG)
FAMILY_FUNCTIONS(mixed, MIXED)
FAMILY_FUNCTIONS(hog, HOG)

static void *setup_long_bound(int threads)
{
	return setup(LONG, PTHREAD, threads);
}

static void *setup_mixed_bound(int threads)
{
	return setup(MIXED, PTHREAD, threads);
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

const struct bench_case bench_mutex_long[] = {
    FAMILY_CASES(long),
    {"mutex_long.bound", BENCH_THREADS_CPUS, setup_long_bound, run_long_bound, teardown, NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};

const struct bench_case bench_mutex_mixed[] = {
    FAMILY_CASES(mixed),
    {"mutex_mixed.bound", BENCH_THREADS_CPUS_AND_4X, setup_mixed_bound, run_mixed_bound, teardown,
     NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};

const struct bench_case bench_mutex_hog[] = {
    FAMILY_CASES(hog),
    {NULL, 0, NULL, NULL, NULL, NULL},
};
