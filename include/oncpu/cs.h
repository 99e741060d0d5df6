/* SPDX-License-Identifier: MIT */
/*
 * oncpu/cs.h - per-CPU critical sections (restartable sequences).
 *
 * Each operation runs on the data of one CPU (or virtual CPU) and is either
 * committed by a single final store while the thread is still on that CPU,
 * or not at all: a preemption, migration or signal before the commit makes
 * the kernel resume the thread at the abort handler, which returns
 * ONCPU_CS_ABORTED. No atomic instruction, no lock.
 *
 * Usage: read the id, compute addresses from it, run the operation; retry
 * on ONCPU_CS_ABORTED, take your fallback on ONCPU_CS_UNAVAILABLE:
 *
 *	for (;;) {
 *		int cpu = oncpu_cs_id(ONCPU_CPU);
 *		if (cpu < 0)
 *			return fallback();              // ONCPU_CS_UNAVAILABLE
 *		intptr_t *head = oncpu_ptr(heads, cpu);
 *		int r = oncpu_cs_cmpeq_store(ONCPU_CPU, head, old, new, cpu);
 *		if (r != ONCPU_CS_ABORTED)
 *			return r;                       // committed or compare failed
 *	}
 *
 * Indexing mode (first argument, a bare token):
 *   ONCPU_CPU   the id is the CPU number (rseq cpu_id).
 *   ONCPU_VCPU  the id is the virtual CPU (mm_cid; see oncpu/thread.h).
 *               Structures choose it at creation with ONCPU_F_VCPU (below).
 * Memory order of the commit (ops with a try-store), a bare token:
 *   ONCPU_RELAXED, ONCPU_RELEASE (try-stores become visible before the commit).
 * Any other token is a compile-time error: there is no combination that
 * silently "aborts" forever.
 *
 * Results: ONCPU_CS_COMMITTED (0); ONCPU_CS_CMPFAIL (1, nothing written);
 * ONCPU_CS_ABORTED (-1, nothing committed; try-stores may have happened;
 * retry with a fresh id); ONCPU_CS_UNAVAILABLE (-2, this thread cannot run
 * sections: fallback mode, or no rseq assembly for the architecture; the
 * answer of every operation in such a thread whatever its id, and never
 * ONCPU_CS_ABORTED there; also the answer to a negative id, e.g. an
 * unchecked ONCPU_CS_UNAVAILABLE).
 *
 * The operations, in pseudo-code (id: the expected current id; the kernel
 * aborts the section when the thread's id differs from it):
 *
 *   oncpu_cs_id(mode)
 *       current id, registering the thread on first use;
 *       ONCPU_CS_UNAVAILABLE when sections cannot run.
 *   oncpu_cs_add(mode, v, count, id)
 *       *v += count
 *   oncpu_cs_percpu_add(mode, base, count)
 *       id = current id (read inside the section); *(base + id * stride) += count
 *   oncpu_cs_cmpeq_store(mode, v, expect, newv, id)
 *       if (*v != expect) return CMPFAIL; *v = newv
 *   oncpu_cs_cmpne_load_off_store(mode, v, expectnot, voff, load, id)
 *       if (*v == expectnot) return CMPFAIL; *load = *v;
 *       *v = *(intptr_t *)(*v + voff)                 (the list pop)
 *   oncpu_cs_cmpeq_trystore_store(mode, mo, v, expect, v2, newv2, newv, id)
 *       if (*v != expect) return CMPFAIL; *v2 = newv2; *v = newv
 *   oncpu_cs_cmpeq_memcpy_store(mode, mo, v, expect, dst, src, len, newv, id)
 *       if (*v != expect) return CMPFAIL; memcpy(dst, src, len); *v = newv
 *   oncpu_cs_deref_off_add(mode, ptr, off, inc, id)
 *       *(intptr_t *)(*ptr + off) += inc
 *
 * Guarded operations: a first compare against a guard word (g, gexpect),
 * typically a per-CPU lock word that threads without sections take
 * (doc/slot-protocol.md gives the protocol). The guard is read right after the id
 * check and before every other load of the section. That order matters: a
 * lock holder writes the data and then releases the lock, so a section that
 * read the data first could pair a stale value with the released lock and
 * commit on it; reading the guard first, it either sees the lock taken, or
 * free with everything the last holder wrote visible to its later loads, or
 * it is still in flight when the next holder takes the lock and is aborted
 * by that holder's exclusion step.
 *
 *   oncpu_cs_cmpeq_cmpeq_store(mode, g, gexpect, v, expect, newv, id)
 *       if (*g != gexpect) return CMPFAIL; if (*v != expect) return CMPFAIL;
 *       *v = newv                                         (the list push)
 *   oncpu_cs_cmpeq_cmpne_load_off_store(mode, g, gexpect, v, expectnot, voff, load, id)
 *       if (*g != gexpect) return CMPFAIL; if (*v == expectnot) return CMPFAIL;
 *       *load = *v; *v = *(intptr_t *)(*v + voff)          (the list pop)
 *   oncpu_cs_cmpeq_cmpeq_trystore_store(mode, mo, g, gexpect, v, expect, v2, newv2, newv, id)
 *       if (*g != gexpect) return CMPFAIL; if (*v != expect) return CMPFAIL;
 *       *v2 = newv2; *v = newv                            (array push)
 *   oncpu_cs_cmpeq_cmpeq_load_store(mode, g, gexpect, v, expect, src, load, newv, id)
 *       if (*g != gexpect) return CMPFAIL; if (*v != expect) return CMPFAIL;
 *       *load = *src; *v = newv                           (array pop: *src is
 *                                                          read after the compares)
 *   oncpu_cs_cmpeq_cmpeq_memcpy_store(mode, mo, g, gexpect, v, expect, dst, src, len, newv, id)
 *       if (*g != gexpect) return CMPFAIL; if (*v != expect) return CMPFAIL;
 *       memcpy(dst, src, len); *v = newv                  (batch in or out)
 *
 * Per-CPU arrays, addressed from the id read inside the section (as
 * percpu_add: no id argument, ONCPU_CS_UNAVAILABLE when the thread is not
 * registered). a = (intptr_t *)(base + id * ONCPU_PERCPU_STRIDE) is laid out
 * as a[0] count, a[1] guard, a[2...] items (offsets ONCPU_CS_ARRAY_*):
 *
 *   oncpu_cs_percpu_array_pop(mode, base, load)
 *       if (a[1] != 0) return CMPFAIL; n = a[0]; if (n == 0) return CMPFAIL;
 *       *load = a[2 + n - 1]; a[0] = n - 1
 *   oncpu_cs_percpu_array_push(mode, base, cap, v)
 *       if (a[1] != 0) return CMPFAIL; n = a[0]; if (n >= cap) return CMPFAIL;
 *       a[2 + n] = v; a[0] = n + 1
 *
 * Every operation is always inline and emits its descriptor into the
 * __rseq_cs / __rseq_cs_ptr_array / __rseq_exit_point_array sections (the
 * kernel selftests' layout), so oncpu-inspect and the GDB extension see it.
 * Never call a function or make a system call between reading an id and
 * the operation if you rely on the result being fresh: a stale id only
 * costs an abort, never a wrong commit.
 */
