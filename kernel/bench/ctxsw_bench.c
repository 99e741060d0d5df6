// SPDX-License-Identifier: MIT
/*
 * ctxsw_bench: context-switch cost with and without a deschedule
 * notification registration (PR_RSEQ_DESCHED_SET).
 *
 * Two processes pinned to the same CPU ping-pong one byte through two
 * pipes; each round trip is two context switches.  Variants:
 *   unregistered-first  neither registers, measured before anything in
 *                       this program registered (on a freshly booted
 *                       patched kernel the static key is still off)
 *   unregistered        neither registers (interleaved with the others)
 *   reg1                both register 1 entry
 *   reg1-resume         both register 1 entry with RSEQ_DESCHED_F_RESUME
 *   reg16-resume        both register 16 entries with RSEQ_DESCHED_F_RESUME
 * Prints one line per variant:
 *   VMTEST-BENCH: ctxsw <variant> median_ns=N min_ns=N reps=R rounds=K
 * Options: -r rounds (default 5000), -n repetitions (default 15), -c cpu.
 * Build: gcc -static -O2 -I kernel/uapi -o ctxsw_bench ctxsw_bench.c
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rseq_desched.h"

enum { UNREG_FIRST, UNREG, REG1, REG1_RESUME, REG16_RESUME, NVARIANTS };
static const char *names[NVARIANTS] = {
	"unregistered-first", "unregistered", "reg1", "reg1-resume",
	"reg16-resume",
};

static uint64_t slots[RSEQ_DESCHED_MAX_ENTRIES];

static int do_register(int variant)
{
	struct rseq_desched_entry e[RSEQ_DESCHED_MAX_ENTRIES];
	int i, n = 0;

	memset(e, 0, sizeof(e));
	switch (variant) {
	case REG1:
		n = 1;
		break;
	case REG1_RESUME:
		n = 1;
		break;
	case REG16_RESUME:
		n = RSEQ_DESCHED_MAX_ENTRIES;
		break;
	default:
		return 0;
	}
	for (i = 0; i < n; i++) {
		e[i].addr = (uintptr_t)&slots[i];
		e[i].value = 1;
		e[i].size = 8;
		if (variant != REG1) {
			e[i].flags = RSEQ_DESCHED_F_RESUME;
			e[i].resume_value = 2;
		}
	}
	return prctl(PR_RSEQ_DESCHED_SET, (unsigned long)e, n, 0, 0);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Returns ns per context switch, or < 0 on error. */
static double run_once(int variant, long rounds)
{
	int ab[2], ba[2], status;
	double t0, t1;
	char c = 0;
	pid_t pid;
	long i;

	if (pipe(ab) || pipe(ba))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (do_register(variant))
			_exit(2);
		for (i = 0; i < rounds + 1; i++) {
			if (read(ab[0], &c, 1) != 1 || write(ba[1], &c, 1) != 1)
				_exit(3);
		}
		_exit(0);
	}
	if (do_register(variant))
		return -2;
	/* Warm-up round trip, then the measured ones. */
	if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1)
		return -1;
	t0 = now_ns();
	for (i = 0; i < rounds; i++) {
		if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1)
			return -1;
	}
	t1 = now_ns();
	prctl(PR_RSEQ_DESCHED_SET, 0, 0, 0, 0);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		return -1;
	close(ab[0]);
	close(ab[1]);
	close(ba[0]);
	close(ba[1]);
	return (t1 - t0) / (2.0 * rounds);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	long rounds = 5000;
	int reps = 15, cpu = 0, opt, v, r, supported, failed = 0;
	double res[NVARIANTS][64];
	cpu_set_t set;

	while ((opt = getopt(argc, argv, "r:n:c:")) != -1) {
		switch (opt) {
		case 'r':
			rounds = atol(optarg);
			break;
		case 'n':
			reps = atoi(optarg);
			break;
		case 'c':
			cpu = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-r rounds] [-n reps] [-c cpu]\n",
				argv[0]);
			return 2;
		}
	}
	if (reps < 1 || reps > 64 || rounds < 1)
		return 2;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		perror("sched_setaffinity");
		return 1;
	}
	supported = prctl(PR_RSEQ_DESCHED_GET, 0, 0, 0, 0) >= 0;
	printf("ctxsw_bench: pipe ping-pong, 2 processes on CPU %d, %ld round trips x %d reps, deschedule notification %s\n",
	       cpu, rounds, reps, supported ? "supported" : "NOT supported");

	/* Before anything registered. */
	for (r = 0; r < reps; r++)
		res[UNREG_FIRST][r] = run_once(UNREG_FIRST, rounds);
	/* Interleaved, so that drifts hit every variant alike. */
	for (r = 0; r < reps; r++) {
		for (v = UNREG; v < NVARIANTS; v++) {
			if (v != UNREG && !supported)
				continue;
			res[v][r] = run_once(v, rounds);
		}
	}
	for (v = 0; v < NVARIANTS; v++) {
		if (v > UNREG && !supported) {
			printf("VMTEST-BENCH: ctxsw %-18s unsupported\n", names[v]);
			continue;
		}
		for (r = 0; r < reps; r++) {
			if (res[v][r] < 0) {
				printf("ctxsw_bench: %s: run failed (%g)\n",
				       names[v], res[v][r]);
				failed = 1;
			}
		}
		qsort(res[v], reps, sizeof(double), cmp);
		printf("VMTEST-BENCH: ctxsw %-18s median_ns=%.0f min_ns=%.0f reps=%d rounds=%ld\n",
		       names[v], res[v][reps / 2], res[v][0], reps, rounds);
	}
	fflush(stdout);
	return failed;
}
