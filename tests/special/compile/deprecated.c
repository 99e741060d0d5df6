/* SPDX-License-Identifier: MIT */
/*
 * The names replaced in this release warn when used (CHANGELOG.md):
 * compile_check.cmake compiles this file with -Werror once per CASE_*.
 * CASE_OK (their replacements) must compile; each other case uses one old
 * name and must fail with the deprecation message that names the new one.
 */
#include <oncpu.h>

int compile_case(void);

int compile_case(void)
{
	unsigned flags = 0;
	int r = 0;
#if defined(CASE_OK)
	flags = ONCPU_F_VCPU;
	oncpu_counter_destroy(NULL);
	oncpu_stack_destroy(NULL);
	oncpu_ring_destroy(NULL);
	oncpu_cache_destroy(NULL);
	r = oncpu_thread_rseq_active();
#elif defined(CASE_COUNTER_FREE)
	oncpu_counter_free(NULL);
#elif defined(CASE_STACK_FREE)
	oncpu_stack_free(NULL);
#elif defined(CASE_RING_FREE)
	oncpu_ring_free(NULL);
#elif defined(CASE_RSEQ_ACTIVE)
	r = oncpu_rseq_active();
#elif defined(CASE_STACK_VCPU)
	flags = ONCPU_STACK_VCPU;
#elif defined(CASE_RING_VCPU)
	flags = ONCPU_RING_VCPU;
#elif defined(CASE_CACHE_VCPU)
	flags = ONCPU_CACHE_VCPU;
#endif
	return r + (int)flags;
}
