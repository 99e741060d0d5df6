/* SPDX-License-Identifier: MIT */
/*
 * bench_cpu.c - reading the current CPU number.
 *
 *   cpu.oncpu         oncpu_cpu(): a load from the thread's rseq area
 *   cpu.sched_getcpu  glibc's sched_getcpu(): its rseq area when glibc
 *                     registered one (2.35+), else the vDSO's getcpu
 *   cpu.syscall       syscall(SYS_getcpu): a real system call
 *
 * Every variant checks each id against the CPU bound (same cost for all),
 * and the teardown fails the run if any id was out of range.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <oncpu.h>

#include "bench.h"

/* glibc >= 2.35: non-zero when glibc registered rseq (sched_getcpu reads it). */
extern const unsigned int __rseq_size __attribute__((weak));

struct cpu_ctx {
	const char *name;
	unsigned bound;
	atomic_long bad;
	atomic_ulong sink; /* keeps the ids live */
};

static void *setup(const char *name)
{
	struct cpu_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->name = name;
	c->bound = (unsigned)oncpu_cpu_count();
	return c;
}

static void *setup_oncpu(int threads)
{
	(void)threads;
	return setup("cpu.oncpu");
}

static void *setup_sched_getcpu(int threads)
{
	(void)threads;
	return setup("cpu.sched_getcpu");
}

static void *setup_syscall(int threads)
{
	(void)threads;
	return setup("cpu.syscall");
}

static void finish(struct cpu_ctx *c, unsigned long sum, long bad)
{
	atomic_fetch_add(&c->sink, sum);
	atomic_fetch_add(&c->bad, bad);
}

static void run_oncpu(void *ctx, int tid, long iters)
{
	struct cpu_ctx *c = ctx;
	unsigned bound = c->bound;
	unsigned long sum = 0;
	long bad = 0;
	(void)tid;
	for (long i = 0; i < iters; i++) {
		unsigned cpu = (unsigned)oncpu_cpu();
		bad += cpu >= bound;
		sum += cpu;
		BENCH_BARRIER();
	}
	finish(c, sum, bad);
}

static void run_sched_getcpu(void *ctx, int tid, long iters)
{
	struct cpu_ctx *c = ctx;
	unsigned bound = c->bound;
	unsigned long sum = 0;
	long bad = 0;
	(void)tid;
	for (long i = 0; i < iters; i++) {
		unsigned cpu = (unsigned)sched_getcpu();
		bad += cpu >= bound;
		sum += cpu;
		BENCH_BARRIER();
	}
	finish(c, sum, bad);
}

static void run_syscall(void *ctx, int tid, long iters)
{
	struct cpu_ctx *c = ctx;
	unsigned bound = c->bound;
	unsigned long sum = 0;
	long bad = 0;
	(void)tid;
	for (long i = 0; i < iters; i++) {
		unsigned cpu = ~0u;
		if (syscall(SYS_getcpu, &cpu, NULL, NULL) != 0)
			cpu = ~0u;
		bad += cpu >= bound;
		sum += cpu;
		BENCH_BARRIER();
	}
	finish(c, sum, bad);
}

static int teardown(void *ctx)
{
	struct cpu_ctx *c = ctx;
	long bad = atomic_load(&c->bad);
	const char *name = c->name;
	free(c);
	if (bad) {
		fprintf(stderr, "%s: %ld ids outside [0, %d)\n", name, bad, oncpu_cpu_count());
		return -1;
	}
	return 0;
}

static const char *info_oncpu(void *ctx)
{
	(void)ctx;
	return oncpu_thread_rseq_active() ? "via=rseq" : "via=sched_getcpu";
}

static const char *info_sched_getcpu(void *ctx)
{
	(void)ctx;
	return &__rseq_size && __rseq_size > 0 ? "via=glibc_rseq" : "via=vdso";
}

const struct bench_case bench_cpu[] = {
    {"cpu.oncpu", BENCH_THREADS_1_AND_CPUS, setup_oncpu, run_oncpu, teardown, info_oncpu},
    {"cpu.sched_getcpu", BENCH_THREADS_1_AND_CPUS, setup_sched_getcpu, run_sched_getcpu, teardown,
     info_sched_getcpu},
    {"cpu.syscall", BENCH_THREADS_1_AND_CPUS, setup_syscall, run_syscall, teardown, NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};
