/* SPDX-License-Identifier: MIT */
/*
 * desched_pool.h - private: the pool of notification blocks
 * (common/desched_block.h) that desched.c allocates from, and each thread's
 * cached block index. For desched.c and desched_owner.h only.
 */
#ifndef ONCPU_DESCHED_POOL_H
#define ONCPU_DESCHED_POOL_H

#include <stddef.h>

#include "desched_block.h"

/* The pool: chunks of 64 blocks, mapped on demand, never unmapped; block i
 * (1-based; slot 0 of chunk 0 is never used) is slot i % 64 of chunk i / 64. */
#define ONCPU_DESCHED_CHUNK_SHIFT 6
#define ONCPU_DESCHED_MAX_CHUNKS  16384 /* 1 M blocks: live threads plus ghosts */
#define ONCPU_DESCHED_MAX_INDEX   ((ONCPU_DESCHED_MAX_CHUNKS << ONCPU_DESCHED_CHUNK_SHIFT) - 1)
extern struct _oncpu_desched_block *_oncpu_desched_chunks[ONCPU_DESCHED_MAX_CHUNKS]
    __attribute__((visibility("hidden")));

/* The block of index i, or NULL when i was never allocated. Lock-free; the
 * result stays mapped forever (it may belong to another thread by now). */
static inline struct _oncpu_desched_block *_oncpu_desched_block_at(_oncpu_u32 i)
{
	if (i == 0 || i > ONCPU_DESCHED_MAX_INDEX)
		return NULL;
	/* Acquire: pairs with the release that published the chunk. */
	struct _oncpu_desched_block *c = __atomic_load_n(
	    &_oncpu_desched_chunks[i >> ONCPU_DESCHED_CHUNK_SHIFT], __ATOMIC_ACQUIRE);
	return c ? c + (i & ((1U << ONCPU_DESCHED_CHUNK_SHIFT) - 1)) : NULL;
}

/* This thread's block index, cached (the mutex's fast path reads it): 0
 * until the thread asked for its block, ONCPU_DESCHED_INDEX_NONE when it
 * cannot have one (the thread is exiting, or ENOMEM). */
#define ONCPU_DESCHED_INDEX_NONE 0xFFFFFFFFU
extern __thread _oncpu_u32 _oncpu_desched_self_index
    __attribute__((visibility("hidden"), tls_model("initial-exec")));

#endif /* ONCPU_DESCHED_POOL_H */
