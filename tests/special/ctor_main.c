/* SPDX-License-Identifier: MIT */
/*
 * Checks what the constructor of ctor_lib.c (or, built with CTOR_IN_MAIN,
 * a constructor of this program linked with the static liboncpu) computed
 * with oncpu before main, then keeps using its counter from main and from
 * threads: exact sums.
 */
#define _GNU_SOURCE
#include "testutil.h"

struct ctor_results {
	int ran;
	int cpu, vcpu, cpu_count;
	int active;
	int registration;
	long sum;
	struct oncpu_counter *counter;
};

#define CTOR_ADDS 1000

#ifdef CTOR_IN_MAIN
static struct ctor_results ctor_results;

/* priority 101: before every constructor without a priority */
__attribute__((constructor(101))) static void use_oncpu_early(void)
{
	ctor_results.cpu = oncpu_cpu();
	ctor_results.vcpu = oncpu_vcpu();
	ctor_results.cpu_count = oncpu_cpu_count();
	ctor_results.active = oncpu_thread_rseq_active();
	ctor_results.registration = (int)oncpu_thread_registration();
	struct oncpu_counter *c = oncpu_counter_new();
	if (c) {
		for (int i = 0; i < CTOR_ADDS; i++)
			oncpu_counter_add(c, 1);
		ctor_results.sum = oncpu_counter_sum(c);
	}
	ctor_results.counter = c;
	ctor_results.ran = 1;
}
#else
extern struct ctor_results ctor_results;
#endif

#define THREADS 4
#define ADDS    50000

static void *adder(void *arg)
{
	for (int i = 0; i < ADDS; i++)
		oncpu_counter_add(arg, 1);
	return NULL;
}

int main(void)
{
	const struct ctor_results *r = &ctor_results;
	CHECK(r->ran);
	CHECK(r->cpu_count == oncpu_cpu_count());
	CHECK(r->cpu >= 0 && r->cpu < r->cpu_count);
	CHECK(r->vcpu >= 0 && r->vcpu < r->cpu_count);
	CHECK_MSG(r->active == test_expect_rseq(), "rseq active %d in the constructor", r->active);
	CHECK(r->registration == (int)test_expected_registration());
	CHECK_MSG(r->counter && r->sum == CTOR_ADDS, "constructor sum %ld", r->sum);
	CHECK(oncpu_thread_rseq_active() == test_expect_rseq());

	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, adder, r->counter) == 0);
	adder(r->counter);
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	CHECK(oncpu_counter_sum(r->counter) == CTOR_ADDS + (THREADS + 1) * ADDS);
	oncpu_counter_destroy(r->counter);
	printf("constructor: all checks passed (%s)\n", test_mode());
	return 0;
}
