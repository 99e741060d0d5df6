/* SPDX-License-Identifier: MIT */
/*
 * Stress test of the notification blocks (oncpu/desched.h): generations of
 * short-lived threads take blocks, register entries (ENOTSUP under "none"),
 * publish their tokens and exit, while observer threads read the states of
 * live and exited threads' tokens all the time (type-stable memory: reading
 * an exited thread's block is always safe, and its token must read GONE
 * from the moment the thread was joined); a forker thread forks children
 * that check their own block and the ghosts of the parent's threads.
 * Checks: no token of a joined thread ever reads alive; a live thread's
 * token never reads GONE; tokens are never repeated; blocks are reused (the
 * indices stay below the number of threads alive at once plus a margin).
 *
 * Options (environment): ONCPU_STRESS_SECONDS (default 4),
 * ONCPU_STRESS_VERBOSE.
 */
#define _GNU_SOURCE
#include <time.h>

#include "testutil.h"

#define SLOTS 64 /* threads alive at once, at most */

struct slot {
	oncpu_desched_token_t token; /* 0: empty */
	volatile int state;          /* 0 empty, 3 being created, 5 started (token valid), 1 alive
	                                (token and thread valid), 4 being retired */
	pthread_t thread;
	volatile int release;
};

static struct slot slots[SLOTS];
static volatile int stop;
static bool tracked;
static long threads_run, observations, gone_seen, alive_seen, forks;
static uint32_t max_index;

static void *short_lived(void *arg)
{
	struct slot *s = arg;
	uint64_t *w = oncpu_desched_words();
	CHECK(w);
	oncpu_desched_token_t me = oncpu_desched_self();
	CHECK(me);
	for (int i = 0; i < ONCPU_DESCHED_WORDS_SIZE / 8; i++)
		CHECK_MSG(w[i] == 0, "a reused block's words were not cleared");
	w[0] = me;
	struct oncpu_desched_entry e[2] = {
	    {.addr = &w[1], .value = 1, .size = 8},
	    {.addr = &w[2],
	     .value = 0,
	     .resume_value = 1,
	     .size = 1,
	     .flags = ONCPU_DESCHED_F_RESUME},
	};
	int r = oncpu_desched_register(e, 2);
	CHECK_MSG(tracked ? r == 0 : r == -1 && errno == ENOTSUP, "register: %d (%s)", r,
	          r ? strerror(errno) : "ok");
	int st = oncpu_desched_state(me);
	CHECK(st == (tracked ? ONCPU_DESCHED_ON_CPU : ONCPU_DESCHED_UNTRACKED));
	s->token = me;
	__atomic_store_n(&s->state, 5, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&s->release, __ATOMIC_ACQUIRE))
		test_sleep_us(50);
	CHECK(w[0] == me); /* nobody else wrote our words */
	return NULL;
}

