/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of oncpu/thread.h: registration per mode, ids, the rseq area,
 * oncpu_cpu_count and ONCPU_POSSIBLE_CPUS, a foreign registration (EBUSY),
 * first use from a signal handler, unregistration at thread exit, fork and
 * exec.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <sys/auxv.h>

#include "testutil.h"

#define UNREGISTER ONCPU_RSEQ_FLAG_UNREGISTER

/* glibc >= 2.35 (weak: absent elsewhere). */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

static int sysfs_possible_bound(void)
{
	FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
	CHECK(f);
	char buf[256];
	CHECK(fgets(buf, sizeof(buf), f));
	fclose(f);
	int bound = 0;
	for (char *s = buf; *s && *s != '\n';) {
		char *end;
		long v = strtol(s, &end, 10);
		CHECK(end != s);
		if (v + 1 > bound)
			bound = (int)v + 1;
		s = (*end == '-' || *end == ',') ? end + 1 : end;
	}
	return bound;
}

static bool kernel_has_mm_cid(void)
{
	return getauxval(ONCPU_AT_RSEQ_FEATURE_SIZE) >= ONCPU_RSEQ_END_MM_CID;
}

static bool kernel_has_node_id(void)
{
	return getauxval(ONCPU_AT_RSEQ_FEATURE_SIZE) >= ONCPU_RSEQ_END_NODE_ID;
}

static void *thread_pointer(void)
{
	return __builtin_thread_pointer();
}

/* What every thread of this mode must see (called from many threads). */
/*
 * rseq_cs of a thread outside any section: 0, or (a committed section stays
 * armed, oncpu/cs.h) a well-formed descriptor whose range excludes the
 * caller, which the kernel would simply clear.
 */
static bool rseq_cs_idle(uint64_t p)
{
	if (p == 0)
		return true;
	const struct oncpu_rseq_cs *d = (const struct oncpu_rseq_cs *)(uintptr_t)p;
	uintptr_t here = (uintptr_t)__builtin_return_address(0);
	return p % 32 == 0 && d->version == 0 && d->flags == 0 && d->post_commit_offset > 0 &&
	       d->post_commit_offset < 4096 && d->abort_ip - d->start_ip >= d->post_commit_offset &&
	       here - d->start_ip >= d->post_commit_offset;
}

static void check_thread_state(void)
{
	bool rseq = test_expect_rseq();
	errno = 0;
	int r = oncpu_thread_init();
	if (rseq) {
		CHECK_MSG(r == 0, "oncpu_thread_init: %d errno %d (%s)", r, errno, strerror(errno));
	} else {
		CHECK_MSG(r == -1 && errno == ENOSYS, "oncpu_thread_init: %d errno %d", r, errno);
	}
	/* idempotent */
	errno = 0;
	CHECK(oncpu_thread_init() == r);
	if (!rseq)
		CHECK(errno == ENOSYS);
	CHECK(oncpu_thread_rseq_active() == rseq);
	CHECK_MSG(oncpu_thread_registration() == test_expected_registration(),
	          "registration %d, expected %d", oncpu_thread_registration(),
	          test_expected_registration());
	struct oncpu_rseq_area *area = oncpu_thread_area();
	CHECK((area != NULL) == rseq);
	CHECK(oncpu_vcpu_dense() == (rseq && kernel_has_mm_cid()));
	if (area) {
		CHECK(area->flags == 0);
		CHECK(rseq_cs_idle(area->rseq_cs)); /* no section active here */
		CHECK((int)area->cpu_id >= 0 && (int)area->cpu_id < oncpu_cpu_count());
		/* the area is at the same offset from the thread pointer in every thread */
		static ptrdiff_t first_offset;
		ptrdiff_t off = (char *)area - (char *)thread_pointer();
		if (!first_offset)
			first_offset = off;
		CHECK(off == first_offset);
		if (test_mode_is("rseq-libc")) {
			CHECK(&__rseq_size && __rseq_size > 0);
			CHECK(off == __rseq_offset);
		}
	}
	if (test_mode_is("rseq-own") || test_mode_is("fallback"))
		CHECK(!&__rseq_size || __rseq_size == 0); /* glibc did not register */
	int cpu = oncpu_cpu(), vcpu = oncpu_vcpu(), node = oncpu_node();
	CHECK(cpu >= 0 && cpu < oncpu_cpu_count());
	CHECK(vcpu >= 0 && vcpu < oncpu_cpu_count());
	CHECK(node >= 0);
}

