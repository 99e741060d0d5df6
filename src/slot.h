/* SPDX-License-Identifier: MIT */
/*
 * slot.h - the per-CPU slot layer under stack, ring and cache (private).
 *
 * Every per-CPU slot of those structures holds a lock word that critical
 * sections compare with 0 before they commit. Threads that cannot run
 * sections, and operations on another CPU's slot, take that lock and then
 * make sure that no section that read the lock as free is still in flight
 * ("exclusion"). The protocol and why it is sound: doc/slot-protocol.md.
 *
 * A structure describes its slots once (struct slot_kind), builds a
 * struct slot_set from its handle for each call, and writes each operation
 * as a struct slot_op: a section body and a locked body. _oncpu_slot_run
 * decides which runs where; the structure never touches the protocol.
 */
#ifndef ONCPU_SLOT_H
#define ONCPU_SLOT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/*
 * What every handle starts with: void *_pcpu, int _mode, unsigned _flags
 * (asserted in slot.c). Bit DS_SECTIONS of _flags is the "sections ran on
 * this structure" gate of the protocol (step 3a); only slot.c sets it.
 */
#define DS_SECTIONS 1u
ONCPU_STATIC_ASSERT(_ONCPU_STACK_SECTIONS == DS_SECTIONS, "stack flag");
ONCPU_STATIC_ASSERT(_ONCPU_RING_SECTIONS == DS_SECTIONS, "ring flag");
ONCPU_STATIC_ASSERT(_ONCPU_CACHE_SECTIONS == DS_SECTIONS, "cache flag");

/* A structure's slots, described once: SLOT_KIND(handle type, slot type,
 * slot alignment, offset of a mutex in the handle or -1). */
#define SLOT_KIND(handle, slot, align, mutex)                                                      \
	{                                                                                          \
		sizeof(handle), (align), offsetof(slot, lock), (mutex)                             \
	}
struct slot_kind {
	size_t handle_size;  /* bytes of the handle (allocated cache-line aligned) */
	size_t slot_align;   /* alignment of a slot in per-CPU memory */
	size_t lock_off;     /* offset of the lock word in a slot */
	ptrdiff_t mutex_off; /* a mutex in the handle held across fork(), or -1 */
};

/* One structure, as the slot layer sees it during a call. */
struct slot_set {
	const struct slot_kind *kind;
	void *pcpu;      /* the handle's _pcpu */
	int mode;        /* the handle's _mode */
	unsigned *flags; /* the handle's _flags */
	void **fast;     /* cache only: where the gate publishes pcpu for the
	                    inline paths (the field of its mode), or NULL */
};

/* Where a handle keeps what the slot layer reads (asserted in slot.c). */
#define SLOT_PCPU_OFF  0
#define SLOT_MODE_OFF  sizeof(void *)
#define SLOT_FLAGS_OFF (sizeof(void *) + sizeof(int))

/* The set of a handle of kind (fast: NULL; the cache fills it in). */
static inline struct slot_set _oncpu_slot_set(const struct slot_kind *kind, void *handle)
{
	char *h = (char *)handle;
	return (struct slot_set){kind, *(void **)(h + SLOT_PCPU_OFF), *(int *)(h + SLOT_MODE_OFF),
	                         (unsigned *)(h + SLOT_FLAGS_OFF), NULL};
}

/*
 * The constructors' shared part: a zeroed handle of kind->handle_size
 * bytes with its mutex (if any) initialized, slots of slot_size bytes for
 * every possible CPU in _pcpu, _mode from the creation flags, registered
 * for fork(). NULL with errno ENOMEM. Released by _oncpu_slot_delete.
 */
void *_oncpu_slot_new(const struct slot_kind *kind, size_t slot_size, unsigned flags);
void _oncpu_slot_delete(const struct slot_kind *kind, void *handle);

/*
 * The gate: true when this thread can run sections on set; then the flag
 * DS_SECTIONS is set (with a full fence before the caller's first section)
 * and *set->fast published. False: fallback mode, take the locked path.
 */
bool _oncpu_slot_sections(const struct slot_set *set);

/* Results of a section body, shared with the inline paths (oncpu/cs.h,
 * whose _ONCPU_DS_LOCKED and _ONCPU_DS_SLOW also mean "again" here). */
#define SLOT_DONE  _ONCPU_DS_DONE  /* finished (committed, or a final answer) */
#define SLOT_AGAIN _ONCPU_DS_AGAIN /* aborted or the slot changed: run again */

/*
 * An operation on one slot, as a section and as a lock holder. Embed it
 * first in a struct with the operation's arguments and results.
 *   section  one attempt as a critical section on slot (id id): SLOT_DONE
 *            ends the operation; anything else runs it again, or locked
 *            when the slot is parked.
 *   locked   the operation under the slot's lock, sections excluded.
 */
struct slot_op {
	int (*section)(struct slot_op *op, void *slot, int id);
	void (*locked)(struct slot_op *op, void *slot);
};

/* Run op on the slot this thread should use: as sections while it can,
 * otherwise locked: a thread without sections locks the slot of the CPU it
 * runs on, a thread with sections (its slot parked) the slot of its id, a
 * signal handler whose thread holds that slot another one. */
void _oncpu_slot_run(const struct slot_set *set, struct slot_op *op);
/* Run op on slot idx from any thread: as sections while this thread runs
 * there, otherwise under that slot's lock (with exclusion). */
void _oncpu_slot_run_on(const struct slot_set *set, struct slot_op *op, int idx);

/*
 * Lock word values (doc/slot-protocol.md, step 4 for parking):
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

/* The lock word of a slot of set. */
static inline intptr_t *_oncpu_slot_lock_word(const struct slot_set *set, void *slot)
{
	return (intptr_t *)((char *)slot + set->kind->lock_off);
}

/*
 * Lock every slot for which want(slot) is true (the others are only read,
 * so their memory stays uncommitted), exclude sections from all of them at
 * once, call each(slot, arg) on every one and unlock it.
 */
void _oncpu_slot_each_locked(const struct slot_set *set, bool (*want)(void *slot),
                             void (*each)(void *slot, void *arg), void *arg);

/* Number of slots: oncpu_cpu_count(). */
static inline int _oncpu_ds_slots(void)
{
	return _oncpu_possible_cpus();
}

/* Relaxed accesses to words that sections and other threads share. */
#define DS_LOAD(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define DS_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

#endif /* ONCPU_SLOT_H */