#ifndef ONCPU_CS_H
#define ONCPU_CS_H

#include <stddef.h>
#include <stdint.h>

#include <oncpu/config.h>
#include <oncpu/percpu.h>
#include <oncpu/thread.h>

#if !ONCPU_INLINE_FASTPATHS
#error "oncpu/cs.h: critical sections are inline code; they need ONCPU_INLINE_FASTPATHS=1"
#endif

ONCPU_BEGIN_DECLS

enum oncpu_cs_result {
	ONCPU_CS_UNAVAILABLE = -2,
	ONCPU_CS_ABORTED = -1,
	ONCPU_CS_COMMITTED = 0,
	ONCPU_CS_CMPFAIL = 1,
};

/* ONCPU_F_VCPU, the structures' flag for the ONCPU_VCPU indexing: oncpu/percpu.h. */

/* Token tables: only these modes and orders exist. */
enum { _oncpu_mode_ONCPU_CPU = 0, _oncpu_mode_ONCPU_VCPU = 1 };
enum { _oncpu_mo_ONCPU_RELAXED = 0, _oncpu_mo_ONCPU_RELEASE = 1 };
#define _ONCPU_MODE(mode) _oncpu_mode_##mode
#define _ONCPU_MO(mo)     _oncpu_mo_##mo

/* Offset (from the thread pointer) of the id a mode compares against. */
ONCPU_INLINE ptrdiff_t _oncpu_id_offset(int mode)
{
	return mode ? _oncpu_process.vcpu_offset
	            : _oncpu_process.rseq_offset + ONCPU_RSEQ_OFF_CPU_ID;
}

/* Layout of a per-CPU array (byte offsets; see oncpu_cs_percpu_array_pop). */
#define ONCPU_CS_ARRAY_COUNT 0
#define ONCPU_CS_ARRAY_GUARD 8
#define ONCPU_CS_ARRAY_ITEMS 16

/*
 * An id from oncpu_cs_id() is >= 0 and implies an initialized process. Any
 * other id (ONCPU_CS_UNAVAILABLE, -1, or an id from elsewhere before the
 * first oncpu call) must not reach a section: it would pass the id check
 * in fallback mode, or arm a section through offset 0 of the TCB.
 */
