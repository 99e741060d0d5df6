/* SPDX-License-Identifier: MIT */
/*
 * bpftest.h - helpers of the bpf provider's tests: preconditions (skipped
 * with exit 77 and a reason), the pinned stats, a thread's block.
 * The tests run as root in CI against a provider that the fixture test
 * bpf.load pinned under $ONCPU_BPF_PIN_DIR.
 */
#ifndef ONCPU_BPFTEST_H
#define ONCPU_BPFTEST_H

#include <stdarg.h>
#include <sys/stat.h>

#include <oncpu/desched.h>

#include "desched_block.h"
#include "oncpu_bpf.h"
#include "testutil.h"

#define SKIP_RC 77

__attribute__((format(printf, 1, 2), noreturn)) static void bpftest_skip(const char *fmt, ...)
{
	va_list ap;
	fputs("SKIP: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	exit(SKIP_RC);
}

static TEST_UNUSED const char *bpftest_pin_dir(void)
{
	const char *d = getenv("ONCPU_BPF_PIN_DIR");
	return d && *d ? d : ONCPU_BPF_PIN_DIR;
}

/* Skips unless root and the provider is pinned (by the fixture). */
static TEST_UNUSED void bpftest_require_loaded(void)
{
	if (geteuid() != 0)
		bpftest_skip("the bpf provider tests run as root (the fixture loads BPF programs)");
	char p[512];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", bpftest_pin_dir(), ONCPU_BPF_PIN_INFO);
	if (stat(p, &st) != 0)
		bpftest_skip(
		    "no provider pinned at %s (the fixture bpf.load failed or was skipped)",
		    bpftest_pin_dir());
}

/* bpf(2) without libbpf, as the library does. */
static TEST_UNUSED long bpftest_sys(int cmd, void *attr, unsigned size)
{
	return syscall(SYS_bpf, cmd, attr, size);
}

/* Sum over CPUs of a pinned stats counter (-1 on error). */
static TEST_UNUSED long long bpftest_stat(enum oncpu_bpf_stat which)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", bpftest_pin_dir(), ONCPU_BPF_PIN_STATS);
	struct {
		uint64_t pathname;
		uint32_t bpf_fd, file_flags;
	} get = {(uint64_t)(uintptr_t)p, 0, 1U << 3 /* BPF_F_RDONLY */};
	int fd = (int)bpftest_sys(7 /* BPF_OBJ_GET */, &get, sizeof(get));
	if (fd < 0)
		return -1;
	int ncpu = oncpu_cpu_count();
	uint64_t *v = calloc((size_t)ncpu, sizeof(uint64_t));
	uint32_t key = which;
	struct {
		uint32_t map_fd, pad;
		uint64_t key, value, flags;
	} look = {(uint32_t)fd, 0, (uint64_t)(uintptr_t)&key, (uint64_t)(uintptr_t)v, 0};
	long long sum = -1;
	if (v && bpftest_sys(1 /* BPF_MAP_LOOKUP_ELEM */, &look, sizeof(look)) == 0) {
		sum = 0;
		for (int c = 0; c < ncpu; c++)
			sum += (long long)v[c];
	}
	free(v);
	close(fd);
	return sum;
}

/* BPF_OBJ_GET of pin `name` opened with flags (BPF_F_RDONLY/WRONLY, or 0):
 * the fd, or -errno. */
static TEST_UNUSED int bpftest_pin_get(const char *name, uint32_t flags)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", bpftest_pin_dir(), name);
	struct {
		uint64_t pathname;
		uint32_t bpf_fd, file_flags;
	} get = {(uint64_t)(uintptr_t)p, 0, flags};
	int fd = (int)bpftest_sys(7 /* BPF_OBJ_GET */, &get, sizeof(get));
	return fd < 0 ? -errno : fd;
}

/* BPF_MAP_LOOKUP_ELEM (1), UPDATE_ELEM (2) or DELETE_ELEM (3) of thread
 * tid's registration (value {block, 0}), through the reg pin opened with
 * open_flags (BPF_F_RDONLY/WRONLY, or 0). 0 or -errno. */
static TEST_UNUSED int bpftest_reg_op(int cmd, pid_t tid, void *block, uint32_t open_flags)
{
	int fd = bpftest_pin_get(ONCPU_BPF_PIN_REG, open_flags);
	if (fd < 0)
		return fd;
	int pidfd = (int)syscall(SYS_pidfd_open, tid, O_EXCL /* PIDFD_THREAD */);
	if (pidfd < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	struct oncpu_bpf_reg_user v = {(uint64_t)(uintptr_t)block, 0};
	struct {
		uint32_t map_fd, pad;
		uint64_t key, value, flags;
	} op = {(uint32_t)fd, 0, (uint64_t)(uintptr_t)&pidfd,
	        cmd == 3 ? 0 : (uint64_t)(uintptr_t)&v, 0};
	int r = bpftest_sys(cmd, &op, sizeof(op)) == 0 ? 0 : -errno;
	close(pidfd);
	close(fd);
	return r;
}

/* The calling thread's block (registering it on first use). */
static TEST_UNUSED struct _oncpu_desched_block *bpftest_block(void)
{
	char *w = oncpu_desched_words();
	CHECK(w != NULL);
	return (struct _oncpu_desched_block *)(w - ONCPU_DESCHED_OFF_WORDS);
}

static TEST_UNUSED uint64_t bpftest_pd(const struct _oncpu_desched_block *b, int i)
{
	return __atomic_load_n(&b->provider_data[i], __ATOMIC_RELAXED);
}

/* voluntary + nonvoluntary context switches of a thread of this process
 * (pid 0) or of process pid's main thread (tid = pid), from /proc. */
static TEST_UNUSED long bpftest_ctxsw_of(pid_t pid, pid_t tid)
{
	char p[96], line[256];
	if (pid)
		snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
	else
		snprintf(p, sizeof(p), "/proc/self/task/%d/status", (int)tid);
	FILE *f = fopen(p, "re");
	CHECK(f != NULL);
	long v = 0, n = 0, x;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "voluntary_ctxt_switches: %ld", &x) == 1)
			v = x;
		else if (sscanf(line, "nonvoluntary_ctxt_switches: %ld", &x) == 1)
			n = x;
	}
	fclose(f);
	return v + n;
}

static TEST_UNUSED long bpftest_ctxsw(pid_t tid)
{
	return bpftest_ctxsw_of(0, tid);
}

static TEST_UNUSED uint64_t bpftest_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#endif /* ONCPU_BPFTEST_H */
