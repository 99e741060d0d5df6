/* SPDX-License-Identifier: MIT */
/*
 * Stress tests of the counters (oncpu/counter.h) under forced aborts (see
 * tests/support/stress.h): random positive and negative adds to several
 * counters with exact final sums; sums read while adds run (monotonic,
 * bounded); counters created, used and freed while neighbours in the same
 * per-CPU chunk are hammered; and, in rseq-own mode, threads forced into
 * the fallback (a foreign rseq registration) adding to the same counters
 * as threads that run sections. Part of the adds go straight through
 * oncpu_cs_percpu_add, the counter's fast path, to count aborts.
 */
#define _GNU_SOURCE
#include "stress.h"

#define NCOUNTERS   8
#define MAX_WORKERS 1024

static struct oncpu_counter *counters[NCOUNTERS];
/* what each worker added to each counter (wrapping like the counter) */
static unsigned long expected[MAX_WORKERS][NCOUNTERS];

/* The counter fast path with its results counted; the API on fallback. */
static void add_counted(struct stress_worker *w, struct oncpu_counter *c, long d)
{
	int r;
	for (;;) {
		r = oncpu_cs_percpu_add(ONCPU_CPU, c, d);
		if (r != ONCPU_CS_ABORTED)
			break;
		w->aborted++;
	}
	if (r == ONCPU_CS_COMMITTED) {
		w->committed++;
		return;
	}
	CHECK(r == ONCPU_CS_UNAVAILABLE);
	w->unavailable++;
	oncpu_counter_add(c, d);
}

static void counters_new(void)
{
	for (int i = 0; i < NCOUNTERS; i++) {
		counters[i] = oncpu_counter_new();
		CHECK(counters[i] && oncpu_counter_sum(counters[i]) == 0);
	}
	memset(expected, 0, sizeof(expected));
}

static void counters_check_and_free(const char *test)
{
	for (int i = 0; i < NCOUNTERS; i++) {
		unsigned long want = 0;
		for (int t = 0; t < cfg.threads; t++)
			want += expected[t][i];
		long sum = oncpu_counter_sum(counters[i]);
		CHECK_MSG(sum == (long)want, "%s: counter %d sums to %ld, expected %ld", test, i,
		          sum, (long)want);
		oncpu_counter_destroy(counters[i]);
	}
}

/* ---- random adds ---- */

static void adds_work(struct stress_worker *w)
{
	for (long i = 0; i < cfg.reps; i++) {
		stress_disturb(w, i);
		uint64_t x = test_rand(&w->rng);
		int k = (int)(x % NCOUNTERS);
		long d = (long)((x >> 8) % 2001) - 1000;
		if (x >> 60 == 0)
			d = (long)(x >> 1); /* now and then a huge delta: sums wrap */
		if (i % 2)
			add_counted(w, counters[k], d);
		else
			oncpu_counter_add(counters[k], d);
		expected[w->idx][k] += (unsigned long)d;
	}
}

static void adds_verify(void)
{
	counters_check_and_free("adds");
}

/* ---- sums while adding: worker 0 reads, the others add 1 ---- */

static volatile int adders_left;

static void sums_setup(void)
{
	counters_new();
	adders_left = cfg.threads - 1;
}

static void sums_work(struct stress_worker *w)
{
	if (w->idx == 0 && cfg.threads > 1) {
		long last[NCOUNTERS] = {0}, reads = 0;
		long bound = (long)(cfg.threads - 1) * cfg.reps;
		while (__atomic_load_n(&adders_left, __ATOMIC_ACQUIRE) > 0 || reads < 10) {
			for (int k = 0; k < NCOUNTERS; k++) {
				long s = oncpu_counter_sum(counters[k]);
				CHECK_MSG(s >= last[k], "sum of counter %d went back: %ld -> %ld",
				          k, last[k], s);
				CHECK_MSG(s <= bound, "sum %ld above every add made (%ld)", s,
				          bound);
				last[k] = s;
			}
			reads++;
		}
		return;
	}
	for (long i = 0; i < cfg.reps; i++) {
		stress_disturb(w, i);
		int k = (int)(test_rand(&w->rng) % NCOUNTERS);
		add_counted(w, counters[k], 1);
		expected[w->idx][k]++;
	}
	__atomic_fetch_sub(&adders_left, 1, __ATOMIC_RELEASE);
}

