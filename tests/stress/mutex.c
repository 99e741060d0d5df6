/* SPDX-License-Identifier: MIT */
/*
 * Stress test of oncpu/mutex.h under oversubscription (4 x CPUs workers):
 * four mutexes, one of them hot, each guarding a non-atomic counter pair
 * and an "inside" flag checked inside the lock; workers use lock and
 * trylock, yield and sometimes sleep while holding the lock (so owners are
 * off CPU and waiters must sleep, and sleepers starve into the hand-off
 * mode), and sometimes run long on CPU inside it (waiters spin until their
 * time cap); a CPU-bound thread per CPU, pinned there, preempts owners and
 * spinners alike; a disturber sends signals to random workers and moves
 * them between CPUs; short-lived threads take the hot lock and exit, so
 * waiters read the state of owners that are gone (type-stable blocks reused
 * with a new generation). Exact totals at the end; a watchdog fails the
 * test if it hangs.
 *
 * Options (environment): ONCPU_STRESS_SECONDS (default 5),
 * ONCPU_STRESS_THREADS (default 4 x online CPUs), ONCPU_STRESS_VERBOSE.
 */
#define _GNU_SOURCE
#include <time.h>

#include "testutil.h"

#define NLOCKS 4

struct guarded {
	oncpu_mutex_t m;
	long a, b;  /* a == b outside the lock */
	int inside; /* non-atomic */
	pid_t owner;
	long trylock_busy;
	char pad[64];
};

static struct guarded locks[NLOCKS];
static volatile int stop;
static int nworkers;
static double seconds;

struct worker {
	pthread_t thread;
	pid_t tid;
	uint64_t rng;
	long ops[NLOCKS];
	long sleeps;
	volatile long signals;
};
static struct worker *workers;
static __thread struct worker *self_worker;

static long churn_ops, churn_threads; /* under locks[0] */
static long starving_seen, waiters_seen;

static void on_signal(int sig)
{
	(void)sig;
	if (self_worker)
		self_worker->signals++;
}

static void critical(struct guarded *g, pid_t tid, uint64_t r)
{
	CHECK_MSG(g->inside == 0, "two threads inside the lock (owner %d, me %d)", g->owner, tid);
	g->inside = 1;
	g->owner = tid;
	long a = g->a;
	CHECK(a == g->b);
	g->a = a + 1;
	if (r % 1024 < 2) {
		test_sleep_us(20 + (long)((r >> 20) % 200)); /* owner off CPU */
	} else if (r % 1024 < 18) {
		sched_yield();
	} else if (r % 1024 < 26) {
		/* long on CPU: waiters spin while it runs (or until preempted) */
		double until = test_now_s() + (double)(10 + (r >> 20) % 40) * 1e-6;
		while (test_now_s() < until)
			;
	} else {
		for (volatile int i = 0; i < (int)((r >> 40) % 64); i++)
			;
	}
	CHECK(g->owner == tid && g->inside == 1);
	g->b = a + 1;
	g->inside = 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	self_worker = w;
	w->tid = test_gettid();
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		uint64_t r = test_rand(&w->rng);
		int k = r % 2 ? 0 : (int)((r >> 8) % NLOCKS); /* lock 0 is hot */
		struct guarded *g = &locks[k];
		if (r % 8 == 3) {
			while (oncpu_mutex_trylock(&g->m) != 0) {
				__atomic_fetch_add(&g->trylock_busy, 1, __ATOMIC_RELAXED);
				sched_yield();
			}
		} else {
			oncpu_mutex_lock(&g->m);
		}
		critical(g, w->tid, r);
		oncpu_mutex_unlock(&g->m);
		w->ops[k]++;
	}
	return NULL;
}

/* Short-lived owners of the hot lock: they exit right after unlocking. */
static void *churn_main(void *arg)
{
	(void)arg;
	pid_t tid = test_gettid();
	uint64_t rng = (uint64_t)tid * 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < 50; i++) {
		oncpu_mutex_lock(&locks[0].m);
		critical(&locks[0], tid, (test_rand(&rng) & ~1023ULL) | 100); /* no sleep */
		churn_ops++;
		oncpu_mutex_unlock(&locks[0].m);
	}
	oncpu_mutex_lock(&locks[0].m);
	churn_threads++;
	oncpu_mutex_unlock(&locks[0].m);
	return NULL;
}

static void *spawner_main(void *arg)
{
	(void)arg;
	long spawned = 0;
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		pthread_t t[4];
		for (int i = 0; i < 4; i++)
			CHECK(pthread_create(&t[i], NULL, churn_main, NULL) == 0);
		for (int i = 0; i < 4; i++)
			CHECK(pthread_join(t[i], NULL) == 0);
		spawned += 4;
	}
	return (void *)spawned;
}

/* A competing CPU-bound thread, pinned to one CPU. */
static void *hog_main(void *arg)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET((int)(intptr_t)arg, &set);
	sched_setaffinity(0, sizeof(set), &set);
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
		;
	return NULL;
}

