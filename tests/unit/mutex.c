/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of oncpu/mutex.h: the static initializer, trylock's EBUSY,
 * destroy, the owner named by the lock word, mutual exclusion with a
 * non-atomic counter at 4 x CPUs, a waiter that sleeps while the owner
 * sleeps inside the lock and is woken promptly, fairness (a sleeper gets
 * the lock within a bound while others hammer it), owners that exit while
 * waiters read their state, an owner that exits holding the lock (its
 * block reused by a running thread: waiters must still end up asleep), and
 * fork (a lock held by the forking thread,
 * one held by a thread that is not copied, waiter state copied from the
 * parent, a hand-off request copied from the parent), and oncpu-bench's
 * private "ignore the provider" mark (src/mutex_hooks.h: included here for
 * that), which must survive the mutex's own updates of the word it is in.
 */
#define _GNU_SOURCE
#include <time.h>

#include "mutex_hooks.h"
#include "testutil.h"

static oncpu_mutex_t gm = ONCPU_MUTEX_INIT;

static void *trylock_main(void *arg)
{
	oncpu_mutex_t *m = arg;
	CHECK(oncpu_mutex_trylock(m) == EBUSY);
	return NULL;
}

static void test_basic(void)
{
	oncpu_mutex_t zero;
	memset(&zero, 0, sizeof(zero));
	oncpu_mutex_t init = ONCPU_MUTEX_INIT;
	CHECK(memcmp(&zero, &init, sizeof(zero)) == 0); /* zeroed memory is a free mutex */
	CHECK(oncpu_mutex_init(&init) == 0);

	oncpu_mutex_lock(&gm);
	/* the lock word names this thread's block */
	CHECK(gm._owner == (uint32_t)oncpu_desched_self());
	CHECK(oncpu_mutex_trylock(&gm) == EBUSY); /* not recursive */
	CHECK(oncpu_mutex_destroy(&gm) == EBUSY);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, trylock_main, &gm) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	oncpu_mutex_unlock(&gm);
	CHECK(gm._state == 0);
	CHECK(oncpu_mutex_trylock(&gm) == 0);
	oncpu_mutex_unlock(&gm);
	CHECK(oncpu_mutex_destroy(&gm) == 0);
	for (int i = 0; i < 1000; i++) {
		oncpu_mutex_lock(&init);
		oncpu_mutex_unlock(&init);
	}
}

/* ---- mutual exclusion ---- */

struct shared {
	oncpu_mutex_t m;
	long a, b;  /* a == b outside the lock */
	int inside; /* non-atomic: 1 inside the lock */
	long iters;
	int sleep_every;
};

static void *hammer_main(void *arg)
{
	struct shared *s = arg;
	for (long i = 0; i < s->iters; i++) {
		bool try = i % 7 == 3;
		if (try) {
			while (oncpu_mutex_trylock(&s->m) != 0)
				sched_yield();
		} else {
			oncpu_mutex_lock(&s->m);
		}
		CHECK(s->inside == 0);
		s->inside = 1;
		long a = s->a;
		CHECK(a == s->b);
		s->a = a + 1;
		if (s->sleep_every && i % s->sleep_every == 0)
			test_sleep_us(100);
		else if (i % 101 == 0)
			sched_yield();
		s->b = a + 1;
		s->inside = 0;
		oncpu_mutex_unlock(&s->m);
	}
	return NULL;
}