static void sums_verify(void)
{
	counters_check_and_free("sums");
}

/* ---- churn: private counters created and freed next to busy ones ---- */

static void churn_work(struct stress_worker *w)
{
	struct oncpu_counter *mine = NULL;
	long mine_sum = 0;
	for (long i = 0; i < cfg.reps; i++) {
		stress_disturb(w, i);
		uint64_t x = test_rand(&w->rng);
		if (!mine) {
			mine = oncpu_counter_new();
			CHECK(mine);
			CHECK_MSG(oncpu_counter_sum(mine) == 0, "new counter starts at %ld",
			          oncpu_counter_sum(mine));
			mine_sum = 0;
		}
		long d = (long)(x % 100) + 1;
		add_counted(w, mine, d);
		mine_sum += d;
		int k = (int)((x >> 16) % NCOUNTERS);
		oncpu_counter_add(counters[k], 1);
		expected[w->idx][k]++;
		if ((x >> 32) % 64 == 0) {
			CHECK_MSG(oncpu_counter_sum(mine) == mine_sum, "private counter %ld != %ld",
			          oncpu_counter_sum(mine), mine_sum);
			oncpu_counter_destroy(mine);
			mine = NULL;
		}
	}
	if (mine) {
		CHECK(oncpu_counter_sum(mine) == mine_sum);
		oncpu_counter_destroy(mine);
	}
}

static void churn_verify(void)
{
	counters_check_and_free("churn");
}

/* ---- rseq threads and fallback threads on the same counters ---- */

static __thread struct test_rseq_area foreign_area;

static bool is_foreign(const struct stress_worker *w)
{
	return w->idx % 2 == 1;
}

static void mixed_thread_init(struct stress_worker *w)
{
	if (!is_foreign(w)) {
		CHECK(oncpu_thread_init() == 0);
		return;
	}
	CHECK(test_raw_rseq(&foreign_area, 0) == 0);
	CHECK(oncpu_thread_init() == -1 && errno == EBUSY);
}

static void mixed_thread_fini(struct stress_worker *w)
{
	if (is_foreign(w))
		CHECK(test_raw_rseq(&foreign_area, ONCPU_RSEQ_FLAG_UNREGISTER) == 0);
}

static void mixed_work(struct stress_worker *w)
{
	for (long i = 0; i < cfg.reps; i++) {
		stress_disturb(w, i);
		uint64_t x = test_rand(&w->rng);
		int k = (int)(x % NCOUNTERS);
		long d = (long)((x >> 8) % 7) - 2;
		if (is_foreign(w))
			oncpu_counter_add(counters[k], d); /* the atomic fallback */
		else
			add_counted(w, counters[k], d);
		expected[w->idx][k] += (unsigned long)d;
	}
}

static void mixed_verify(void)
{
	counters_check_and_free("mixed");
}

static const struct stress_test tests[] = {
    {"adds", counters_new, adds_work, adds_verify, NULL, NULL},
    {"sums", sums_setup, sums_work, sums_verify, NULL, NULL},
    {"churn", counters_new, churn_work, churn_verify, NULL, NULL},
};

static const struct stress_test mixed_test = {"mixed",      counters_new,      mixed_work,
                                              mixed_verify, mixed_thread_init, mixed_thread_fini};

int main(int argc, char **argv)
{
	stress_init(argc, argv, 300000);
	CHECK(cfg.threads <= MAX_WORKERS);
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		stress_run(&tests[i]);
	/* a foreign registration forces the fallback only where oncpu registers its own area */
	if (test_mode_is("rseq-own"))
		stress_run(&mixed_test);
	printf("stress counter: all checks passed (%s, %d threads, %ld reps)\n", test_mode(),
	       cfg.threads, cfg.reps);
	return 0;
}
