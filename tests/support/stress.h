/* SPDX-License-Identifier: MIT */
/*
 * stress.h - the harness of oncpu's stress programs, in the manner of the
 * kernel's rseq selftests (tools/testing/selftests/rseq/param_test.c):
 * 6 x CPUs worker threads hammer per-CPU structures while a disturber
 * thread forces aborts: a SIGUSR1 storm aimed at random workers (whose
 * handler itself runs critical sections), affinity changes of random
 * workers, and injected delay loops inside the sections (ONCPU_INJECT).
 * Workers also yield and move themselves between CPUs.
 *
 * Each test is {setup, work, verify}; the harness counts per test how the
 * sections ended (committed, compare failed, aborted, unavailable) and,
 * in the rseq modes, requires that aborts happened when disturbances are
 * on: the exact invariants checked by verify then prove they were retried.
 *
 * Options (argv, or the environment variable in brackets):
 *   -t N   worker threads            [ONCPU_STRESS_THREADS] (6 x online CPUs)
 *   -r N   operations per worker     [ONCPU_STRESS_REPS]    (per program)
 *   -s US  signal period, 0: off     [ONCPU_STRESS_SIGNAL_US] (40)
 *   -i N   max injected delay loops  [ONCPU_STRESS_INJECT]  (1000; 0: off)
 *   -y N   sched_yield every N ops   (97; 0: off)
 *   -a N   change affinity every N ops (1009; 0: off)
 *   -T NAME  run only the test NAME
 *   -v     print per-test statistics
 * Include in exactly one file, after defining _GNU_SOURCE.
 */
#ifndef ONCPU_TEST_STRESS_H
#define ONCPU_TEST_STRESS_H

#include <time.h>

#include "testutil.h"

#ifndef ONCPU_INJECT
#error "stress programs are built with -DONCPU_INJECT"
#endif
ONCPU_INJECT_DEFINE();
#if defined(ONCPU_HAVE_RSEQ_ASM)
#define stress_inject_loops _oncpu_inject_loops
#else
static volatile int stress_inject_loops[8]; /* no sections to widen */
#endif

struct stress_config {
	int threads;
	long reps;
	long signal_us;
	int inject;
	long yield_every;
	long affinity_every;
	const char *only;
	bool verbose;
};

static struct stress_config cfg;

struct stress_worker {
	int idx;
	pid_t tid;
	uint64_t rng;
	/* how the sections ended */
	long committed, cmpfail, aborted, unavailable;
	long signals; /* handled by this worker during the test */
	pthread_t thread;
};

struct stress_test {
	const char *name;
	void (*setup)(void);
	void (*work)(struct stress_worker *w);
	void (*verify)(void);
	/* optional: run in each worker before the start, and after the end */
	void (*thread_init)(struct stress_worker *w);
	void (*thread_fini)(struct stress_worker *w);
};

/* ---- signal handler: a critical section of its own ---- */

/* Per-CPU slots the handler adds 1 to (percpu item), and per-thread counts. */
static intptr_t *stress_sig_slots;
static __thread long stress_sig_count;
static volatile int stress_sig_aborts_seen;

static void stress_sig_handler(int sig)
{
	(void)sig;
	int saved = errno;
	for (;;) {
		int id = oncpu_cs_id(ONCPU_CPU);
		if (id < 0) {
			intptr_t *slot = oncpu_ptr(stress_sig_slots, sched_getcpu());
			__atomic_fetch_add(slot, 1, __ATOMIC_RELAXED);
			break;
		}
		int r = oncpu_cs_add(ONCPU_CPU, (intptr_t *)oncpu_ptr(stress_sig_slots, id), 1, id);
		if (r == ONCPU_CS_COMMITTED)
			break;
		CHECK(r == ONCPU_CS_ABORTED);
		stress_sig_aborts_seen = 1;
	}
	stress_sig_count++;
	errno = saved;
}

/* ---- workers and the disturber ---- */

static struct stress_worker *stress_workers;
static pthread_barrier_t stress_start, stress_done, stress_release;
static const struct stress_test *stress_current;
static volatile int stress_stop;

static void stress_set_affinity_random(pid_t tid, uint64_t *rng)
{
	if (test_allowed_count() < 2 || test_rand(rng) % 4 == 0) {
		sched_setaffinity(tid, sizeof(cpu_set_t), test_allowed_cpus());
		return;
	}
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(test_allowed_nth((int)(test_rand(rng) % (uint64_t)test_allowed_count())), &set);
	sched_setaffinity(tid, sizeof(set), &set);
}

/* Called by workers once per operation: yields and self-migrations. */
static inline void stress_disturb(struct stress_worker *w, long i)
{
	if (cfg.yield_every && i % cfg.yield_every == cfg.yield_every - 1)
		sched_yield();
	if (cfg.affinity_every && i % cfg.affinity_every == cfg.affinity_every - 1)
		stress_set_affinity_random(0, &w->rng);
}

