/* SPDX-License-Identifier: MIT */
/*
 * oncpu/cache.h - fixed-size object cache with per-CPU magazines.
 *
 * Layout (Bonwick's magazines, tcmalloc's per-CPU arrays):
 *   per CPU   an array of up to M free objects and its count, in per-CPU
 *             memory (committed only on the CPUs that use the cache);
 *   depot     a mutex-protected list of full magazines (arrays of B = M/2
 *             objects) and of empty ones, shared by all CPUs;
 *   slabs     memory obtained with mmap, carved into objects B at a time
 *             when the depot has none.
 * alloc takes the top of the current CPU's array and free puts an object
 * there: one critical section each, no atomic instruction. When the array
 * is empty, alloc takes a full magazine from the depot and copies it in
 * (one section); when it is full, free copies B - 1 objects out into a
 * magazine for the depot (one section). After either the array is about
 * half full, so at least B/2 operations separate two visits to the depot.
 * M is 128 for objects of up to 256 bytes and shrinks for larger ones so
 * that a CPU caches about 32 KiB (never fewer than 2 objects).
 *
 * Objects freed on one CPU and allocated on another move through the depot.
 * Memory is bounded: the cache carves a new object only when the current
 * CPU's array and the depot are empty, so objects in existence never exceed
 * the most ever allocated at once plus M per CPU (or vCPU) plus B per thread
 * in the middle of a refill. It is reused, never returned to the system
 * before oncpu_cache_destroy, which unmaps everything.
 *
 * Indexing, chosen at creation: by CPU (default), or ONCPU_F_VCPU: by
 * virtual CPU (mm_cid). With vCPU indexing a process with T threads keeps
 * at most about T arrays filled instead of one on every CPU it ever ran on,
 * so fewer objects sit idle and a thread that migrates keeps its array; the
 * price is arrays whose cache lines move between CPUs and, in a process
 * where some threads cannot run sections, arrays that run locked for every
 * thread while those threads use them (parked; doc/slot-protocol.md describes
 * the protocol). Where the kernel
 * has no mm_cid (before 6.3) both modes behave alike.
 *
 * Fallback mode and mixed processes: threads without sections take the
 * per-CPU lock word of the CPU they run on (doc/slot-protocol.md); every mix of
 * threads with and without sections is supported.
 *
 * Debug mode (ONCPU_CACHE_DEBUG at creation, or the environment variable
 * ONCPU_CACHE_DEBUG=1 when the cache is created): every free checks that the
 * pointer is the start of an object of this cache and is allocated; a
 * foreign pointer, an interior pointer or a double free is reported with
 * the caller's file:line (when freed through the oncpu_cache_free macro)
 * and aborts the process. Freed objects are filled with 0xdb and checked
 * when allocated again: a write after free is reported too. Debug mode
 * takes a mutex per operation.
 *
 * Concurrency: alloc and free run concurrently from any threads. new and
 * destroy must not run concurrently with other calls on the same cache.
 * Signals: alloc and free are not async-signal-safe (refills lock the depot).
 * fork(): safe, see doc/slot-protocol.md (objects a vanished thread held are lost
 * to the child, never handed out twice).
 */
#ifndef ONCPU_CACHE_H
#define ONCPU_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include <oncpu/config.h>
#include <oncpu/percpu.h>
#if ONCPU_INLINE_FASTPATHS
#include <oncpu/cs.h>
#endif

ONCPU_BEGIN_DECLS

/* Flags of oncpu_cache_new_flags: ONCPU_F_VCPU (oncpu/percpu.h: one array per
 * virtual CPU) and this one. ONCPU_CACHE_VCPU is ONCPU_F_VCPU's deprecated
 * alias, removed in the next release. */
#define ONCPU_CACHE_DEBUG 2u /* detect double free, foreign pointers, writes after free */
enum { ONCPU_CACHE_VCPU ONCPU_DEPRECATED("use ONCPU_F_VCPU") = ONCPU_F_VCPU };

/* Limits of oncpu_cache_new. */
#define ONCPU_CACHE_MAX_OBJECT_SIZE ((size_t)1 << 20)
#define ONCPU_CACHE_MAX_ALIGN       ((size_t)4096)

