/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of oncpu/counter.h: new/add/sum/free, negative deltas and
 * wrap-around, every CPU, independence of counters, zero after reuse,
 * threads, the exported out-of-line add, and rseq threads racing with
 * fallback threads (a foreign rseq registration forces the fallback) on
 * the same counter.
 */
#define _GNU_SOURCE
#include <limits.h>

#include "testutil.h"

static void test_basic(void)
{
	struct oncpu_counter *c = oncpu_counter_new();
	CHECK(c);
	CHECK(oncpu_counter_sum(c) == 0);
	oncpu_counter_add(c, 1);
	CHECK(oncpu_counter_sum(c) == 1);
	oncpu_counter_add(c, -1);
	CHECK(oncpu_counter_sum(c) == 0);
	oncpu_counter_add(c, -1000);
	CHECK(oncpu_counter_sum(c) == -1000);
	oncpu_counter_add(c, 0);
	CHECK(oncpu_counter_sum(c) == -1000);
	oncpu_counter_add(c, 1000);
	/* wraps modulo 2^64 like the adds: LONG_MAX + LONG_MAX + 2 == 0 */
	oncpu_counter_add(c, LONG_MAX);
	CHECK(oncpu_counter_sum(c) == LONG_MAX);
	oncpu_counter_add(c, LONG_MAX);
	oncpu_counter_add(c, 2);
	CHECK(oncpu_counter_sum(c) == 0);
	oncpu_counter_add(c, LONG_MIN);
	CHECK(oncpu_counter_sum(c) == LONG_MIN);
	oncpu_counter_destroy(c);
	oncpu_counter_destroy(NULL);
}

/* Adds on every CPU land somewhere the sum sees; counters are independent. */
static void test_every_cpu(void)
{
	enum { N = 5 };
	struct oncpu_counter *c[N];
	for (int i = 0; i < N; i++) {
		c[i] = oncpu_counter_new();
		CHECK(c[i]);
		for (int j = 0; j < i; j++)
			CHECK(c[i] != c[j]);
	}
	long expect[N] = {0};
	for (int k = 0; k < test_allowed_count(); k++) {
		int cpu = test_allowed_nth(k);
		CHECK(test_pin(cpu) == 0);
		for (int i = 0; i < N; i++) {
			long d = (cpu + 1) * 1000 + i;
			oncpu_counter_add(c[i], d);
			expect[i] += d;
			CHECK(oncpu_counter_sum(c[i]) == expect[i]);
		}
	}
	test_unpin();
	for (int i = 0; i < N; i++)
		CHECK(oncpu_counter_sum(c[i]) == expect[i]);
	/* freeing one leaves the others alone */
	oncpu_counter_destroy(c[2]);
	for (int i = 0; i < N; i++)
		if (i != 2)
			CHECK(oncpu_counter_sum(c[i]) == expect[i]);
	/* a new counter (probably the freed memory) starts at 0 */
	c[2] = oncpu_counter_new();
	CHECK(c[2] && oncpu_counter_sum(c[2]) == 0);
	for (int i = 0; i < N; i++)
		oncpu_counter_destroy(c[i]);
}

/* Reused memory starts at zero, also where a fallback slot was written. */
static void test_reuse(void)
{
	for (int round = 0; round < 50; round++) {
		struct oncpu_counter *c = oncpu_counter_new();
		CHECK(c);
		CHECK_MSG(oncpu_counter_sum(c) == 0, "round %d: new counter at %ld", round,
		          oncpu_counter_sum(c));
		for (int k = 0; k < test_allowed_count(); k++) {
			CHECK(test_pin(test_allowed_nth(k)) == 0);
			oncpu_counter_add(c, 12345 + round);
		}
		test_unpin();
		oncpu_counter_destroy(c);
	}
}

/* ---- threads ---- */

#define THREADS 8
#define ADDS    50000

static struct oncpu_counter *shared;

static void *add_thread(void *arg)
{
	long d = (long)(intptr_t)arg;
	for (int i = 0; i < ADDS; i++)
		oncpu_counter_add(shared, d);
	return NULL;
}

static void test_threads(void)
{
	shared = oncpu_counter_new();
	CHECK(shared);
	pthread_t t[THREADS];
	long expect = 0;
	for (int i = 0; i < THREADS; i++) {
		long d = (i % 2) ? i : -i * 3;
		expect += d * ADDS;
		CHECK(pthread_create(&t[i], NULL, add_thread, (void *)(intptr_t)d) == 0);
	}
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	CHECK_MSG(oncpu_counter_sum(shared) == expect, "sum %ld, expected %ld",
	          oncpu_counter_sum(shared), expect);
	oncpu_counter_destroy(shared);
}

/* The exported oncpu_counter_add (for dlsym and FFI) is the same operation. */
#undef oncpu_counter_add
extern void oncpu_counter_add_exported(struct oncpu_counter *, long) __asm__("oncpu_counter_add");
extern int oncpu_cpu_exported(void) __asm__("oncpu_cpu");
extern int oncpu_vcpu_exported(void) __asm__("oncpu_vcpu");

