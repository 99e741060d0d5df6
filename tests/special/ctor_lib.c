/* SPDX-License-Identifier: MIT */
/*
 * A shared library whose constructor uses oncpu before main, and before
 * any initializer of liboncpu could have run when the program lists
 * liboncpu first and this library does not depend on it (ctor_early: the
 * dynamic loader then initializes this library first). The results are
 * read by the program (ctor_main.c).
 */
#include <oncpu.h>

struct ctor_results {
	int ran;
	int cpu, vcpu, cpu_count;
	int active;
	int registration;
	long sum;
	struct oncpu_counter *counter;
};

__attribute__((visibility("default"))) struct ctor_results ctor_results;

#define CTOR_ADDS 1000

__attribute__((constructor)) static void use_oncpu_early(void)
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
