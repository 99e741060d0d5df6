/* SPDX-License-Identifier: MIT */
/*
 * exports.c - out-of-line copies of the inline fast paths, so that
 * programs that cannot use the headers (dlsym, FFI) still find them.
 */
#define _ONCPU_BUILDING_EXPORTS 1
#include "internal.h"

int oncpu_cpu(void)
{
	return _oncpu_cpu_fast();
}

int oncpu_vcpu(void)
{
	return _oncpu_vcpu_fast();
}

void oncpu_counter_add(struct oncpu_counter *c, long delta)
{
	_oncpu_counter_add_fast(c, delta);
}