static void test_exported(void)
{
	struct oncpu_counter *c = oncpu_counter_new();
	CHECK(c);
	for (int i = 0; i < 1000; i++) {
		oncpu_counter_add_exported(c, 2);
		oncpu_counter_add(c, 1);
	}
	CHECK(oncpu_counter_sum(c) == 3000);
	oncpu_counter_destroy(c);
	for (int k = 0; k < test_allowed_count(); k++) {
		int cpu = test_allowed_nth(k);
		CHECK(test_pin(cpu) == 0);
		CHECK(oncpu_cpu_exported() == cpu);
		CHECK(oncpu_vcpu_exported() == oncpu_vcpu());
	}
	test_unpin();
}

/* A NULL counter (oncpu(7)): destroy ignores it; add (inline and exported)
 * and sum cannot report an error, so they report it and abort, on every CPU
 * (the inline section would otherwise write at NULL + cpu * stride). */
static struct oncpu_counter *volatile null_counter;

static void add_null(void *cpu)
{
	CHECK(test_pin((int)(intptr_t)cpu) == 0);
	oncpu_counter_add(null_counter, 1);
}

static void add_null_exported(void *cpu)
{
	CHECK(test_pin((int)(intptr_t)cpu) == 0);
	oncpu_counter_add_exported(null_counter, 1);
}

static void sum_null(void *unused)
{
	(void)unused;
	printf("%ld\n", oncpu_counter_sum(null_counter));
}

static void expect_null_abort(void (*fn)(void *), void *arg, const char *expect)
{
	char err[1024];
	int st = test_run_child(fn, arg, err, sizeof(err));
	CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: %s", test_status_str(st), err);
	CHECK_MSG(strstr(err, expect), "said \"%s\", expected \"%s\"", err, expect);
}

static void test_null(void)
{
	oncpu_counter_destroy(NULL);
	for (int k = 0; k < test_allowed_count() && k < 4; k++) {
		intptr_t cpu = test_allowed_nth(k);
		expect_null_abort(add_null, (void *)cpu,
		                  "oncpu_counter_add(NULL, 1): NULL counter");
		expect_null_abort(add_null_exported, (void *)cpu, "oncpu_counter_add(NULL, 1)");
	}
	expect_null_abort(sum_null, NULL, "oncpu_counter_sum(NULL): NULL counter");
}

/*
 * rseq threads and fallback threads adding to the same counter at once.
 * In rseq-own mode a thread that registered a foreign rseq area first gets
 * EBUSY from oncpu and takes the atomic fallback, while the others run
 * sections: the two paths must never lose an add.
 */
#define MIX_THREADS 6
#define MIX_ADDS    100000

static struct oncpu_counter *mixed;
static pthread_barrier_t mix_barrier;

static void *mix_thread(void *arg)
{
	bool foreign = (intptr_t)arg & 1;
	static __thread struct test_rseq_area area;
	if (foreign) {
		CHECK(test_raw_rseq(&area, 0) == 0);
		CHECK(!oncpu_thread_rseq_active());
	} else {
		CHECK(oncpu_thread_rseq_active());
	}
	pthread_barrier_wait(&mix_barrier);
	for (int i = 0; i < MIX_ADDS; i++)
		oncpu_counter_add(mixed, 1);
	if (foreign)
		CHECK(test_raw_rseq(&area, ONCPU_RSEQ_FLAG_UNREGISTER) == 0);
	return NULL;
}

static void test_mixed_paths(void)
{
	if (!test_mode_is("rseq-own"))
		return;
	mixed = oncpu_counter_new();
	CHECK(mixed);
	CHECK(pthread_barrier_init(&mix_barrier, NULL, MIX_THREADS) == 0);
	pthread_t t[MIX_THREADS];
	for (intptr_t i = 0; i < MIX_THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, mix_thread, (void *)i) == 0);
	for (int i = 0; i < MIX_THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	CHECK_MSG(oncpu_counter_sum(mixed) == (long)MIX_THREADS * MIX_ADDS, "sum %ld",
	          oncpu_counter_sum(mixed));
	pthread_barrier_destroy(&mix_barrier);
	oncpu_counter_destroy(mixed);
}

/* A sum taken while adds run lies between the sums before and after. */
static volatile int reading;

static void *monotonic_reader(void *arg)
{
	struct oncpu_counter *c = arg;
	long last = 0;
	while (__atomic_load_n(&reading, __ATOMIC_ACQUIRE)) {
		long s = oncpu_counter_sum(c);
		CHECK_MSG(s >= last, "sum went back from %ld to %ld", last, s);
		CHECK(s <= (long)THREADS * ADDS);
		last = s;
	}
	return NULL;
}

static void test_sum_while_adding(void)
{
	shared = oncpu_counter_new();
	CHECK(shared);
	reading = 1;
	pthread_t r, t[THREADS];
	CHECK(pthread_create(&r, NULL, monotonic_reader, shared) == 0);
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, add_thread, (void *)(intptr_t)1) == 0);
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	__atomic_store_n(&reading, 0, __ATOMIC_RELEASE);
	CHECK(pthread_join(r, NULL) == 0);
	CHECK(oncpu_counter_sum(shared) == (long)THREADS * ADDS);
	oncpu_counter_destroy(shared);
}

int main(void)
{
	test_allowed_cpus();
	test_basic();
	CHECK(oncpu_thread_rseq_active() == test_expect_rseq());
	test_every_cpu();
	test_reuse();
	test_threads();
	test_exported();
	test_null();
	test_mixed_paths();
	test_sum_while_adding();
	printf("counter: all checks passed (%s)\n", test_mode());
	return 0;
}