static void *disturber_main(void *arg)
{
	(void)arg;
	uint64_t rng = 42;
	long n = 0;
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		struct worker *w = &workers[test_rand(&rng) % (uint64_t)nworkers];
		syscall(SYS_tgkill, getpid(), w->tid, SIGUSR1);
		if (n % 16 == 0 && test_allowed_count() > 1) {
			cpu_set_t set;
			CPU_ZERO(&set);
			CPU_SET(test_allowed_nth(
			            (int)(test_rand(&rng) % (uint64_t)test_allowed_count())),
			        &set);
			sched_setaffinity(w->tid, sizeof(set), n % 64 ? &set : test_allowed_cpus());
		}
		/* internal state, to show which paths ran (see src/mutex.c) */
		uint32_t handoff = __atomic_load_n(&locks[0].m._handoff, __ATOMIC_RELAXED);
		uint32_t state = __atomic_load_n(&locks[0].m._state, __ATOMIC_RELAXED);
		starving_seen += handoff != 0;
		waiters_seen += (state >> 1) & 1;
		test_sleep_us(50);
		n++;
	}
	return NULL;
}

static void on_alarm(int sig)
{
	(void)sig;
	char msg[200];
	int len =
	    snprintf(msg, sizeof(msg),
	             "stress.mutex: watchdog: no completion after the deadline "
	             "(lock states %#x %#x %#x %#x)\n",
	             locks[0].m._state, locks[1].m._state, locks[2].m._state, locks[3].m._state);
	write(2, msg, (size_t)len);
	_exit(3);
}

int main(void)
{
	test_allowed_cpus();
	seconds = (double)test_env_long("ONCPU_STRESS_SECONDS", 5);
	nworkers = (int)test_env_long("ONCPU_STRESS_THREADS", 4L * test_online_cpus());
	if (nworkers < 8)
		nworkers = 8;
	signal(SIGALRM, on_alarm);
	alarm((unsigned)seconds + 60);
	struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	for (int k = 0; k < NLOCKS; k++)
		CHECK(oncpu_mutex_init(&locks[k].m) == 0);

	workers = calloc((size_t)nworkers, sizeof(*workers));
	CHECK(workers);
	for (int i = 0; i < nworkers; i++) {
		workers[i].rng = (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull;
		CHECK(pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) == 0);
	}
	for (int i = 0; i < nworkers; i++)
		while (!__atomic_load_n(&workers[i].tid, __ATOMIC_RELAXED))
			test_sleep_us(100);
	pthread_t spawner, disturber, *hogs = calloc((size_t)test_allowed_count(), sizeof(*hogs));
	CHECK(hogs);
	for (int i = 0; i < test_allowed_count(); i++)
		CHECK(pthread_create(&hogs[i], NULL, hog_main,
		                     (void *)(intptr_t)test_allowed_nth(i)) == 0);
	CHECK(pthread_create(&spawner, NULL, spawner_main, NULL) == 0);
	CHECK(pthread_create(&disturber, NULL, disturber_main, NULL) == 0);
	double t0 = test_now_s();
	test_sleep_us((long)(seconds * 1e6));
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	double t_stop = test_now_s();
	void *spawned;
	CHECK(pthread_join(spawner, &spawned) == 0);
	CHECK(pthread_join(disturber, NULL) == 0);
	for (int i = 0; i < test_allowed_count(); i++)
		CHECK(pthread_join(hogs[i], NULL) == 0);
	free(hogs);
	long total[NLOCKS] = {0}, signals = 0, all = 0;
	for (int i = 0; i < nworkers; i++) {
		CHECK(pthread_join(workers[i].thread, NULL) == 0);
		for (int k = 0; k < NLOCKS; k++)
			total[k] += workers[i].ops[k];
		signals += workers[i].signals;
	}
	double drain = test_now_s() - t_stop;
	total[0] += churn_ops;
	for (int k = 0; k < NLOCKS; k++) {
		CHECK_MSG(locks[k].a == total[k] && locks[k].b == total[k],
		          "lock %d: a %ld b %ld, expected %ld", k, locks[k].a, locks[k].b,
		          total[k]);
		CHECK(locks[k].inside == 0);
		CHECK(oncpu_mutex_trylock(&locks[k].m) == 0);
		oncpu_mutex_unlock(&locks[k].m);
		CHECK(total[k] > 0);
		all += total[k];
	}
	CHECK(churn_threads == (long)spawned);
	CHECK_MSG(signals > 0, "no signal was handled");
	/* every worker got the lock repeatedly: no one starved */
	for (int i = 0; i < nworkers; i++) {
		long mine = 0;
		for (int k = 0; k < NLOCKS; k++)
			mine += workers[i].ops[k];
		CHECK_MSG(mine > 0, "worker %d never got a lock", i);
	}
	/* stopping must not wait for long: sleeping owners are woken */
	CHECK_MSG(drain < 10, "the workers needed %.1f s to drain", drain);
	if (getenv("ONCPU_STRESS_VERBOSE"))
		printf(
		    "stress.mutex: %s provider %s: %d workers %.1f s: %ld ops (hot %ld, churn %ld "
		    "by %ld exited threads), %ld signals, trylock busy %ld, hand-off requests seen "
		    "%ld, "
		    "sleepers seen %ld, drain %.3f s\n",
		    test_mode(), oncpu_desched_provider(), nworkers, t_stop - t0, all, total[0],
		    churn_ops, (long)spawned, signals, locks[0].trylock_busy, starving_seen,
		    waiters_seen, drain);
	printf("stress.mutex: all checks passed (%s)\n", test_mode());
	return 0;
}
