/* SPDX-License-Identifier: MIT */
/*
 * desched_owner.h - private: what the adaptive mutex (mutex.c) knows of
 * the desched module. A thread is named by an id (its block index: never
 * 0, at most ONCPU_DESCHED_MAX_INDEX), which outlives the thread; through
 * an id, any thread reads whether that thread runs. The mutex uses these
 * functions only, never the block's fields.
 */
#ifndef ONCPU_DESCHED_OWNER_H
#define ONCPU_DESCHED_OWNER_H

#include <stdbool.h>
#include <stdint.h>

#include "desched_pool.h"
#include "desched_provider.h"

/* This thread's id as cached: 0 until the thread asked for it,
 * ONCPU_DESCHED_INDEX_NONE when it cannot have one. One TLS load. */
static inline uint32_t _oncpu_desched_self_cached(void)
{
	return _oncpu_desched_self_index;
}

/* True for an id (not 0, not ONCPU_DESCHED_INDEX_NONE). */
static inline bool _oncpu_desched_id_valid(uint32_t id)
{
	return id - 1 < ONCPU_DESCHED_MAX_INDEX;
}

/* This thread's id, its block allocated (and registered with the
 * provider) on first use; 0 when the thread cannot have one. */
static inline uint32_t _oncpu_desched_self_id(void)
{
	uint32_t id = _oncpu_desched_self_index;
	if (__builtin_expect(id == 0, 0)) {
		_oncpu_desched_block_self();
		id = _oncpu_desched_self_index;
	}
	return id == ONCPU_DESCHED_INDEX_NONE ? 0 : id;
}

/* Is id's thread alive in this process (a fork child's copy of another
 * thread's block is not)? */
static inline bool _oncpu_desched_id_live(uint32_t id)
{
	const struct _oncpu_desched_block *blk = _oncpu_desched_block_at(id);
	return blk && __atomic_load_n(&blk->state, __ATOMIC_RELAXED) == ONCPU_DESCHED_BLOCK_LIVE;
}

/* The on-CPU word of id's thread, to read with _oncpu_desched_word_state;
 * NULL when id names no block. Valid for ever (the thread may change). */
static inline const uint32_t *_oncpu_desched_oncpu_word(uint32_t id)
{
	const struct _oncpu_desched_block *blk = _oncpu_desched_block_at(id);
	return blk ? &blk->oncpu : NULL;
}

/* What an on-CPU word says now: ONCPU_DESCHED_WORD_ON, _OFF or _UNTRACKED
 * (also for NULL: no word). */
static inline uint32_t _oncpu_desched_word_state(const uint32_t *word)
{
	return word ? __atomic_load_n(word, __ATOMIC_RELAXED) : ONCPU_DESCHED_WORD_UNTRACKED;
}

/* After the calling thread blocked (it was switched out, or should have
 * been): when the provider lost its registration, registers it again, or
 * makes its on-CPU word say untracked. Not async-signal-safe. */
void _oncpu_desched_recheck(void) __attribute__((visibility("hidden")));

#endif /* ONCPU_DESCHED_OWNER_H */
