/* SPDX-License-Identifier: MIT */
/*
 * testutil.h - helpers shared by oncpu's test programs: CPU affinity, raw
 * rseq registration, child processes (fork with captured stderr, re-exec of
 * the test program itself), resident memory of a mapping, a small PRNG.
 * Header-only (static functions); include after _GNU_SOURCE is defined.
 */
#ifndef ONCPU_TEST_UTIL_H
#define ONCPU_TEST_UTIL_H

#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before including testutil.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <oncpu.h>

#include "check.h"

#ifndef SYS_rseq
#define SYS_rseq 334 /* x86-64; other architectures define SYS_rseq in their headers */
#endif

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif

#define TEST_UNUSED __attribute__((unused))

/* ---- modes ---- */

/* The registration oncpu must report in this test mode. */
static TEST_UNUSED enum oncpu_registration test_expected_registration(void)
{
	const char *m = test_mode();
	if (strcmp(m, "rseq-libc") == 0)
		return ONCPU_REG_LIBC;
	if (strcmp(m, "rseq-own") == 0)
		return ONCPU_REG_OWN;
	return ONCPU_REG_NONE;
}

static TEST_UNUSED bool test_mode_is(const char *m)
{
	return strcmp(test_mode(), m) == 0;
}

/* ---- CPUs and affinity ---- */

/* The CPUs this process may run on (saved at the first call). */
static TEST_UNUSED const cpu_set_t *test_allowed_cpus(void)
{
	static cpu_set_t set;
	static int done;
	if (!done) {
		CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
		done = 1;
	}
	return &set;
}

static TEST_UNUSED int test_allowed_count(void)
{
	return CPU_COUNT(test_allowed_cpus());
}

/* The n-th allowed CPU (n in [0, test_allowed_count())). */
static TEST_UNUSED int test_allowed_nth(int n)
{
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, test_allowed_cpus()) && n-- == 0)
			return c;
	CHECK(!"no such allowed cpu");
	return -1;
}

static TEST_UNUSED int test_online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

/* Pin the calling thread to one CPU; returns 0, or -1 if the CPU is not allowed. */
static TEST_UNUSED int test_pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

/* Pin the calling thread to one CPU and confirm it runs there now. */
static TEST_UNUSED bool test_pinned(int cpu)
{
	return test_pin(cpu) == 0 && sched_getcpu() == cpu;
}

static TEST_UNUSED void test_unpin(void)
{
	CHECK(sched_setaffinity(0, sizeof(cpu_set_t), test_allowed_cpus()) == 0);
}

/* ---- raw rseq, independent of oncpu ---- */

struct test_rseq_area {
	uint32_t cpu_id_start;
	uint32_t cpu_id;
	uint64_t rseq_cs;
	uint32_t flags;
	uint32_t node_id;
	uint32_t mm_cid;
	uint32_t pad;
} __attribute__((aligned(32)));

/* rseq(area, 32, flags, sig): 0 or -1 with errno. */
static TEST_UNUSED int test_raw_rseq(struct test_rseq_area *area, int flags)
{
#ifdef ONCPU_RSEQ_SIG
	return (int)syscall(SYS_rseq, area, 32, flags, ONCPU_RSEQ_SIG);
#else
	(void)area, (void)flags;
	errno = ENOSYS;
	return -1;
#endif
}

/* ---- child processes ---- */

static inline char *test_thread_pointer(void)
{
#if defined(__x86_64__)
	char *tp;
	__asm__("movq %%fs:0, %0" : "=r"(tp));
	return tp;
#else
	return (char *)__builtin_thread_pointer();
#endif
}

extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

/*
 * Make the calling thread one that cannot run sections, in a process whose
 * other threads can: the mixed case. Call before the thread's first oncpu
 * call. rseq-own: register a foreign rseq area first (oncpu then sees
 * EBUSY). rseq-libc: unregister the C library's area of this thread.
 * Returns true when the thread now runs without sections.
 */