/*
 * Called by workers between reading an id and the section that uses it:
 * now and then moves the thread to another CPU, so the section starts with
 * a stale id and must abort (the id check), never commit on a CPU that is
 * not the thread's.
 */
static inline void stress_stale_id(struct stress_worker *w)
{
	if (cfg.affinity_every && test_rand(&w->rng) % 64 == 0)
		stress_set_affinity_random(0, &w->rng);
}

static void *stress_worker_main(void *arg)
{
	struct stress_worker *w = arg;
	w->tid = test_gettid();
	stress_sig_count = 0;
	if (stress_current->thread_init)
		stress_current->thread_init(w);
	else /* register now: a section alone never registers a thread */
		CHECK((oncpu_thread_init() == 0) == test_expect_rseq());
	pthread_barrier_wait(&stress_start);
	stress_current->work(w);
	pthread_barrier_wait(&stress_done);
	/* the disturber has stopped: every signal sent to us was handled */
	pthread_barrier_wait(&stress_release);
	w->signals = stress_sig_count;
	if (stress_current->thread_fini)
		stress_current->thread_fini(w);
	return NULL;
}

static void *stress_disturber(void *arg)
{
	(void)arg;
	uint64_t rng = 12345;
	long n = 0;
	while (!__atomic_load_n(&stress_stop, __ATOMIC_ACQUIRE)) {
		struct stress_worker *w = &stress_workers[test_rand(&rng) % (uint64_t)cfg.threads];
		if (cfg.signal_us)
			syscall(SYS_tgkill, getpid(), w->tid, SIGUSR1);
		if (cfg.affinity_every && n % 16 == 0)
			stress_set_affinity_random(w->tid, &rng);
		if (cfg.inject && n % 32 == 0) {
			/* from no delay to long windows, at each injection point */
			static const int scale[] = {0, 0, 1, 10, 100, 1000};
			for (int p = 1; p <= 3; p++) {
				int s = scale[test_rand(&rng) % 6];
				stress_inject_loops[p] = s > cfg.inject ? cfg.inject : s;
			}
		}
		struct timespec ts = {0, (cfg.signal_us ? cfg.signal_us : 50) * 1000};
		nanosleep(&ts, NULL);
		n++;
	}
	for (int p = 0; p < 8; p++)
		stress_inject_loops[p] = 0;
	return NULL;
}

static double stress_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One run of t with every check but the abort proof; returns the number of
 * sections that aborted. */
static long stress_run_once(const struct stress_test *t)
{
	double t0 = stress_now();
	int n = cfg.threads;
	for (int c = 0; c < oncpu_cpu_count(); c++)
		*(intptr_t *)oncpu_ptr(stress_sig_slots, c) = 0;
	stress_current = t;
	t->setup();
	stress_workers = calloc((size_t)n, sizeof(*stress_workers));
	CHECK(stress_workers);
	CHECK(pthread_barrier_init(&stress_start, NULL, (unsigned)n + 1) == 0);
	CHECK(pthread_barrier_init(&stress_done, NULL, (unsigned)n + 1) == 0);
	CHECK(pthread_barrier_init(&stress_release, NULL, (unsigned)n + 1) == 0);
	for (int i = 0; i < n; i++) {
		stress_workers[i].idx = i;
		stress_workers[i].rng = (uint64_t)i * 0x9e3779b97f4a7c15ull + 1;
		CHECK(pthread_create(&stress_workers[i].thread, NULL, stress_worker_main,
		                     &stress_workers[i]) == 0);
	}
	stress_stop = 0;
	pthread_barrier_wait(&stress_start); /* every tid is known now */
	pthread_t dist;
	bool disturb = cfg.signal_us || cfg.inject || cfg.affinity_every;
	if (disturb)
		CHECK(pthread_create(&dist, NULL, stress_disturber, NULL) == 0);
	pthread_barrier_wait(&stress_done);
	__atomic_store_n(&stress_stop, 1, __ATOMIC_RELEASE);
	if (disturb)
		CHECK(pthread_join(dist, NULL) == 0);
	pthread_barrier_wait(&stress_release);
	long committed = 0, cmpfail = 0, aborted = 0, unavailable = 0, signals = 0;
	for (int i = 0; i < n; i++) {
		CHECK(pthread_join(stress_workers[i].thread, NULL) == 0);
		committed += stress_workers[i].committed;
		cmpfail += stress_workers[i].cmpfail;
		aborted += stress_workers[i].aborted;
		unavailable += stress_workers[i].unavailable;
		signals += stress_workers[i].signals;
	}
	t->verify();
	/* the handler's sections: exactly one add per handled signal */
	intptr_t sig_sum = 0;
	for (int c = 0; c < oncpu_cpu_count(); c++)
		sig_sum += *(intptr_t *)oncpu_ptr(stress_sig_slots, c);
	CHECK_MSG(sig_sum == signals, "%s: %ld signals handled, handler sections added %ld",
	          t->name, signals, (long)sig_sum);
	if (test_expect_rseq()) {
		CHECK_MSG(unavailable == 0, "%s: %ld sections unavailable in an rseq mode", t->name,
		          unavailable);
		CHECK(committed > 0);
	} else {
		CHECK_MSG(committed == 0 && aborted == 0 && unavailable > 0,
		          "%s: sections ran in a fallback mode (%ld committed)", t->name,
		          committed);
	}
	if (cfg.signal_us)
		CHECK_MSG(signals > 0, "%s: no signal was handled", t->name);
	if (cfg.verbose || getenv("ONCPU_STRESS_VERBOSE"))
		printf("%-14s %2d threads %8ld committed %7ld cmpfail %7ld aborted %8ld "
		       "unavailable %6ld signals %.2fs\n",
		       t->name, n, committed, cmpfail, aborted, unavailable, signals,
		       stress_now() - t0);
	pthread_barrier_destroy(&stress_start);
	pthread_barrier_destroy(&stress_done);
	pthread_barrier_destroy(&stress_release);
	free(stress_workers);
	stress_workers = NULL;
	return aborted;
}