static void run_hammer(int threads, long iters, int sleep_every, bool ignore_provider)
{
	struct shared s = {.m = ONCPU_MUTEX_INIT, .iters = iters, .sleep_every = sleep_every};
	if (ignore_provider)
		_oncpu_mutex_ignore_provider(&s.m);
	pthread_t t[256];
	CHECK(threads <= 256);
	for (int i = 0; i < threads; i++)
		CHECK(pthread_create(&t[i], NULL, hammer_main, &s) == 0);
	for (int i = 0; i < threads; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	CHECK_MSG(s.a == threads * iters && s.b == s.a, "a %ld b %ld expected %ld", s.a, s.b,
	          threads * iters);
	CHECK(!(s.m._state & 1)); /* free (a stale WAITERS is allowed) */
	if (ignore_provider) {
		/* Waiters of untracked owners updated the spin estimate (or the
		 * defer) in the same word, and kept the mark. */
		uint32_t spins = s.m._spins;
		CHECK_MSG(spins & _ONCPU_MUTEX_SPINS_IGNORE_PROVIDER, "mark lost: _spins %#x",
		          spins);
		CHECK_MSG(spins != _ONCPU_MUTEX_SPINS_IGNORE_PROVIDER, "_spins never updated");
	}
}

static void test_exclusion(void)
{
	int n = 4 * test_online_cpus();
	if (n > 64)
		n = 64;
	run_hammer(n, 20000, 0, false);
	run_hammer(n, 200, 50, false); /* owners that sleep inside the lock */
	run_hammer(n, 20000, 0, true);
}

/* A waiter blocked behind a sleeping owner is woken when it unlocks. */
static volatile double acquired_at;
static void *late_waiter(void *arg)
{
	oncpu_mutex_t *m = arg;
	oncpu_mutex_lock(m);
	acquired_at = test_now_s();
	oncpu_mutex_unlock(m);
	return NULL;
}

static void test_wakeup(void)
{
	oncpu_mutex_t m = ONCPU_MUTEX_INIT;
	for (int round = 0; round < 5; round++) {
		oncpu_mutex_lock(&m);
		acquired_at = 0;
		pthread_t t;
		CHECK(pthread_create(&t, NULL, late_waiter, &m) == 0);
		/* the waiter spins out and announces itself (however long a
		 * loaded machine takes to run it) */
		while (!((__atomic_load_n(&m._state, __ATOMIC_RELAXED) & 2) ||
		         __atomic_load_n(&m._handoff, __ATOMIC_RELAXED) != 0))
			test_sleep_us(1000);
		CHECK(acquired_at == 0);
		double released = test_now_s();
		oncpu_mutex_unlock(&m);
		CHECK(pthread_join(t, NULL) == 0);
		CHECK(acquired_at >= released);
	}
}

/* ---- fairness: a sleeper is not starved by threads that hammer ---- */

struct fair {
	oncpu_mutex_t m;
	volatile int stop;
	long count;
};

static void *fair_hammer(void *arg)
{
	struct fair *f = arg;
	while (!__atomic_load_n(&f->stop, __ATOMIC_RELAXED)) {
		oncpu_mutex_lock(&f->m);
		f->count++;
		for (volatile int i = 0; i < 50; i++)
			;
		oncpu_mutex_unlock(&f->m);
	}
	return NULL;
}

static void test_fairness(void)
{
	struct fair f = {.m = ONCPU_MUTEX_INIT};
	int n = 2 * test_online_cpus();
	pthread_t t[64];
	if (n > 64)
		n = 64;
	for (int i = 0; i < n; i++)
		CHECK(pthread_create(&t[i], NULL, fair_hammer, &f) == 0);
	test_sleep_us(20000);
	double worst = 0;
	for (int i = 0; i < 50; i++) {
		test_sleep_us(1000);
		double t0 = test_now_s();
		oncpu_mutex_lock(&f.m);
		double waited = test_now_s() - t0;
		oncpu_mutex_unlock(&f.m);
		if (waited > worst)
			worst = waited;
	}
	__atomic_store_n(&f.stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < n; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	printf("mutex: fairness: worst wait %.2f ms among %d hammering threads\n", worst * 1e3, n);
	/* No time is asserted: a waiter starved for good never returns from
	 * oncpu_mutex_lock() above, and the test fails on its time-out. */
	CHECK(f.count > 0);
}

/* ---- owners that exit while waiters read their state ---- */

struct churn {
	oncpu_mutex_t m;
	long total;
	volatile int stop;
};

static void *churn_owner(void *arg)
{
	struct churn *c = arg;
	for (int i = 0; i < 20; i++) {
		oncpu_mutex_lock(&c->m);
		c->total++;
		if (i == 19)
			test_sleep_us(50); /* waiters read this block while its owner exits */
		oncpu_mutex_unlock(&c->m);
	}
	return NULL; /* exits right after the unlock: its block is released */
}

static void *churn_waiter(void *arg)
{
	struct churn *c = arg;
	long mine = 0;
	while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED)) {
		oncpu_mutex_lock(&c->m);
		c->total++;
		mine++;
		oncpu_mutex_unlock(&c->m);
	}
	return (void *)mine;
}

static void test_owner_exit(void)
{
	struct churn c = {.m = ONCPU_MUTEX_INIT};
	pthread_t w[4];
	for (int i = 0; i < 4; i++)
		CHECK(pthread_create(&w[i], NULL, churn_waiter, &c) == 0);
	long owners = 0;
	double end = test_now_s() + 0.5;
	while (test_now_s() < end) {
		pthread_t t[8];
		for (int i = 0; i < 8; i++)
			CHECK(pthread_create(&t[i], NULL, churn_owner, &c) == 0);
		for (int i = 0; i < 8; i++)
			CHECK(pthread_join(t[i], NULL) == 0);
		owners += 8;
	}
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELAXED);
	long waited = 0;
	for (int i = 0; i < 4; i++) {
		void *r;
		CHECK(pthread_join(w[i], &r) == 0);
		waited += (long)r;
	}
	CHECK_MSG(c.total == owners * 20 + waited, "total %ld, expected %ld", c.total,
	          owners * 20 + waited);
}