#if ONCPU_INLINE_FASTPATHS
/* The handle. Its fields are internal; they are here for the inline paths. */
struct oncpu_cache {
	void *_pcpu;     /* per-CPU struct _oncpu_cache_slot + M object pointers */
	int _mode;       /* _oncpu_mode_ONCPU_CPU or _oncpu_mode_ONCPU_VCPU */
	unsigned _flags; /* _ONCPU_CACHE_SECTIONS | _ONCPU_CACHE_CHECKED */
	intptr_t _cap;   /* M */
	/* What the inline paths read: _pcpu, in the field of the cache's mode,
	 * once a thread ran a section on the cache (published after it set
	 * _ONCPU_CACHE_SECTIONS, so the process is initialized), never in debug
	 * mode; NULL until then. One load chooses between a section and the
	 * slow path. */
	void *_fast_cpu;
	void *_fast_vcpu;
};
#define _ONCPU_CACHE_SECTIONS 1u /* a section ran on this cache */
#define _ONCPU_CACHE_CHECKED  2u /* debug mode: every call takes the slow path */

/* One CPU's array: objs[0, count) are free objects, objs[count-1] the top. */
struct _oncpu_cache_slot {
	intptr_t count;
	intptr_t lock; /* 0: free; odd: held; even: parked (src/slot.h) */
	               /* followed by void *objs[M] */
};
#define _ONCPU_CACHE_OBJS(slot) ((intptr_t *)((struct _oncpu_cache_slot *)(slot) + 1))
#else
struct oncpu_cache; /* opaque */
#endif

/*
 * oncpu_cache_new - a cache of objects of object_size bytes aligned to
 * align (a power of two up to ONCPU_CACHE_MAX_ALIGN; 0 means 16, or the
 * object size rounded up to a power of two when that is smaller).
 * oncpu_cache_new_flags - the same with flags (ONCPU_F_VCPU,
 * ONCPU_CACHE_DEBUG).
 * Returns NULL with errno EINVAL (object_size 0 or above
 * ONCPU_CACHE_MAX_OBJECT_SIZE, align not a power of two or too large,
 * unknown flag) or ENOMEM.
 */
ONCPU_API struct oncpu_cache *oncpu_cache_new(size_t object_size, size_t align);
ONCPU_API struct oncpu_cache *oncpu_cache_new_flags(size_t object_size, size_t align,
                                                    unsigned flags);

/*
 * oncpu_cache_alloc - an object (contents unspecified), or NULL with errno
 * ENOMEM (no memory for a new slab) or EINVAL (c NULL).
 *
 * oncpu_cache_free - give obj back. obj must come from oncpu_cache_alloc on
 * the same cache and not be freed twice: in debug mode a violation is
 * reported and aborts, otherwise it corrupts the cache. A NULL obj is
 * ignored; a NULL c with an object is reported and aborts (free cannot
 * report an error; oncpu(7)).
 *
 * Functions of liboncpu; with ONCPU_INLINE_FASTPATHS (oncpu/config.h)
 * macros over their fast paths (one critical section each in the common
 * case), and oncpu_cache_free passes the caller's __FILE__ and __LINE__ to
 * the debug report; (oncpu_cache_free)(c, obj) and &oncpu_cache_free are
 * the function.
 */
ONCPU_API void *oncpu_cache_alloc(struct oncpu_cache *c);
ONCPU_API void oncpu_cache_free(struct oncpu_cache *c, void *obj);

#if ONCPU_INLINE_FASTPATHS
ONCPU_API void *_oncpu_cache_alloc_slow(struct oncpu_cache *c);
ONCPU_API void _oncpu_cache_free_slow(struct oncpu_cache *c, void *obj, const char *file, int line);

/* The slot is a per-CPU array of oncpu/cs.h: one section per alloc or free,
 * addressed from the id the section reads itself. */