static void *spawner_main(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg * 77 + 1;
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		struct slot *s = &slots[test_rand(&rng) % SLOTS];
		int expect = 0;
		if (!__atomic_compare_exchange_n(&s->state, &expect, 3, false, __ATOMIC_ACQ_REL,
		                                 __ATOMIC_RELAXED)) {
			if (expect == 1 &&
			    __atomic_compare_exchange_n(&s->state, &expect, 4, false,
			                                __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
				/* retire it: release, join, then its token must read GONE */
				oncpu_desched_token_t tok = s->token;
				__atomic_store_n(&s->release, 1, __ATOMIC_RELEASE);
				CHECK(pthread_join(s->thread, NULL) == 0);
				CHECK_MSG(oncpu_desched_state(tok) == ONCPU_DESCHED_GONE,
				          "token %#llx of a joined thread is alive",
				          (unsigned long long)tok);
				s->token = 0;
				__atomic_store_n(&s->state, 0, __ATOMIC_RELEASE);
			}
			continue;
		}
		s->release = 0;
		s->token = 0;
		/* The handle goes to the slot only after pthread_create returned
		 * (the new thread may run first: musl stores the handle after
		 * clone), and the slot is published alive (1) only then, so that
		 * no other spawner joins a stale handle. */
		pthread_t t;
		CHECK(pthread_create(&t, NULL, short_lived, s) == 0);
		__atomic_fetch_add(&threads_run, 1, __ATOMIC_RELAXED);
		while (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == 3)
			sched_yield(); /* 3 -> 5 is done by the thread */
		s->thread = t;
		__atomic_store_n(&s->state, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void *observer_main(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg * 13 + 7;
	long n = 0, gone = 0, alive = 0;
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		struct slot *s = &slots[test_rand(&rng) % SLOTS];
		if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != 1)
			continue;
		oncpu_desched_token_t tok = s->token;
		int st = oncpu_desched_state(tok);
		/* alive until the spawner moves the slot on: read the state again */
		int after = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
		if (after == 1 && s->token == tok)
			CHECK_MSG(st != ONCPU_DESCHED_GONE, "a live thread's token reads GONE");
		uint32_t idx = (uint32_t)tok;
		uint32_t mx = __atomic_load_n(&max_index, __ATOMIC_RELAXED);
		while (idx > mx && !__atomic_compare_exchange_n(&max_index, &mx, idx, true,
		                                                __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			;
		n++;
		gone += st == ONCPU_DESCHED_GONE;
		alive += st != ONCPU_DESCHED_GONE;
	}
	__atomic_fetch_add(&observations, n, __ATOMIC_RELAXED);
	__atomic_fetch_add(&gone_seen, gone, __ATOMIC_RELAXED);
	__atomic_fetch_add(&alive_seen, alive, __ATOMIC_RELAXED);
	return NULL;
}

static void fork_child(void *arg)
{
	oncpu_desched_token_t me = *(oncpu_desched_token_t *)arg;
	CHECK(oncpu_desched_self() == me);
	CHECK(oncpu_desched_state(me) != ONCPU_DESCHED_GONE);
	/* every other thread of the parent is a ghost here */
	for (int i = 0; i < SLOTS; i++) {
		oncpu_desched_token_t t = slots[i].token;
		if (t && t != me)
			CHECK(oncpu_desched_state(t) == ONCPU_DESCHED_GONE);
	}
#ifndef TEST_ASAN /* ASan's allocator is not fork-safe in a threaded parent */
	/* and this process can still make threads with blocks */
	oncpu_desched_token_t tok = 0;
	struct slot s = {0};
	s.release = 1;
	pthread_t t;
	CHECK(pthread_create(&t, NULL, short_lived, &s) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	tok = s.token;
	CHECK(tok != 0 && oncpu_desched_state(tok) == ONCPU_DESCHED_GONE);
#endif
}

static void *forker_main(void *arg)
{
	(void)arg;
	oncpu_desched_token_t me = oncpu_desched_self();
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		char err[1024];
		int st = test_run_child(fork_child, &me, err, sizeof(err));
		CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork child: %s: %s",
		          test_status_str(st), err);
		forks++;
		test_sleep_us(20000);
	}
	return NULL;
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "stress.desched: watchdog: hung\n";
	write(2, msg, sizeof(msg) - 1);
	_exit(3);
}

int main(void)
{
	double seconds = (double)test_env_long("ONCPU_STRESS_SECONDS", 4);
	signal(SIGALRM, on_alarm);
	alarm((unsigned)seconds + 60);
	tracked = strcmp(oncpu_desched_provider(), "none") != 0;
	enum { SPAWNERS = 4, OBSERVERS = 4 };
	pthread_t sp[SPAWNERS], ob[OBSERVERS], fk;
	for (long i = 0; i < SPAWNERS; i++)
		CHECK(pthread_create(&sp[i], NULL, spawner_main, (void *)i) == 0);
	for (long i = 0; i < OBSERVERS; i++)
		CHECK(pthread_create(&ob[i], NULL, observer_main, (void *)i) == 0);
	CHECK(pthread_create(&fk, NULL, forker_main, NULL) == 0);
	double t0 = test_now_s();
	test_sleep_us((long)(seconds * 1e6));
	/* The reuse check below needs more threads than slots: on a slow
	 * (emulated) machine run on until there were; the watchdog bounds it. */
	while (__atomic_load_n(&threads_run, __ATOMIC_RELAXED) <= SLOTS)
		test_sleep_us(100000);
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < SPAWNERS; i++)
		CHECK(pthread_join(sp[i], NULL) == 0);
	for (int i = 0; i < OBSERVERS; i++)
		CHECK(pthread_join(ob[i], NULL) == 0);
	CHECK(pthread_join(fk, NULL) == 0);
	for (int i = 0; i < SLOTS; i++) {
		if (slots[i].state == 1) {
			oncpu_desched_token_t tok = slots[i].token;
			slots[i].release = 1;
			CHECK(pthread_join(slots[i].thread, NULL) == 0);
			CHECK(oncpu_desched_state(tok) == ONCPU_DESCHED_GONE);
		}
	}
	/* blocks are reused: at most SLOTS short-lived threads plus the
	 * SPAWNERS + OBSERVERS + forker + main threads hold blocks at once,
	 * plus the ones being retired */
	uint32_t bound = SLOTS + SPAWNERS + OBSERVERS + 2 + SPAWNERS + 1;
	CHECK_MSG(max_index <= bound,
	          "block index %u after %ld threads: blocks not reused (bound %u)", max_index,
	          threads_run, bound);
	CHECK(threads_run > SLOTS);
	CHECK(observations > 0 && alive_seen > 0);
	CHECK(forks > 0);
	if (getenv("ONCPU_STRESS_VERBOSE"))
		printf("stress.desched: %s provider %s: %.1f s: %ld threads, %ld observations "
		       "(%ld gone), %ld forks, max block index %u\n",
		       test_mode(), oncpu_desched_provider(), test_now_s() - t0, threads_run,
		       observations, gone_seen, forks, max_index);
	printf("stress.desched: all checks passed (%s)\n", test_mode());
	return 0;
}