/* Run fn in a child that must exit 0; its alarm (SIGALRM) means `hang`. */
static void expect_child_ok(void (*fn)(void *), const char *hang)
{
	char err[2048];
	int st = test_run_child(fn, NULL, err, sizeof(err));
	bool hung = WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM;
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s%s%s%s: %s", test_status_str(st),
	          hung ? " (" : "", hung ? hang : "", hung ? ")" : "", err);
}

/*
 * An owner that exits holding the lock: the lock stays held (as with a
 * non-robust pthread mutex). Its block goes to a new thread that runs
 * without end, so the lock names an owner that reads "running" for ever:
 * the waiters' spin must still end, and every waiter fall asleep. In a
 * child process, which exits with the waiters blocked; a waiter that never
 * sleeps shows as the child's alarm.
 */
static oncpu_mutex_t orphan_m = ONCPU_MUTEX_INIT;
static volatile int orphan_stop;

static void *orphan_owner(void *arg)
{
	(void)arg;
	oncpu_mutex_lock(&orphan_m);
	return NULL; /* exits holding it */
}

static void *orphan_reuser(void *arg)
{
	uint32_t *index = arg;
	__atomic_store_n(index, (uint32_t)oncpu_desched_self(), __ATOMIC_RELEASE);
	while (!__atomic_load_n(&orphan_stop, __ATOMIC_RELAXED))
		;
	return NULL;
}

static void *orphan_waiter(void *arg)
{
	pid_t *tid = arg;
	__atomic_store_n(tid, test_gettid(), __ATOMIC_RELEASE);
	oncpu_mutex_lock(&orphan_m);
	CHECK_MSG(0, "a waiter got a lock that nobody released");
	return NULL;
}

/* Is thread tid of this process asleep (state S)? */
static bool thread_sleeps(pid_t tid)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	FILE *f = fopen(path, "r");
	CHECK(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *end = strrchr(buf, ')');
	CHECK(end && end[1] == ' ');
	return end[2] == 'S';
}

static void orphan_child(void *arg)
{
	(void)arg;
	signal(SIGALRM, SIG_DFL);
	alarm(30);
	pthread_t owner, reuser, w[8];
	CHECK(pthread_create(&owner, NULL, orphan_owner, NULL) == 0);
	CHECK(pthread_join(owner, NULL) == 0);
	CHECK(orphan_m._state & 1);
	uint32_t reuser_index = 0;
	CHECK(pthread_create(&reuser, NULL, orphan_reuser, &reuser_index) == 0);
	while (!__atomic_load_n(&reuser_index, __ATOMIC_ACQUIRE))
		test_sleep_us(100);
	/* the lock's owner field names a thread that runs */
	CHECK_MSG(reuser_index == orphan_m._owner, "block %u not reused (owner %u)", reuser_index,
	          orphan_m._owner);
	int n = 2 * test_online_cpus();
	if (n > 8)
		n = 8;
	pid_t tids[8] = {0};
	for (int i = 0; i < n; i++)
		CHECK(pthread_create(&w[i], NULL, orphan_waiter, &tids[i]) == 0);
	for (;;) {
		int asleep = 0;
		for (int i = 0; i < n; i++)
			asleep +=
			    __atomic_load_n(&tids[i], __ATOMIC_ACQUIRE) && thread_sleeps(tids[i]);
		if (asleep == n)
			break;
		test_sleep_us(1000);
	}
	CHECK(orphan_m._state & 1);
	_exit(0); /* the waiters stay blocked: nobody will release the lock */
}

static void test_owner_exit_holding(void)
{
	expect_child_ok(orphan_child, "a waiter never fell asleep");
}

/* ---- fork ---- */

static oncpu_mutex_t fork_held_by_other = ONCPU_MUTEX_INIT;
/* held by the forking thread while contenders spin and sleep on it */
static oncpu_mutex_t fork_contended = ONCPU_MUTEX_INIT;
static volatile int other_release;
static volatile int contenders_stop;

static void *other_holder(void *arg)
{
	(void)arg;
	oncpu_mutex_lock(&fork_held_by_other);
	while (!__atomic_load_n(&other_release, __ATOMIC_ACQUIRE))
		test_sleep_us(1000);
	oncpu_mutex_unlock(&fork_held_by_other);
	return NULL;
}

static long contended_total;
static void *contender(void *arg)
{
	long n = (long)arg;
	for (long i = 0; i < n || (n == 0 && !__atomic_load_n(&contenders_stop, __ATOMIC_RELAXED));
	     i++) {
		oncpu_mutex_lock(&fork_contended);
		contended_total++;
		oncpu_mutex_unlock(&fork_contended);
	}
	return NULL;
}