ONCPU_INLINE int _oncpu_cs_id_usable(int id)
{
	return id >= 0 && _oncpu_process.rseq_offset != 0;
}

/*
 * What an id-taking section that reached its abort handler answers. A
 * thread that is not registered (fallback mode, or not yet: its first
 * oncpu call registers it) gets there too: the ids of an area the kernel
 * does not update read as negative (thread.c), so no usable id passes the
 * check. Telling the two apart only here, without a call, keeps the
 * committing path and its frame as they were.
 */
ONCPU_INLINE int _oncpu_cs_aborted(void)
{
	return ONCPU_LIKELY(_oncpu_registered_cpu() >= 0) ? ONCPU_CS_ABORTED : ONCPU_CS_UNAVAILABLE;
}

/* The operations: oncpu/arch/ops.h around the architecture's asm. */
#define _ONCPU_ARCH_SECTIONS 1
#include <oncpu/arch.h>

/*
 * A committed section leaves rseq_cs pointing at its descriptor (the kernel
 * clears it lazily), so a module whose code holds sections must stay mapped:
 * one constructor per module marks it RTLD_NODELETE (src/module.c). A module
 * that must be unloadable is built with -DONCPU_UNLOADABLE (all its files):
 * its sections then clear rseq_cs on every exit, one store more each.
 */
ONCPU_API void _oncpu_module_pin(const void *addr_in_module);
#if defined(ONCPU_HAVE_RSEQ_ASM) && !defined(ONCPU_UNLOADABLE) && !defined(_ONCPU_IN_LIBRARY)
__attribute__((weak, visibility("hidden"))) char _oncpu_module_pinned;
__attribute__((constructor, used)) static void _oncpu_pin_this_module(void)
{
	if (!_oncpu_module_pinned) {
		_oncpu_module_pinned = 1;
		_oncpu_module_pin(&_oncpu_module_pinned);
	}
}
#endif

/* The per-CPU array operations check that the process is initialized; the
 * _init variants leave that out (see oncpu/arch/ops.h). */
ONCPU_INLINE int _oncpu_cs_percpu_array_pop(int mode, void *base, intptr_t *load)
{
	if (ONCPU_UNLIKELY(_oncpu_process.rseq_offset == 0))
		return ONCPU_CS_UNAVAILABLE;
	return _oncpu_cs_percpu_array_pop_init(mode, base, load);
}

ONCPU_INLINE int _oncpu_cs_percpu_array_push(int mode, void *base, intptr_t cap, intptr_t v)
{
	if (ONCPU_UNLIKELY(_oncpu_process.rseq_offset == 0))
		return ONCPU_CS_UNAVAILABLE;
	return _oncpu_cs_percpu_array_push_init(mode, base, cap, v);
}

#define oncpu_cs_id(mode)                      _oncpu_cs_id(_ONCPU_MODE(mode))
#define oncpu_cs_add(mode, v, count, id)       _oncpu_cs_add(_ONCPU_MODE(mode), v, count, id)
#define oncpu_cs_percpu_add(mode, base, count) _oncpu_cs_percpu_add(_ONCPU_MODE(mode), base, count)
#define oncpu_cs_cmpeq_store(mode, v, expect, newv, id)                                            \
	_oncpu_cs_cmpeq_store(_ONCPU_MODE(mode), v, expect, newv, id)
#define oncpu_cs_cmpne_load_off_store(mode, v, expectnot, voff, load, id)                          \
	_oncpu_cs_cmpne_load_off_store(_ONCPU_MODE(mode), v, expectnot, voff, load, id)
#define oncpu_cs_cmpeq_trystore_store(mode, mo, v, expect, v2, newv2, newv, id)                    \
	_oncpu_cs_cmpeq_trystore_store(_ONCPU_MODE(mode), _ONCPU_MO(mo), v, expect, v2, newv2,     \
	                               newv, id)
#define oncpu_cs_cmpeq_memcpy_store(mode, mo, v, expect, dst, src, len, newv, id)                  \
	_oncpu_cs_cmpeq_memcpy_store(_ONCPU_MODE(mode), _ONCPU_MO(mo), v, expect, dst, src, len,   \
	                             newv, id)
#define oncpu_cs_deref_off_add(mode, ptr, off, inc, id)                                            \
	_oncpu_cs_deref_off_add(_ONCPU_MODE(mode), ptr, off, inc, id)
#define oncpu_cs_cmpeq_cmpeq_store(mode, g, gexpect, v, expect, newv, id)                          \
	_oncpu_cs_cmpeq_cmpeq_store(_ONCPU_MODE(mode), g, gexpect, v, expect, newv, id)