static TEST_UNUSED bool test_leave_rseq(void)
{
#if defined(SYS_rseq) && defined(ONCPU_RSEQ_SIG)
	static __thread struct oncpu_rseq_area foreign;
	if (strcmp(test_mode(), "rseq-own") == 0) {
		foreign.cpu_id = ONCPU_RSEQ_CPU_ID_UNINITIALIZED;
		if (syscall(SYS_rseq, &foreign, 32, 0, ONCPU_RSEQ_SIG) != 0)
			return false;
	} else if (strcmp(test_mode(), "rseq-libc") == 0) {
		if (!&__rseq_offset || !&__rseq_size || __rseq_size == 0)
			return false;
		char *area = test_thread_pointer() + __rseq_offset;
		if (syscall(SYS_rseq, area, 32, ONCPU_RSEQ_FLAG_UNREGISTER, ONCPU_RSEQ_SIG) != 0 &&
		    syscall(SYS_rseq, area, __rseq_size, ONCPU_RSEQ_FLAG_UNREGISTER,
		            ONCPU_RSEQ_SIG) != 0)
			return false;
	}
#endif
	return !oncpu_thread_rseq_active();
}

/*
 * Run fn(arg) in a forked child whose stderr goes to a pipe. Returns the
 * wait status; the child's stderr (truncated) lands in err. The child
 * exits 0 when fn returns.
 */
static TEST_UNUSED int test_run_child(void (*fn)(void *), void *arg, char *err, size_t errlen)
{
	int fds[2];
	CHECK(pipe(fds) == 0);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 2);
		close(fds[1]);
		fn(arg);
		fflush(stderr);
		_exit(0);
	}
	close(fds[1]);
	size_t n = 0;
	for (;;) {
		char tmp[512];
		ssize_t r = read(fds[0], tmp, sizeof(tmp));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r && n + 1 < errlen; i++)
			err[n++] = tmp[i];
	}
	if (errlen)
		err[n] = 0;
	close(fds[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		CHECK(errno == EINTR);
	return status;
}

/* Describe a wait status for messages. */
static TEST_UNUSED const char *test_status_str(int status)
{
	static __thread char buf[64];
	if (WIFEXITED(status))
		snprintf(buf, sizeof(buf), "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, sizeof(buf), "signal %d (%s)", WTERMSIG(status),
		         strsignal(WTERMSIG(status)));
	else
		snprintf(buf, sizeof(buf), "status 0x%x", status);
	return buf;
}

/*
 * Run this test program again (/proc/self/exe) as `self arg...` with an
 * extra environment variable (NAME=VALUE, or NULL), wait, return the status.
 * Its output goes where ours goes. The seccomp filter of the fallback mode
 * is inherited across exec, as is the rest of the environment.
 */
static TEST_UNUSED int test_reexec(const char *envvar, const char *arg1, const char *arg2)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		if (envvar)
			putenv((char *)envvar);
		execl("/proc/self/exe", "oncpu-test-child", arg1, arg2, (char *)NULL);
		perror("execl /proc/self/exe");
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		CHECK(errno == EINTR);
	return status;
}

/* ---- memory ---- */

/*
 * Resident memory (kB, the "Rss:" of /proc/self/smaps) of the mapping
 * that contains addr, its start and its size in kB; -1 when not found. Unlike
 * mincore(), Rss does not count pages that only map the shared zero page
 * (reads of never-written memory), which cost nothing.
 */
static TEST_UNUSED long test_mapping_rss_kb(const void *addr, uintptr_t *start, long *size_kb)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	CHECK(f);
	char line[512];
	bool in = false;
	long rss = -1;
	uintptr_t a = (uintptr_t)addr;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = a >= lo && a < hi;
			if (in && start)
				*start = lo;
			if (in && size_kb)
				*size_kb = (long)((hi - lo) / 1024);
			continue;
		}
		long v;
		if (in && sscanf(line, "Rss: %ld kB", &v) == 1) {
			rss = v;
			break;
		}
	}
	fclose(f);
	return rss;
}

/* ---- time ---- */

/* Sleep us microseconds (resumed after a signal: the whole time). */
static TEST_UNUSED void test_sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	while (nanosleep(&ts, &ts) != 0)
		CHECK(errno == EINTR);
}

/* CLOCK_MONOTONIC in seconds. */
static TEST_UNUSED double test_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- randomness ---- */

static TEST_UNUSED uint64_t test_rand(uint64_t *state)
{
	/* xorshift64*: fast, good enough to pick CPUs and deltas */
	uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* A positive number from an environment variable, or dflt. */
static TEST_UNUSED long test_env_long(const char *name, long dflt)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return dflt;
	char *end;
	long v = strtol(s, &end, 0);
	CHECK_MSG(*end == 0 && v >= 0, "bad %s=%s", name, s);
	return v;
}

static TEST_UNUSED pid_t test_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

#endif /* ONCPU_TEST_UTIL_H */