/*
 * Run t. In an rseq mode with disturbances, sections must be seen to abort:
 * a short run (few ONCPU_STRESS_REPS, a slow emulated CPU) can end before a
 * disturbance hits a section, so t runs again, up to STRESS_ABORT_RUNS
 * times, until one did.
 */
#define STRESS_ABORT_RUNS 8
static void stress_run(const struct stress_test *t)
{
	if (cfg.only && strcmp(cfg.only, t->name) != 0)
		return;
	bool want_abort = test_expect_rseq() && (cfg.signal_us || cfg.inject);
	long aborted = 0;
	for (int run = 0; run < STRESS_ABORT_RUNS; run++) {
		aborted += stress_run_once(t);
		if (!want_abort || aborted > 0)
			break;
	}
	if (want_abort)
		CHECK_MSG(aborted > 0, "%s: no section aborted despite disturbances (%d runs)",
		          t->name, STRESS_ABORT_RUNS);
}

static void stress_usage(const char *prog)
{
	fprintf(stderr,
	        "usage: %s [-t threads] [-r reps] [-s signal_us] [-i inject] [-y n] [-a n] "
	        "[-T test] [-v]\n",
	        prog);
	exit(2);
}

/* Parse options (see the top of this file); default_reps per worker. */
static void stress_init(int argc, char **argv, long default_reps)
{
	test_allowed_cpus();
	cfg.threads = (int)test_env_long("ONCPU_STRESS_THREADS", 6L * test_online_cpus());
	cfg.reps = test_env_long("ONCPU_STRESS_REPS", default_reps);
	cfg.signal_us = test_env_long("ONCPU_STRESS_SIGNAL_US", 40);
	cfg.inject = (int)test_env_long("ONCPU_STRESS_INJECT", 1000);
	cfg.yield_every = 97;
	cfg.affinity_every = 1009;
	int opt;
	while ((opt = getopt(argc, argv, "t:r:s:i:y:a:T:v")) != -1) {
		switch (opt) {
		case 't':
			cfg.threads = atoi(optarg);
			break;
		case 'r':
			cfg.reps = atol(optarg);
			break;
		case 's':
			cfg.signal_us = atol(optarg);
			break;
		case 'i':
			cfg.inject = atoi(optarg);
			break;
		case 'y':
			cfg.yield_every = atol(optarg);
			break;
		case 'a':
			cfg.affinity_every = atol(optarg);
			break;
		case 'T':
			cfg.only = optarg;
			break;
		case 'v':
			cfg.verbose = true;
			break;
		default:
			stress_usage(argv[0]);
		}
	}
	if (cfg.threads < 1 || cfg.reps < 1)
		stress_usage(argv[0]);
	struct sigaction sa = {.sa_handler = stress_sig_handler, .sa_flags = SA_RESTART};
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	stress_sig_slots = oncpu_percpu_alloc(sizeof(intptr_t), 0);
	CHECK(stress_sig_slots);
	CHECK(oncpu_thread_rseq_active() == test_expect_rseq());
}

/* A per-index mutex for the fallback paths (index: sched_getcpu()). */
static pthread_mutex_t *stress_locks;

static TEST_UNUSED void stress_locks_init(void)
{
	if (stress_locks)
		return;
	stress_locks = calloc((size_t)oncpu_cpu_count(), sizeof(*stress_locks));
	CHECK(stress_locks);
	for (int c = 0; c < oncpu_cpu_count(); c++)
		pthread_mutex_init(&stress_locks[c], NULL);
}

/* The CPU the fallback path uses as an index. */
static TEST_UNUSED inline int stress_fallback_cpu(void)
{
	int c = sched_getcpu();
	CHECK(c >= 0 && c < oncpu_cpu_count());
	return c;
}

#endif /* ONCPU_TEST_STRESS_H */