/* With one thread in the process the dense vcpu is 0. Runs first in main. */
static void test_single_thread_vcpu(void)
{
	if (oncpu_vcpu_dense()) {
		CHECK_MSG(oncpu_vcpu() == 0, "vcpu %d with one thread", oncpu_vcpu());
		CHECK(oncpu_thread_area()->mm_cid == 0);
	} else {
		/* not dense: vcpu is the cpu id */
		int cpu = sched_getcpu();
		for (int tries = 0; tries < 1000; tries++) {
			int v = oncpu_vcpu();
			if (v == cpu && sched_getcpu() == cpu)
				return;
			cpu = sched_getcpu();
		}
		CHECK(!"vcpu never equal to the cpu");
	}
}

static void test_version(void)
{
	CHECK(strcmp(oncpu_version(), ONCPU_VERSION_STRING) == 0);
	char buf[32];
	snprintf(buf, sizeof(buf), "%d.%d.%d", ONCPU_VERSION_MAJOR, ONCPU_VERSION_MINOR,
	         ONCPU_VERSION_PATCH);
	CHECK(strcmp(buf, ONCPU_VERSION_STRING) == 0);
}

static void test_cpu_count(void)
{
	int n = oncpu_cpu_count();
	CHECK(n == oncpu_cpu_count());
	CHECK(n >= test_online_cpus());
	if (!getenv("ONCPU_POSSIBLE_CPUS"))
		CHECK_MSG(n == sysfs_possible_bound(), "cpu_count %d, possible %d", n,
		          sysfs_possible_bound());
}

/* Pinned to each allowed CPU in turn: every id source agrees. */
static void test_ids_pinned(void)
{
	bool rseq = test_expect_rseq();
	for (int i = 0; i < test_allowed_count(); i++) {
		int cpu = test_allowed_nth(i);
		CHECK(test_pin(cpu) == 0);
		unsigned gcpu, gnode;
		CHECK(syscall(SYS_getcpu, &gcpu, &gnode, NULL) ==
		      0); /* musl < 1.2.4: no getcpu() */
		CHECK((int)gcpu == cpu);
		CHECK_MSG(oncpu_cpu() == cpu, "oncpu_cpu %d pinned to %d", oncpu_cpu(), cpu);
		CHECK(sched_getcpu() == cpu);
		CHECK_MSG(oncpu_node() == (int)gnode, "node %d, getcpu says %u", oncpu_node(),
		          gnode);
		int vcpu = oncpu_vcpu();
		CHECK(vcpu >= 0 && vcpu < oncpu_cpu_count());
		if (!oncpu_vcpu_dense())
			CHECK(vcpu == cpu);
		if (rseq) {
			CHECK(oncpu_cs_id(ONCPU_CPU) == cpu);
			struct oncpu_rseq_area *a = oncpu_thread_area();
			CHECK(a->cpu_id == (uint32_t)cpu);
			CHECK(a->cpu_id_start == (uint32_t)cpu);
			CHECK(a->flags == 0 && rseq_cs_idle(a->rseq_cs));
			if (kernel_has_node_id())
				CHECK(a->node_id == gnode);
			if (oncpu_vcpu_dense()) {
				CHECK(a->mm_cid == (uint32_t)vcpu);
				CHECK(oncpu_cs_id(ONCPU_VCPU) == vcpu);
			}
		} else {
			CHECK(oncpu_thread_area() == NULL);
			CHECK(oncpu_cs_id(ONCPU_CPU) == ONCPU_CS_UNAVAILABLE);
			CHECK(oncpu_cs_id(ONCPU_VCPU) == ONCPU_CS_UNAVAILABLE);
		}
	}
	test_unpin();
}

/* ---- threads ---- */

static void *run_check_thread_state(void *arg)
{
	(void)arg;
	check_thread_state();
	test_ids_pinned();
	return NULL;
}

static void run_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	CHECK(pthread_create(&t, NULL, fn, arg) == 0);
	CHECK(pthread_join(t, NULL) == 0);
}

/*
 * A foreign rseq registration (another library's area) in a thread where
 * oncpu registers its own: oncpu must say EBUSY, keep working through its
 * fallback and leave the foreign area alone.
 */
static struct test_rseq_area foreign;

