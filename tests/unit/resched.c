/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of oncpu/resched.h. In the rseq modes (this kernel rewrites the
 * ids after every switch): a sleep, a signal and a forced migration are each
 * detected; a busy loop is not, except when the kernel's own count of this
 * thread's context switches (getrusage(RUSAGE_THREAD)) says it was switched
 * out meanwhile; arming clears the evidence; epochs of several users; the
 * per-CPU cached pointer follows a migration. In the fallback modes:
 * ENOTSUP, check() always true, a new epoch on every call.
 */
#define _GNU_SOURCE
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>

#include "testutil.h"

static bool supported;

static long switches(void)
{
	struct rusage ru;
	CHECK(getrusage(RUSAGE_THREAD, &ru) == 0);
	return ru.ru_nvcsw + ru.ru_nivcsw;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no kernel entry */
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Arm, and retry until the mark survives at least to the next check (a
 * timer preemption right after arming is legitimate). */
static void arm_quiet(void)
{
	for (int i = 0; i < 1000; i++) {
		CHECK(oncpu_resched_arm());
		if (!oncpu_resched_check())
			return;
	}
	CHECK(!"the mark never survived from arm to check");
}

/* glibc's registered size (2.35+), absent elsewhere. */
extern const unsigned int __rseq_size __attribute__((weak));

/*
 * Whether this kernel and registration must refuse detection, from the
 * table in oncpu_resched(3): 6.19 to 7.0 rewrite the ids only when they
 * change; 6.13+ with CONFIG_DEBUG_RSEQ and 7.1+ with an optimized (> 32
 * bytes) glibc registration kill a task that writes cpu_id_start.
 */
static const char *documented_refusal(void)
{
	struct utsname u;
	int major = 0, minor = 0;
	CHECK(uname(&u) == 0);
	if (sscanf(u.release, "%d.%d", &major, &minor) != 2)
		return "unparsable kernel release";
	int v = major * 100 + minor;
	if (v >= 619 && v < 701)
		return "6.19 to 7.0 rewrite the ids only when they change";
	if (v >= 701 && oncpu_thread_registration() == ONCPU_REG_LIBC && &__rseq_size &&
	    __rseq_size > 32)
		return "7.1+ with an optimized glibc registration";
	char path[320], line[256];
	snprintf(path, sizeof(path), "/boot/config-%s", u.release);
	FILE *f = fopen(path, "re");
	bool debug = false;
	while (f && fgets(line, sizeof(line), f))
		debug |= strncmp(line, "CONFIG_DEBUG_RSEQ=y", 19) == 0;
	if (f)
		fclose(f);
	if (v >= 613 && debug)
		return "CONFIG_DEBUG_RSEQ validates the ids";
	return NULL;
}

static void test_support(void)
{
	int r = oncpu_resched_init();
	const char *refusal = test_expect_rseq() ? documented_refusal() : NULL;
	if (refusal) {
		/* The kernel decides: a correct refusal, and the fallback contract. */
		CHECK_MSG(r == -1 && errno == ENOTSUP, "resched must be refused here (%s)",
		          refusal);
		CHECK(!oncpu_resched_arm());
		CHECK(oncpu_resched_check());
		printf("resched: refused as documented (%s): detection tests not run\n", refusal);
	} else if (test_expect_rseq()) {
		CHECK_MSG(r == 0, "resched unsupported in %s: %s", test_mode(), strerror(errno));
		supported = true;
	} else {
		CHECK_ERRNO(oncpu_resched_init(), ENOTSUP);
		CHECK(!oncpu_resched_arm());
		CHECK(oncpu_resched_check());
	}
}

static void test_arm_clears(void)
{
	if (!supported)
		return;
	arm_quiet();
	/* cpu_id_start holds the mark; cpu_id still reads the real CPU */
	CHECK(oncpu_thread_area()->cpu_id_start == ONCPU_RESCHED_MARK);
	CHECK(oncpu_cpu() >= 0 && oncpu_cpu() < oncpu_cpu_count());
}

static void test_sleep_detected(void)
{
	if (!supported)
		return;
	int slept = 0;
	for (int i = 0; i < 20; i++) {
		arm_quiet();
		long s0 = switches();
		struct timespec ts = {0, 200000};
		nanosleep(&ts, NULL);
		bool detected = oncpu_resched_check();
		/* A slow (emulated) CPU can reach the timer's expiry before the
		 * thread blocks: then nothing switched it out and nothing must
		 * be detected. Every sleep that really switched must be. */
		if (switches() != s0) {
			slept++;
			CHECK_MSG(detected, "a 200 us sleep was not detected (try %d)", i);
		}
	}
	CHECK_MSG(slept > 0, "no 200 us sleep switched the thread out");
}

static volatile sig_atomic_t handled;
static void on_signal(int sig)
{
	(void)sig;
	handled++;
}

static void test_signal_detected(void)
{
	if (!supported)
		return;
	struct sigaction sa = {.sa_handler = on_signal}, old;
	CHECK(sigaction(SIGUSR2, &sa, &old) == 0);
	for (int i = 0; i < 20; i++) {
		int before = handled;
		arm_quiet();
		CHECK(syscall(SYS_tgkill, getpid(), test_gettid(), SIGUSR2) == 0);
		CHECK(handled == before + 1);
		CHECK_MSG(oncpu_resched_check(), "a signal was not detected (try %d)", i);
	}
	CHECK(sigaction(SIGUSR2, &old, NULL) == 0);
}

static void test_migration_detected(void)
{
	if (!supported)
		return;
	if (test_allowed_count() < 2) {
		printf("resched: migration test skipped (%d CPU allowed)\n", test_allowed_count());
		return;
	}
	int a = test_allowed_nth(0), b = test_allowed_nth(1);
	for (int i = 0; i < 20; i++) {
		int from = i % 2 ? a : b, to = i % 2 ? b : a;
		CHECK(test_pin(from) == 0);
		arm_quiet();
		CHECK(oncpu_cpu() == from);
		CHECK(test_pin(to) == 0); /* returns on the other CPU */
		CHECK(oncpu_cpu() == to);
		CHECK_MSG(oncpu_resched_check(), "a migration %d -> %d was not detected", from, to);
	}
	test_unpin();
}

/*
 * A busy loop without system calls: detection must match the kernel's count
 * of this thread's switches. A detection without a switch (the ids are
 * also rewritten on other returns through notify-resume) is tolerated a
 * few times; most loops must stay undetected, or check() could simply
 * always say true.
 */
static void test_busy_loop(void)
{
	if (!supported)
		return;
	int trials = 0, quiet = 0, preempted_detected = 0, unexplained = 0, missed = 0;
	/* until 100 loops ran without a switch (a loaded machine preempts many) */
	while (quiet + unexplained < 100 && trials < 20000) {
		trials++;
		long s0 = switches();
		arm_quiet();
		uint64_t end = now_ns() + 50000;
		while (now_ns() < end)
			__asm__ __volatile__("" ::: "memory");
		bool detected = oncpu_resched_check();
		long s1 = switches();
		if (s1 != s0 && detected)
			preempted_detected++;
		else if (s1 == s0 && !detected)
			quiet++;
		else if (detected)
			unexplained++;
		else
			missed++; /* switched before arm_quiet() returned: not a miss */
	}
	printf("resched: %d busy loops: %d quiet, %d preempted (detected), %d detected without a "
	       "switch, %d switched before arming\n",
	       trials, quiet, preempted_detected, unexplained, missed);
	CHECK_MSG(quiet + unexplained >= 100, "only %d of %d busy loops ran without a switch",
	          quiet + unexplained, trials);
	/* of the loops the kernel did not switch out, 95 % must stay undetected */
	CHECK_MSG(unexplained * 20 <= quiet + unexplained, "%d detections without a context switch",
	          unexplained);
}

static void test_epoch_users(void)
{
	uint64_t e0 = oncpu_resched_epoch();
	CHECK(e0 != 0);
	uint64_t a = e0, b = e0;
	if (!supported) {
		CHECK(oncpu_resched_epoch() != a); /* every call is new */
		return;
	}
	/* A second user that re-arms does not hide the reschedule from the first.
	 * Sleep until the thread was really switched out (on a slow emulated
	 * CPU a short sleep can expire before the thread blocks). */
	long s0 = switches();
	for (int i = 0; i < 100 && switches() == s0; i++) {
		struct timespec ts = {0, 100000};
		nanosleep(&ts, NULL);
	}
	CHECK_MSG(switches() != s0, "100 sleeps of 100 us never switched the thread out");
	uint64_t b2 = oncpu_resched_epoch(); /* user B notices and re-arms */
	CHECK(b2 != b);
	uint64_t a2 = oncpu_resched_epoch(); /* user A still sees a new epoch */
	CHECK(a2 != a);
	/* raw arm also advances it */
	CHECK(oncpu_resched_arm());
	CHECK(oncpu_resched_epoch() != a2);
	/* and without any switch it stays (retry around timer preemption) */
	int stable = 0;
	for (int i = 0; i < 100 && !stable; i++) {
		uint64_t x = oncpu_resched_epoch(), y = oncpu_resched_epoch();
		stable = x == y;
	}
	CHECK(stable);
}

static void test_cached_ptr(void)
{
	int *h = oncpu_percpu_alloc(sizeof(int), 0);
	CHECK(h);
	struct oncpu_resched_cache c = ONCPU_RESCHED_CACHE_INIT;
	for (int k = 0; k < test_allowed_count() && k < 4; k++) {
		int cpu = test_allowed_nth(k);
		CHECK(test_pin(cpu) == 0);
		for (int i = 0; i < 10; i++) {
			int *p = oncpu_resched_cpu_ptr(&c, h);
			CHECK_MSG(p == oncpu_ptr(h, cpu), "cached pointer of cpu %d, pinned to %d",
			          c.cpu, cpu);
			CHECK(c.cpu == cpu);
			(*p)++;
		}
	}
	test_unpin();
	int total = 0;
	for (int cpu = 0; cpu < oncpu_cpu_count(); cpu++)
		total += *(int *)oncpu_ptr(h, cpu);
	CHECK(total == 10 * (test_allowed_count() < 4 ? test_allowed_count() : 4));
	oncpu_percpu_free(h);
}

static void *thread_main(void *arg)
{
	(void)arg;
	/* a new thread: its own mark, its own epoch */
	CHECK((oncpu_resched_init() == 0) == supported);
	uint64_t e = oncpu_resched_epoch();
	CHECK(e != 0);
	if (supported) {
		arm_quiet();
		long s0 = switches();
		for (int i = 0; i < 100 && switches() == s0; i++) {
			struct timespec ts = {0, 100000};
			nanosleep(&ts, NULL);
		}
		CHECK(switches() != s0);
		CHECK(oncpu_resched_check());
	}
	return NULL;
}

int main(void)
{
	test_allowed_cpus();
	test_support();
	test_arm_clears();
	test_sleep_detected();
	test_signal_detected();
	test_migration_detected();
	test_busy_loop();
	test_epoch_users();
	test_cached_ptr();
	pthread_t t;
	CHECK(pthread_create(&t, NULL, thread_main, NULL) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	printf("resched: all checks passed (%s, %s)\n", test_mode(),
	       supported ? "supported" : "unsupported");
	return 0;
}
