/* SPDX-License-Identifier: MIT */
/*
 * Stress test of oncpu/mutex.h across fork(): workers contend for one lock
 * whose owners often sleep inside it (so waiters sleep, starve and ask for
 * a hand-off), while a thread that never used the lock forks, preferably at
 * a moment when a hand-off request is pending. In each child the lock is
 * exactly as fork() copied it: free, it must be taken, by the forking
 * thread (its first lock: the slow path) and then by threads the child
 * creates, with exact mutual exclusion; held by a thread that was not
 * copied, it must stay held (trylock EBUSY). A child that does not finish
 * within its own alarm is killed, and the parent fails the test (a copied
 * hand-off request naming a thread that does not exist in the child must
 * not make its waiters defer for ever).
 *
 * Options (environment): ONCPU_STRESS_SECONDS (default 5),
 * ONCPU_STRESS_THREADS (workers, default 3 x online CPUs, at least 6),
 * ONCPU_STRESS_VERBOSE.
 */
#define _GNU_SOURCE
#include <time.h>

#include "testutil.h"

#define CHILD_THREADS 4
#define CHILD_OPS     2000
#define CHILD_ALARM_S 20

static struct {
	oncpu_mutex_t m;
	long a, b;  /* a == b outside the lock */
	int inside; /* non-atomic */
	long ops;   /* under the lock */
} g = {.m = ONCPU_MUTEX_INIT};

static volatile int stop;

static void critical(long sleep)
{
	CHECK_MSG(g.inside == 0, "two threads inside the lock");
	g.inside = 1;
	long a = g.a;
	CHECK(a == g.b);
	g.a = a + 1;
	if (sleep)
		test_sleep_us(sleep);
	g.b = a + 1;
	g.ops++;
	g.inside = 0;
}

static void *worker_main(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull;
	long mine = 0;
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		uint64_t r = test_rand(&rng);
		oncpu_mutex_lock(&g.m);
		critical(r % 2 ? 100 : 0); /* owners off CPU: waiters sleep and starve */
		oncpu_mutex_unlock(&g.m);
		if ((r >> 8) % 4 == 0)
			test_sleep_us(50); /* the lock is free at times */
		mine++;
	}
	return (void *)mine;
}

static void *child_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < CHILD_OPS; i++) {
		oncpu_mutex_lock(&g.m);
		critical(i % 500 == 0 ? 50 : 0);
		oncpu_mutex_unlock(&g.m);
	}
	return NULL;
}

/* In the child: exit 0 when the lock was copied held (not ours to take), 10
 * when it was copied free and every thread took it. */
static void child_main(void)
{
	signal(SIGALRM, SIG_DFL); /* a hang ends in SIGALRM, seen by the parent */
	alarm(CHILD_ALARM_S);
	uint32_t copied = __atomic_load_n(&g.m._state, __ATOMIC_RELAXED);
	if (copied & 1) {
		CHECK(oncpu_mutex_trylock(&g.m) == EBUSY); /* its owner was not copied */
		_exit(0);
	}
	CHECK(g.inside == 0 && g.a == g.b);
	long before = g.ops;
	oncpu_mutex_lock(&g.m); /* the forking thread's first lock */
	critical(0);
	oncpu_mutex_unlock(&g.m);
	pthread_t t[CHILD_THREADS];
	for (int i = 0; i < CHILD_THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, child_thread, NULL) == 0);
	for (int i = 0; i < CHILD_THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	CHECK_MSG(g.ops == before + 1 + CHILD_THREADS * CHILD_OPS, "child: ops %ld, expected %ld",
	          g.ops, before + 1 + CHILD_THREADS * CHILD_OPS);
	CHECK(oncpu_mutex_trylock(&g.m) == 0);
	oncpu_mutex_unlock(&g.m);
	_exit(10);
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "stress.mutex_fork: watchdog: the parent hung\n";
	write(2, msg, sizeof(msg) - 1);
	_exit(3);
}

int main(void)
{
	double seconds = (double)test_env_long("ONCPU_STRESS_SECONDS", 5);
	int nworkers = (int)test_env_long("ONCPU_STRESS_THREADS", 3L * test_online_cpus());
	if (nworkers < 6)
		nworkers = 6;
	signal(SIGALRM, on_alarm);
	alarm((unsigned)seconds + 120);

	pthread_t *w = calloc((size_t)nworkers, sizeof(*w));
	CHECK(w);
	for (int i = 0; i < nworkers; i++)
		CHECK(pthread_create(&w[i], NULL, worker_main, (void *)(uintptr_t)(i + 1)) == 0);

	/* This thread forks; it never takes the lock in the parent. */
	long children = 0, took = 0, with_request = 0;
	double end = test_now_s() + seconds;
	while (test_now_s() < end) {
		/* Wait (a little) for a pending hand-off request and a free lock. */
		bool request = false;
		for (int i = 0; i < 2000 && !request; i++) {
			request = __atomic_load_n(&g.m._handoff, __ATOMIC_RELAXED) != 0 &&
			          !(__atomic_load_n(&g.m._state, __ATOMIC_RELAXED) & 1);
			if (!request && i % 64 == 63)
				test_sleep_us(10);
		}
		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0)
			child_main();
		int st;
		while (waitpid(pid, &st, 0) < 0)
			CHECK(errno == EINTR);
		CHECK_MSG(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 10),
		          "child %ld: %s%s", children, test_status_str(st),
		          WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM
		              ? " (it hung: the lock was copied free and never taken)"
		              : "");
		children++;
		took += WEXITSTATUS(st) == 10;
		with_request += request;
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	long total = 0;
	for (int i = 0; i < nworkers; i++) {
		void *r;
		CHECK(pthread_join(w[i], &r) == 0);
		total += (long)r;
	}
	CHECK_MSG(g.ops == total && g.a == total && g.b == total, "ops %ld a %ld, expected %ld",
	          g.ops, g.a, total);
	CHECK(took > 0); /* at least one child found the lock free and took it */
	if (getenv("ONCPU_STRESS_VERBOSE"))
		printf("stress.mutex_fork: %s provider %s: %d workers: %ld ops, %ld children "
		       "(%ld took the lock, %ld forked with a hand-off request pending)\n",
		       test_mode(), oncpu_desched_provider(), nworkers, total, children, took,
		       with_request);
	printf("stress.mutex_fork: all checks passed (%s)\n", test_mode());
	free(w);
	return 0;
}
