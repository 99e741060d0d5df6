/* SPDX-License-Identifier: MIT */
/* The plugin of special.unload_embedded: liboncpu.a linked into it, used
 * by a program that does not link liboncpu. */
#include <oncpu.h>

long plugin_run(long n);

/* Adds n to a new counter from inline sections; the sum, or -1. */
long plugin_run(long n)
{
	struct oncpu_counter *c = oncpu_counter_new();
	if (!c)
		return -1;
	for (long i = 0; i < n; i++)
		oncpu_counter_add(c, 1);
	long sum = oncpu_counter_sum(c);
	oncpu_counter_destroy(c);
	return sum;
}
