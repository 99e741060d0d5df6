/* SPDX-License-Identifier: MIT */
/*
 * deprecated.c - the names replaced in this release, kept exported for one
 * more release so that programs built against them still link and run
 * (CHANGELOG.md). Each is the function that replaced it.
 */
#include "internal.h"

void oncpu_counter_free(struct oncpu_counter *c)
{
	oncpu_counter_destroy(c);
}

void oncpu_stack_free(struct oncpu_stack *s)
{
	oncpu_stack_destroy(s);
}

void oncpu_ring_free(struct oncpu_ring *r)
{
	oncpu_ring_destroy(r);
}

bool oncpu_rseq_active(void)
{
	return oncpu_thread_rseq_active();
}