static void *foreign_thread(void *arg)
{
	(void)arg;
	int r = test_raw_rseq(&foreign, 0);
	int err = errno;
	if (test_mode_is("rseq-own")) {
		CHECK_MSG(r == 0, "raw rseq: errno %d", err);
	} else if (test_mode_is("fallback")) {
		CHECK(r == -1 && err == ENOSYS);
		return NULL;
	} else {
		/* glibc registered this thread: a second area is refused */
		CHECK(r == -1 && err == EINVAL);
		check_thread_state();
		return NULL;
	}
	CHECK_ERRNO(oncpu_thread_init(), EBUSY);
	CHECK_ERRNO(oncpu_thread_init(), EBUSY); /* sticky */
	CHECK(!oncpu_thread_rseq_active());
	CHECK(oncpu_thread_registration() == ONCPU_REG_NONE);
	CHECK(oncpu_thread_area() == NULL);
	CHECK(!oncpu_vcpu_dense());
	CHECK(oncpu_cs_id(ONCPU_CPU) == ONCPU_CS_UNAVAILABLE);
	CHECK(oncpu_cs_id(ONCPU_VCPU) == ONCPU_CS_UNAVAILABLE);
	intptr_t *pc = oncpu_percpu_alloc(sizeof(intptr_t), 0);
	CHECK(pc);
	CHECK(oncpu_cs_percpu_add(ONCPU_CPU, pc, 1) == ONCPU_CS_UNAVAILABLE);
	CHECK(oncpu_cs_percpu_add(ONCPU_VCPU, pc, 1) == ONCPU_CS_UNAVAILABLE);
	for (int c = 0; c < oncpu_cpu_count(); c++)
		CHECK(*(intptr_t *)oncpu_ptr(pc, c) == 0);
	oncpu_percpu_free(pc);
	/* ids still right, through the fallback */
	for (int i = 0; i < test_allowed_count(); i++) {
		int cpu = test_allowed_nth(i);
		CHECK(test_pin(cpu) == 0);
		CHECK(oncpu_cpu() == cpu);
		CHECK(oncpu_vcpu() == cpu);
		/* the kernel keeps updating the foreign area: it is still registered */
		CHECK(foreign.cpu_id == (uint32_t)cpu);
	}
	test_unpin();
	struct oncpu_counter *c = oncpu_counter_new();
	CHECK(c);
	for (int i = 0; i < 1000; i++)
		oncpu_counter_add(c, 3);
	CHECK(oncpu_counter_sum(c) == 3000);
	oncpu_counter_destroy(c);
	/* untouched by oncpu: no section armed, flags 0, still ours to unregister */
	CHECK(foreign.rseq_cs == 0 && foreign.flags == 0);
	CHECK(test_raw_rseq(&foreign, UNREGISTER) == 0);
	return NULL;
}

/* ---- first use from a signal handler ---- */

static volatile sig_atomic_t sig_init_result = 99, sig_errno, sig_cpu = -1;
static struct oncpu_counter *sig_counter;

static void first_use_handler(int sig)
{
	(void)sig;
	int saved = errno;
	errno = 0;
	sig_init_result = oncpu_thread_init();
	sig_errno = errno;
	sig_cpu = oncpu_cpu();
	oncpu_counter_add(sig_counter, 5);
	errno = saved;
}

static void *signal_first_thread(void *arg)
{
	(void)arg;
	/* no oncpu call in this thread before the handler runs */
	CHECK(pthread_kill(pthread_self(), SIGUSR2) == 0);
	CHECK(sig_cpu >= 0 && sig_cpu < oncpu_cpu_count());
	if (test_expect_rseq())
		CHECK(sig_init_result == 0);
	else
		CHECK(sig_init_result == -1 && sig_errno == ENOSYS);
	check_thread_state();
	oncpu_counter_add(sig_counter, 7);
	return NULL;
}

static void test_signal_first_use(void)
{
	struct sigaction sa = {.sa_handler = first_use_handler};
	CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
	sig_counter = oncpu_counter_new();
	CHECK(sig_counter);
	run_thread(signal_first_thread, NULL);
	CHECK(oncpu_counter_sum(sig_counter) == 12);
	oncpu_counter_destroy(sig_counter);
	signal(SIGUSR2, SIG_DFL);
}

/* ---- thread exit: 1000 threads, each must be unregistered when it exits ---- */

#define EXIT_THREADS 1000
#define EXIT_BATCH   8

static pthread_key_t probe_key;
static struct oncpu_counter *exit_counter;
static int probe_ok, probe_fail, probe_last_errno;

/*
 * Runs in the exiting thread among the key destructors. If oncpu's own
 * area were still registered, registering a fresh area would fail with
 * EINVAL. Destructor order between keys is unspecified, so on EINVAL try
 * again in the next destructor round, after oncpu's destructor surely ran.
 */
