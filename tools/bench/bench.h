/* SPDX-License-Identifier: MIT */
/*
 * bench.h - the interface between oncpu-bench's driver (main.c) and its
 * benchmark modules (bench_<module>.c, one per library module).
 *
 * A module defines `const struct bench_case bench_<module>[]`, ended by an
 * entry whose name is NULL. main.c knows the module names (weak references:
 * a missing module is skipped) and, for each case, runs it side by side
 * with the others at the thread counts its `threads` field asks for, and
 * reports ns per operation (wall time of the run / (iters * threads)), the
 * CPU time its threads used per operation and, for cases that record it
 * (bench_record_acquire()), the 99th percentile of the time to acquire.
 */
#ifndef ONCPU_BENCH_H
#define ONCPU_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum bench_threads {
	BENCH_THREADS_1_AND_CPUS = 0, /* 1 thread, then one per CPU */
	BENCH_THREADS_CPUS_AND_4X,    /* one per CPU, then 4 per CPU (oversubscribed) */
	BENCH_THREADS_CPUS,           /* one per CPU only (a reference beside a _4X group) */
};

struct bench_case {
	const char *name; /* "counter.oncpu": <module>.<variant> */
	enum bench_threads threads;
	/* Shared state for `threads` threads; NULL (with a message on stderr)
	 * when the case cannot run here (it is then reported as skipped). */
	void *(*setup)(int threads);
	/* Thread `tid` of `threads` does `iters` operations. */
	void (*run)(void *ctx, int tid, long iters);
	/* Optional: checks the result (e.g. an exact sum) and frees; returns
	 * 0, or -1 after printing why the run was wrong. */
	int (*teardown)(void *ctx);
	/* Optional: a short annotation shown in the table and as extra JSON
	 * fields, e.g. "provider=bpf"; NULL for none. */
	const char *(*info)(void *ctx);
};

/*
 * How the driver calls a case, for every measurement (calibration runs
 * included): setup(threads); then `threads` fresh threads, started together
 * on a barrier, each call run(ctx, tid, iters) once with the same iters;
 * then info(ctx) (first measurement only) and teardown(ctx). A ctx never
 * sees two runs, so teardown may check exact totals of one run. setup,
 * info and teardown run on the main thread, which lives as long as the
 * process (a child that must die with the benchmark can use
 * PR_SET_PDEATHSIG).
 *
 * BENCH_BARRIER() goes once in every iteration of every run loop: a compiler
 * barrier (no instruction) that keeps the compiler from merging, hoisting or
 * deleting the operations, with the same cost for every variant.
 */
#define BENCH_BARRIER() __asm__ __volatile__("" ::: "memory")

/* CLOCK_MONOTONIC in ns: for timing single operations inside run(). */
static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Records, from run() of thread `tid`, how long one lock acquisition took
 * (ns). The driver keeps a uniform sample of BENCH_ACQUIRE_SAMPLES values
 * per thread and run (reservoir sampling, so a run's length does not bias
 * it) and reports the 99th percentile of a run's samples, the median over
 * the repetitions, as acquire_p99_ns; a case that never calls it has none.
 * Cheap, but reading the clock twice is not: a case with short operations
 * times only every Nth acquisition. Safe to call from every thread at once.
 */
#define BENCH_ACQUIRE_SAMPLES 2048
void bench_record_acquire(int tid, uint64_t ns);

/*
 * Memory for what every thread of a run touches on every op (a lock and the
 * data it protects): `size` bytes, 128-byte aligned, half a page in page
 * offset from a worker thread's first stack frame, so that no stack slot
 * the loop writes is a multiple of 4 KiB apart from it (layout.c); NULL
 * when out of memory. Free with bench_free_shared() (NULL is ignored).
 * bench_layout_init() finds where worker stacks start; the driver calls it
 * once, before any setup (without it, the data goes half a page from page
 * offset 0).
 */
void bench_layout_init(void);
void *bench_alloc_shared(size_t size);
void bench_free_shared(void *p);

#endif /* ONCPU_BENCH_H */
