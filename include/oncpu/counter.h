/* SPDX-License-Identifier: MIT */
/*
 * oncpu/counter.h - per-CPU counters.
 *
 * oncpu_counter_add() adds to the current CPU's slot in one critical section
 * (no atomic instruction); oncpu_counter_sum() adds up every CPU's slot.
 * Threads in fallback mode add atomically to a second slot of the same CPU,
 * so rseq and fallback threads of one process never race on one word.
 *
 * Concurrency: add, sum and other adds run concurrently from any thread;
 * sum is exact when no add runs (quiescent), otherwise it returns a value
 * between the sums before and after the concurrent adds. destroy must not
 * run concurrently with anything on the same counter.
 *
 * NULL handle (oncpu(7)): destroy ignores it; add and sum, which cannot
 * report an error, report it on stderr and abort.
 */
#ifndef ONCPU_COUNTER_H
#define ONCPU_COUNTER_H

#include <oncpu/config.h>
#if ONCPU_INLINE_FASTPATHS
#include <oncpu/cs.h>
#endif

ONCPU_BEGIN_DECLS

struct oncpu_counter; /* opaque; the handle of a per-CPU item */

/* oncpu_counter_new - a counter at 0; NULL with errno ENOMEM. */
ONCPU_API struct oncpu_counter *oncpu_counter_new(void);
/* oncpu_counter_sum - the total (see above). */
ONCPU_API long oncpu_counter_sum(struct oncpu_counter *c);
/* oncpu_counter_destroy - release a counter (NULL is ignored). */
ONCPU_API void oncpu_counter_destroy(struct oncpu_counter *c);
/* Deprecated alias, removed in the next release. */
ONCPU_API void oncpu_counter_free(struct oncpu_counter *c)
    ONCPU_DEPRECATED("use oncpu_counter_destroy");

/* oncpu_counter_add - add delta (may be negative). A function of liboncpu;
 * with ONCPU_INLINE_FASTPATHS (oncpu/config.h) a macro over its fast path. */
ONCPU_API void oncpu_counter_add(struct oncpu_counter *c, long delta);

#if ONCPU_INLINE_FASTPATHS
ONCPU_API void _oncpu_counter_add_slow(struct oncpu_counter *c, long delta);

ONCPU_INLINE void _oncpu_counter_add_fast(struct oncpu_counter *c, long delta)
{
	/* The section would write at c + cpu * stride: NULL must not get there. */
	if (ONCPU_UNLIKELY(c == NULL)) {
		_oncpu_counter_add_slow(c, delta);
		return;
	}
	int r;
	do
		r = oncpu_cs_percpu_add(ONCPU_CPU, c, delta);
	while (ONCPU_UNLIKELY(r == ONCPU_CS_ABORTED));
	if (ONCPU_UNLIKELY(r != ONCPU_CS_COMMITTED))
		_oncpu_counter_add_slow(c, delta);
}
#define oncpu_counter_add(c, delta) _oncpu_counter_add_fast(c, delta)
#endif /* ONCPU_INLINE_FASTPATHS */

ONCPU_END_DECLS

#endif /* ONCPU_COUNTER_H */