static void probe_destructor(void *p)
{
	static __thread struct test_rseq_area probe;
	static __thread int round;
	if (test_raw_rseq(&probe, 0) == 0) {
		CHECK(test_raw_rseq(&probe, UNREGISTER) == 0);
		__atomic_fetch_add(&probe_ok, 1, __ATOMIC_RELAXED);
		return;
	}
	if (errno == EINVAL && ++round < PTHREAD_DESTRUCTOR_ITERATIONS - 1) {
		pthread_setspecific(probe_key, p);
		return;
	}
	__atomic_store_n(&probe_last_errno, errno, __ATOMIC_RELAXED);
	__atomic_fetch_add(&probe_fail, 1, __ATOMIC_RELAXED);
}

static void *exit_thread(void *arg)
{
	(void)arg;
	CHECK(oncpu_thread_rseq_active() == test_expect_rseq());
	CHECK(oncpu_thread_registration() == test_expected_registration());
	oncpu_counter_add(exit_counter, 1);
	if (test_expect_rseq()) {
		intptr_t v = 0;
		int r;
		do
			r = oncpu_cs_add(ONCPU_CPU, &v, 2, oncpu_cs_id(ONCPU_CPU));
		while (r == ONCPU_CS_ABORTED);
		CHECK(r == ONCPU_CS_COMMITTED && v == 2);
	}
	CHECK(pthread_setspecific(probe_key, (void *)1) == 0);
	return NULL;
}

static void test_thread_exit(void)
{
	exit_counter = oncpu_counter_new();
	CHECK(exit_counter);
	/* created after oncpu's own key (oncpu is initialized by now) */
	CHECK(pthread_key_create(&probe_key, probe_destructor) == 0);
	for (int i = 0; i < EXIT_THREADS; i += EXIT_BATCH) {
		pthread_t t[EXIT_BATCH];
		for (int j = 0; j < EXIT_BATCH; j++)
			CHECK(pthread_create(&t[j], NULL, exit_thread, NULL) == 0);
		for (int j = 0; j < EXIT_BATCH; j++)
			CHECK(pthread_join(t[j], NULL) == 0);
	}
	CHECK(oncpu_counter_sum(exit_counter) == EXIT_THREADS);
	oncpu_counter_destroy(exit_counter);
	CHECK(probe_ok + probe_fail == EXIT_THREADS);
	if (test_mode_is("rseq-own"))
		CHECK_MSG(probe_ok == EXIT_THREADS,
		          "%d of %d exiting threads still had an rseq area registered (errno %d)",
		          probe_fail, EXIT_THREADS, probe_last_errno);
	else if (test_mode_is("fallback"))
		CHECK(probe_fail == EXIT_THREADS && probe_last_errno == ENOSYS);
	pthread_key_delete(probe_key);
	check_thread_state();
}

/* ---- fork and exec ---- */

#define CHILD_THREADS 4
#define CHILD_ADDS    20000

static void *adder(void *arg)
{
	struct oncpu_counter *c = arg;
	for (int i = 0; i < CHILD_ADDS; i++)
		oncpu_counter_add(c, 1);
	return NULL;
}

/* Registration, a committed section and exact counter sums with threads. */
static void exercise_process(struct oncpu_counter *c, long base)
{
	check_thread_state();
	if (test_expect_rseq()) {
		intptr_t v = 41;
		int r, tries = 0;
		do {
			int id = oncpu_cs_id(ONCPU_CPU);
			CHECK(id >= 0);
			r = oncpu_cs_cmpeq_store(ONCPU_CPU, &v, 41, 42, id);
			CHECK(++tries < 100000);
		} while (r == ONCPU_CS_ABORTED);
		CHECK(r == ONCPU_CS_COMMITTED && v == 42);
	}
	pthread_t t[CHILD_THREADS];
	for (int i = 0; i < CHILD_THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, adder, c) == 0);
	adder(c);
	for (int i = 0; i < CHILD_THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	CHECK_MSG(oncpu_counter_sum(c) == base + (CHILD_THREADS + 1) * CHILD_ADDS, "sum %ld",
	          oncpu_counter_sum(c));
	struct oncpu_counter *c2 = oncpu_counter_new();
	CHECK(c2 && oncpu_counter_sum(c2) == 0);
	oncpu_counter_add(c2, -9);
	CHECK(oncpu_counter_sum(c2) == -9);
	oncpu_counter_destroy(c2);
}