static void fork_child(void *arg)
{
	(void)arg;
	/* held by this thread in the parent: held by it here, and releasable;
	 * the parent's waiters (spinner count, WAITERS) do not exist here */
	CHECK(fork_contended._owner == (uint32_t)oncpu_desched_self());
	CHECK(oncpu_mutex_trylock(&fork_contended) == EBUSY);
	oncpu_mutex_unlock(&fork_contended);
	CHECK(oncpu_mutex_trylock(&fork_contended) == 0);
	oncpu_mutex_unlock(&fork_contended);
	/* held by a thread that was not copied: held for ever, like pthread */
	CHECK(oncpu_mutex_trylock(&fork_held_by_other) == EBUSY);
	/* and the lock works under contention */
	long before = contended_total;
	pthread_t t[8];
	for (int i = 0; i < 8; i++)
		CHECK(pthread_create(&t[i], NULL, contender, (void *)2000L) == 0);
	for (int i = 0; i < 8; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	CHECK(contended_total == before + 8 * 2000);
}

static void test_fork(void)
{
	pthread_t other, cont[6];
	CHECK(pthread_create(&other, NULL, other_holder, NULL) == 0);
	while (oncpu_mutex_trylock(&fork_held_by_other) == 0) {
		oncpu_mutex_unlock(&fork_held_by_other);
		test_sleep_us(100);
	}
	for (int i = 0; i < 6; i++)
		CHECK(pthread_create(&cont[i], NULL, contender, (void *)0L) == 0);
	for (int round = 0; round < 10; round++) {
		oncpu_mutex_lock(&fork_contended);
		test_sleep_us(2000); /* contenders are spinning and sleeping now */
		char err[2048];
		int st = test_run_child(fork_child, NULL, err, sizeof(err));
		CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork child: %s: %s",
		          test_status_str(st), err);
		oncpu_mutex_unlock(&fork_contended);
		test_sleep_us(1000);
	}
	__atomic_store_n(&contenders_stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 6; i++)
		CHECK(pthread_join(cont[i], NULL) == 0);
	__atomic_store_n(&other_release, 1, __ATOMIC_RELEASE);
	CHECK(pthread_join(other, NULL) == 0);
	CHECK(oncpu_mutex_trylock(&fork_held_by_other) == 0);
	oncpu_mutex_unlock(&fork_held_by_other);
}

/*
 * A hand-off request copied by fork() while the lock was free: fork() lands
 * between an unlock's release and its hand-off (or a starving sleeper's
 * request and its own take), so the child's copy holds a free lock and a
 * request naming a thread that was not copied. Built here directly: the
 * child stores the index of a parent thread's block, as fork() would have
 * copied it. The child's lockers must not defer to that request for ever.
 */
static volatile int ghost_release;
static void *ghost_main(void *arg)
{
	/* gets its block, which is a ghost in the child */
	__atomic_store_n((uint32_t *)arg, (uint32_t)oncpu_desched_self(), __ATOMIC_RELEASE);
	while (!__atomic_load_n(&ghost_release, __ATOMIC_ACQUIRE))
		test_sleep_us(1000);
	return NULL;
}

static uint32_t stale_index;

static void stale_handoff_child(void *arg)
{
	(void)arg;
	signal(SIGALRM, SIG_DFL); /* a hang ends the child with SIGALRM */
	alarm(10);
	CHECK(!(fork_contended._state & 1));
	__atomic_store_n(&fork_contended._handoff, stale_index, __ATOMIC_RELAXED);
	long before = contended_total;
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		CHECK(pthread_create(&t[i], NULL, contender, (void *)1000L) == 0);
	for (int i = 0; i < 4; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	CHECK(contended_total == before + 4 * 1000);
	CHECK(fork_contended._handoff == 0);
}

static void test_fork_stale_handoff(void)
{
	pthread_t ghost;
	uint32_t index = 0;
	CHECK(pthread_create(&ghost, NULL, ghost_main, &index) == 0);
	while (!__atomic_load_n(&index, __ATOMIC_ACQUIRE))
		test_sleep_us(100);
	stale_index = index;
	expect_child_ok(stale_handoff_child, "hung on the copied request");
	__atomic_store_n(&ghost_release, 1, __ATOMIC_RELEASE);
	CHECK(pthread_join(ghost, NULL) == 0);
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "mutex: watchdog: the test hung\n";
	write(2, msg, sizeof(msg) - 1);
	_exit(3);
}

int main(void)
{
	signal(SIGALRM, on_alarm);
	alarm(120);
	test_basic();
	test_exclusion();
	test_wakeup();
	test_fairness();
	test_owner_exit();
	test_owner_exit_holding();
	test_fork();
	test_fork_stale_handoff();
	printf("mutex: all checks passed (%s, provider %s)\n", test_mode(),
	       oncpu_desched_provider());
	return 0;
}