#define oncpu_cs_cmpeq_cmpne_load_off_store(mode, g, gexpect, v, expectnot, voff, load, id)        \
	_oncpu_cs_cmpeq_cmpne_load_off_store(_ONCPU_MODE(mode), g, gexpect, v, expectnot, voff,    \
	                                     load, id)
#define oncpu_cs_cmpeq_cmpeq_trystore_store(mode, mo, g, gexpect, v, expect, v2, newv2, newv, id)  \
	_oncpu_cs_cmpeq_cmpeq_trystore_store(_ONCPU_MODE(mode), _ONCPU_MO(mo), g, gexpect, v,      \
	                                     expect, v2, newv2, newv, id)
#define oncpu_cs_cmpeq_cmpeq_load_store(mode, g, gexpect, v, expect, src, load, newv, id)          \
	_oncpu_cs_cmpeq_cmpeq_load_store(_ONCPU_MODE(mode), g, gexpect, v, expect, src, load,      \
	                                 newv, id)
#define oncpu_cs_cmpeq_cmpeq_memcpy_store(mode, mo, g, gexpect, v, expect, dst, src, len, newv,    \
                                          id)                                                      \
	_oncpu_cs_cmpeq_cmpeq_memcpy_store(_ONCPU_MODE(mode), _ONCPU_MO(mo), g, gexpect, v,        \
	                                   expect, dst, src, len, newv, id)
#define oncpu_cs_percpu_array_pop(mode, base, load)                                                \
	_oncpu_cs_percpu_array_pop(_ONCPU_MODE(mode), base, load)
#define oncpu_cs_percpu_array_push(mode, base, cap, v)                                             \
	_oncpu_cs_percpu_array_push(_ONCPU_MODE(mode), base, cap, v)

/*
 * Current id for a mode, registering the thread on first use; or
 * ONCPU_CS_UNAVAILABLE when this thread cannot run sections.
 */
ONCPU_INLINE int _oncpu_cs_id(int mode)
{
#if defined(ONCPU_HAVE_RSEQ_ASM)
	if (ONCPU_UNLIKELY(_oncpu_registered_cpu() < 0) && !_oncpu_thread_ready_slow())
		return ONCPU_CS_UNAVAILABLE;
	return _oncpu_tp_load32(_oncpu_id_offset(mode));
#else
	(void)mode;
	return ONCPU_CS_UNAVAILABLE;
#endif
}

/*
 * Internal: shared by the inline paths of oncpu/stack.h, ring.h and cache.h.
 *
 * _ONCPU_DS_NOTE(r) - test builds (-DONCPU_INJECT): a program that defines
 * `volatile long _oncpu_ds_aborts` sees how many of their sections aborted.
 */
#ifdef ONCPU_INJECT
extern volatile long _oncpu_ds_aborts __attribute__((weak));
#define _ONCPU_DS_NOTE(r)                                                                          \
	do {                                                                                       \
		if ((r) == ONCPU_CS_ABORTED && &_oncpu_ds_aborts != NULL)                          \
			__atomic_fetch_add(&_oncpu_ds_aborts, 1, __ATOMIC_RELAXED);                \
	} while (0)
#else
#define _ONCPU_DS_NOTE(r) ((void)0)
#endif

/*
 * One attempt of a guarded section on a slot, as the inline paths and
 * liboncpu's slow paths (src/slot.h) both run it, answers one of these:
 *   _ONCPU_DS_DONE    finished: committed, or a final answer (empty)
 *   _ONCPU_DS_AGAIN   aborted or the slot changed (or ONCPU_CS_UNAVAILABLE:
 *                     the next id check sends the caller to the slow path)
 *   _ONCPU_DS_LOCKED  a compare failed on a lock word that is not 0 (held
 *                     or parked): the inline path takes the slow path
 *   _ONCPU_DS_SLOW    the inline path cannot finish (no memory yet, full):
 *                     the slow path decides
 */
enum { _ONCPU_DS_DONE = 0, _ONCPU_DS_AGAIN = 1, _ONCPU_DS_LOCKED = 2, _ONCPU_DS_SLOW = 3 };

/* The step of a section's result r on a slot guarded by `lock`. */
ONCPU_INLINE int _oncpu_ds_step(int r, const intptr_t *lock)
{
	if (ONCPU_LIKELY(r == ONCPU_CS_COMMITTED))
		return _ONCPU_DS_DONE;
	_ONCPU_DS_NOTE(r);
	return r == ONCPU_CS_CMPFAIL && __atomic_load_n(lock, __ATOMIC_RELAXED) != 0
	           ? _ONCPU_DS_LOCKED
	           : _ONCPU_DS_AGAIN;
}

ONCPU_END_DECLS

#endif /* ONCPU_CS_H */