static void fork_child_body(void *arg)
{
	exercise_process(arg, 100);
}

static void *fork_from_thread(void *arg)
{
	char err[4096];
	oncpu_counter_add(arg, 0); /* registered before fork */
	int st = test_run_child(fork_child_body, arg, err, sizeof(err));
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child forked from a thread: %s: %s",
	          test_status_str(st), err);
	return NULL;
}

static void test_fork(void)
{
	struct oncpu_counter *c = oncpu_counter_new();
	CHECK(c);
	oncpu_counter_add(c, 100);
	char err[4096];
	int st = test_run_child(fork_child_body, c, err, sizeof(err));
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forked child: %s: %s",
	          test_status_str(st), err);
	/* the child's adds stayed in the child */
	CHECK(oncpu_counter_sum(c) == 100);
	run_thread(fork_from_thread, c);
	CHECK(oncpu_counter_sum(c) == 100);
	/* the parent still works */
	exercise_process(c, 100);
	oncpu_counter_destroy(c);
}

/* `thread exec-child`: a freshly exec'd program using oncpu. */
static int exec_child_main(void)
{
	test_single_thread_vcpu();
	struct oncpu_counter *c = oncpu_counter_new();
	CHECK(c);
	exercise_process(c, 0);
	test_ids_pinned();
	oncpu_counter_destroy(c);
	return 0;
}

static void *exec_from_thread(void *arg)
{
	(void)arg;
	check_thread_state(); /* registered, then replaced by exec */
	execl("/proc/self/exe", "oncpu-test-child", "exec-child", (char *)NULL);
	perror("execl");
	_exit(127);
}

static void exec_from_thread_child(void *arg)
{
	(void)arg;
	check_thread_state();
	pthread_t t;
	CHECK(pthread_create(&t, NULL, exec_from_thread, NULL) == 0);
	pthread_join(t, NULL); /* never returns: exec replaces the process */
	_exit(126);
}

static void test_exec(void)
{
	int st = test_reexec(NULL, "exec-child", NULL);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exec child: %s", test_status_str(st));
	/* exec from a secondary thread whose area is registered */
	char err[4096];
	st = test_run_child(exec_from_thread_child, NULL, err, sizeof(err));
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exec from a thread: %s: %s",
	          test_status_str(st), err);
}

/* ---- ONCPU_POSSIBLE_CPUS (read once, can only raise the bound) ---- */

/* `thread cpu-count N`: oncpu_cpu_count() must be N (0: the real bound). */
static int cpu_count_child_main(const char *arg)
{
	int want = atoi(arg);
	if (want == 0)
		want = sysfs_possible_bound();
	CHECK_MSG(oncpu_cpu_count() == want, "cpu_count %d, want %d (ONCPU_POSSIBLE_CPUS=%s)",
	          oncpu_cpu_count(), want, getenv("ONCPU_POSSIBLE_CPUS"));
	/* read once: changing the variable later has no effect */
	setenv("ONCPU_POSSIBLE_CPUS", "8192", 1);
	CHECK(oncpu_cpu_count() == want);
	check_thread_state();
	test_ids_pinned();
	return 0;
}

static void expect_cpu_count(const char *env, const char *want)
{
	int st = test_reexec(env, "cpu-count", want);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s", env, test_status_str(st));
}

static void test_possible_cpus_env(void)
{
	if (sysfs_possible_bound() < 4096)
		expect_cpu_count("ONCPU_POSSIBLE_CPUS=4096", "4096");
	expect_cpu_count("ONCPU_POSSIBLE_CPUS=1", "0"); /* never lowered */
	expect_cpu_count("ONCPU_POSSIBLE_CPUS=0", "0");
	expect_cpu_count("ONCPU_POSSIBLE_CPUS=-5", "0");
	expect_cpu_count("ONCPU_POSSIBLE_CPUS=junk", "0");
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "exec-child") == 0)
		return exec_child_main();
	if (argc > 2 && strcmp(argv[1], "cpu-count") == 0)
		return cpu_count_child_main(argv[2]);

	test_allowed_cpus(); /* save the mask before any pinning */
	check_thread_state();
	test_single_thread_vcpu();
	test_version();
	test_cpu_count();
	test_ids_pinned();
	run_thread(run_check_thread_state, NULL);
	run_thread(foreign_thread, NULL);
	test_signal_first_use();
	test_thread_exit();
	test_fork();
	test_exec();
	test_possible_cpus_env();
	printf("thread: all checks passed (%s)\n", test_mode());
	return 0;
}
