/* SPDX-License-Identifier: MIT */
/*
 * slot.h - the locked path shared by stack, ring and cache (private).
 *
 * Every per-CPU slot of those structures holds a lock word that critical
 * sections compare with 0 before they commit. Threads that cannot run
 * sections, and operations on another CPU's slot, take that lock and then
 * make sure that no section that read the lock as free is still in flight
 * ("exclusion"). The protocol and its argument are in <oncpu/stack.h>.
 */
#ifndef ONCPU_SLOT_H
#define ONCPU_SLOT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* The structures' "a section ran on me" bit (flags word of each handle). */
#define DS_SECTIONS 1u
ONCPU_STATIC_ASSERT(_ONCPU_STACK_SECTIONS == DS_SECTIONS, "stack flag");
ONCPU_STATIC_ASSERT(_ONCPU_RING_SECTIONS == DS_SECTIONS, "ring flag");
ONCPU_STATIC_ASSERT(_ONCPU_CACHE_SECTIONS == DS_SECTIONS, "cache flag");

/*
 * True when this thread can run sections in `mode`; then the structure's
 * flags carry DS_SECTIONS, set (with a full fence) before the caller's first
 * section on it. False: fallback mode, take the locked path.
 */
bool _oncpu_ds_sections(unsigned *flags, int mode);

/*
 * Lock word values (the protocol is in <oncpu/stack.h>, step 4 for parking):
 *   0          free: sections may commit on the slot
 *   even > 0   free and parked: every section fails its guard compare, so
 *              threads with sections take the lock too and a holder needs no
 *              exclusion step; the value counts the operations that threads
 *              with sections did under it since a thread without sections
 *              last did one (DS_PARKED + 2 * count)
 *   odd        held; unlocking stores the value without DS_HELD, which the
 *              holder may change meanwhile (park, count, unpark)
 */
#define DS_HELD   ((intptr_t)1)
#define DS_PARKED ((intptr_t)2)
/* Operations by threads with sections that unpark a parked slot. */
#define DS_UNPARK_AFTER 1024

/* Take the lock word: CAS of a free value v to v | DS_HELD (sequentially
 * consistent, see stack.h), spinning then yielding while it is held.
 * Returns v: 0 when sections may still be in flight (exclusion needed). */
intptr_t _oncpu_ds_lock(intptr_t *lock);
/* Release store of the held value without DS_HELD. */
void _oncpu_ds_unlock(intptr_t *lock);
/* Before a section on a slot: wait while its lock word is held. Returns
 * true when the slot is parked or held by the code a signal handler
 * interrupted (take the locked path instead), false when sections may run
 * on it. */
bool _oncpu_ds_parked(intptr_t *lock);

/*
 * Lock the slot this thread should use and exclude sections from it;
 * returns the slot (pcpu's instance), its lock held; *idx receives its
 * index. Threads without sections use the slot of the CPU they run on;
 * threads with sections (a section found the slot parked) the slot of
 * their id in `mode`; a signal handler whose thread holds that slot's lock
 * another slot. Release with _oncpu_ds_unlock_current.
 */
void *_oncpu_ds_lock_current(void *pcpu, size_t lock_off, int mode, const unsigned *flags,
                             int *idx);
void _oncpu_ds_unlock_current(intptr_t *lock);

/* Lock slot idx (any CPU) and exclude sections from it. */
void *_oncpu_ds_lock_slot(void *pcpu, size_t lock_off, int mode, const unsigned *flags, int idx);

/* After locking slots: exclude sections from all of them at once. False
 * when that needs per-slot exclusion (_oncpu_ds_exclude_slot) instead. */
bool _oncpu_ds_exclude_all(const unsigned *flags);
void _oncpu_ds_exclude_slot(int mode, const unsigned *flags, int idx);

/*
 * fork() safety: a structure registers its per-CPU item (and the cache its
 * depot mutex). Around fork() every registered mutex is held; in the child,
 * lock words held by threads that do not exist there are released (every
 * locked operation leaves its slot consistent after each of its stores, so
 * a slot is whole wherever its holder stopped).
 */
bool _oncpu_ds_register(void *pcpu, size_t lock_off, pthread_mutex_t *mutex);
void _oncpu_ds_unregister(void *pcpu);

/* Number of slots: oncpu_cpu_count(). */
static inline int _oncpu_ds_slots(void)
{
	return _oncpu_possible_cpus();
}

/* Relaxed accesses to words that sections and other threads share. */
#define DS_LOAD(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define DS_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

#endif /* ONCPU_SLOT_H */
