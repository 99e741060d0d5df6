/* SPDX-License-Identifier: MIT */
/*
 * unit/deprecated.c - the names replaced in this release (CHANGELOG.md)
 * still compile, link against liboncpu's exported symbols and do what their
 * replacements do. Built with -Wno-deprecated-declarations (tests/CMakeLists.txt);
 * that using them warns is special.compile.*.deprecated_* (tests/special).
 */
#define _GNU_SOURCE
#include "testutil.h"

/* The flags are the one flag: the same value, the same indexing. */
static void test_flags(void)
{
	CHECK(ONCPU_STACK_VCPU == ONCPU_F_VCPU);
	CHECK(ONCPU_RING_VCPU == ONCPU_F_VCPU);
	CHECK(ONCPU_CACHE_VCPU == ONCPU_F_VCPU);

	struct oncpu_stack *s = oncpu_stack_new_flags(ONCPU_STACK_VCPU);
	CHECK(s && s->_mode == _oncpu_mode_ONCPU_VCPU);
	struct oncpu_ring *r = oncpu_ring_new_flags(4, ONCPU_RING_VCPU);
	CHECK(r && r->_mode == _oncpu_mode_ONCPU_VCPU);
	struct oncpu_cache *c = oncpu_cache_new_flags(32, 0, ONCPU_CACHE_VCPU);
	CHECK(c);
	struct oncpu_cache_stats st;
	CHECK(oncpu_cache_get_stats(c, &st) == 0);
	CHECK(st.flags == ONCPU_F_VCPU);
	oncpu_cache_destroy(c);
	oncpu_ring_free(r);
	oncpu_stack_free(s);
}

/* The release functions release (a use after release would show under the
 * sanitizer build; here: a structure used up to its release, then NULL). */
static void test_release(void)
{
	struct oncpu_counter *c = oncpu_counter_new();
	CHECK(c);
	oncpu_counter_add(c, 5);
	CHECK(oncpu_counter_sum(c) == 5);
	oncpu_counter_free(c);
	oncpu_counter_free(NULL);

	struct oncpu_stack_node n;
	struct oncpu_stack *s = oncpu_stack_new();
	CHECK(s);
	oncpu_stack_push(s, &n);
	CHECK(oncpu_stack_drain(s) == &n);
	oncpu_stack_free(s);
	oncpu_stack_free(NULL);

	struct oncpu_ring *r = oncpu_ring_new(2);
	CHECK(r);
	CHECK(oncpu_ring_push(r, &n) == 0);
	oncpu_ring_free(r); /* with a pointer in it: dropped, not freed */
	oncpu_ring_free(NULL);
}

static void test_thread(void)
{
	CHECK(oncpu_rseq_active() == oncpu_thread_rseq_active());
	CHECK(oncpu_rseq_active() == test_expect_rseq());
}

int main(void)
{
	test_flags();
	test_release();
	test_thread();
	printf("deprecated: all checks passed (%s)\n", test_mode());
	return 0;
}