ONCPU_STATIC_ASSERT(offsetof(struct _oncpu_cache_slot, count) == ONCPU_CS_ARRAY_COUNT, "count");
ONCPU_STATIC_ASSERT(offsetof(struct _oncpu_cache_slot, lock) == ONCPU_CS_ARRAY_GUARD, "guard");
ONCPU_STATIC_ASSERT(sizeof(struct _oncpu_cache_slot) == ONCPU_CS_ARRAY_ITEMS, "items");

/* The array of the cache's mode, or NULL: take the slow path. Acquire (a
 * plain load on x86-64): the loads of the section, _oncpu_process's
 * included, come after it. */
ONCPU_INLINE void *_oncpu_cache_fast_base(struct oncpu_cache *c, int *mode)
{
	void *base = __atomic_load_n(&c->_fast_cpu, __ATOMIC_ACQUIRE);
	*mode = _oncpu_mode_ONCPU_CPU;
	if (ONCPU_LIKELY(base != NULL))
		return base;
	*mode = _oncpu_mode_ONCPU_VCPU;
	return __atomic_load_n(&c->_fast_vcpu, __ATOMIC_ACQUIRE);
}

ONCPU_INLINE void *_oncpu_cache_alloc_fast(struct oncpu_cache *c)
{
	if (ONCPU_LIKELY(c != NULL)) {
		for (;;) {
			int mode;
			void *base = _oncpu_cache_fast_base(c, &mode);
			if (ONCPU_UNLIKELY(base == NULL))
				break;
			intptr_t obj;
			int r = _oncpu_cs_percpu_array_pop_init(mode, base, &obj);
			if (ONCPU_LIKELY(r == ONCPU_CS_COMMITTED))
				return (void *)obj;
			_ONCPU_DS_NOTE(r);
			if (r != ONCPU_CS_ABORTED)
				break; /* empty (refill), locked or unregistered */
		}
	}
	return _oncpu_cache_alloc_slow(c);
}

ONCPU_INLINE void _oncpu_cache_free_fast(struct oncpu_cache *c, void *obj, const char *file,
                                         int line)
{
	if (ONCPU_LIKELY(c != NULL && obj != NULL)) {
		for (;;) {
			int mode;
			void *base = _oncpu_cache_fast_base(c, &mode);
			if (ONCPU_UNLIKELY(base == NULL))
				break;
			int r =
			    _oncpu_cs_percpu_array_push_init(mode, base, c->_cap, (intptr_t)obj);
			if (ONCPU_LIKELY(r == ONCPU_CS_COMMITTED))
				return;
			_ONCPU_DS_NOTE(r);
			if (r != ONCPU_CS_ABORTED)
				break; /* full (flush), locked or unregistered */
		}
	}
	_oncpu_cache_free_slow(c, obj, file, line);
}

#define oncpu_cache_alloc(c)     _oncpu_cache_alloc_fast(c)
#define oncpu_cache_free(c, obj) _oncpu_cache_free_fast((c), (obj), __FILE__, __LINE__)
#endif /* ONCPU_INLINE_FASTPATHS */

/* oncpu_cache_destroy - release every slab, magazine and per-CPU array
 * (NULL is ignored). Objects still allocated become invalid. */
ONCPU_API void oncpu_cache_destroy(struct oncpu_cache *c);

/* What a cache holds, for tests and monitoring (a racy snapshot while other
 * threads use the cache). */
struct oncpu_cache_stats {
	size_t object_size;  /* as requested */
	size_t stride;       /* bytes per object in a slab */
	size_t cpu_capacity; /* M: objects one CPU's array holds */
	size_t batch;        /* B: objects per depot magazine */
	size_t objects;      /* objects ever carved from slabs */
	size_t cached_cpu;   /* free objects in per-CPU arrays */
	size_t cached_depot; /* free objects in the depot */
	size_t slab_bytes;   /* memory mapped for objects */
	unsigned flags;      /* ONCPU_F_VCPU, ONCPU_CACHE_DEBUG: what the cache runs with */
};
/* oncpu_cache_get_stats - fill *st; 0, or -1 with errno EINVAL (NULL argument). */
ONCPU_API int oncpu_cache_get_stats(struct oncpu_cache *c, struct oncpu_cache_stats *st);

ONCPU_END_DECLS

#endif /* ONCPU_CACHE_H */
