/* SPDX-License-Identifier: MIT */
/*
 * oncpu/config.h - compiler and platform facts shared by every header.
 *
 * The feature macros of the architecture (ONCPU_HAVE_RSEQ_ASM: real rseq
 * sections; ONCPU_HAVE_TP_LOAD: ids read inline from the thread's rseq
 * area) come from its header, selected by oncpu/arch.h (the contract:
 * oncpu/arch/generic.h). Without ONCPU_HAVE_RSEQ_ASM every section returns
 * ONCPU_CS_UNAVAILABLE and structures take their atomic fallback.
 */
#ifndef ONCPU_CONFIG_H
#define ONCPU_CONFIG_H

#if !defined(__cplusplus) && (!defined(__STDC_VERSION__) || __STDC_VERSION__ < 201112L)
#error "oncpu needs C11 (or C++11)"
#endif

/*
 * ONCPU_INLINE_FASTPATHS - how a program calls the operations that have a
 * fast path (oncpu_cpu, oncpu_vcpu, oncpu_counter_add, the push and pop of
 * stacks and rings, oncpu_cache_alloc and oncpu_cache_free, and
 * oncpu_resched_arm, _check, _epoch and _cpu_ptr). Define it before the
 * first oncpu header, for the whole program (oncpu(7)):
 *   1 (default)  each is a macro over an inline fast path: no call, but the
 *                program reads liboncpu's internal layouts and private
 *                symbols (the "private, stable" part of its version script)
 *                and is tied to them.
 *   0            each is a call of the function liboncpu exports, handles
 *                are opaque and no header exposes an internal symbol or
 *                layout: the program depends on the public ABI only.
 *                oncpu/cs.h (critical sections, inline by nature) refuses.
 * Either way liboncpu exports every one of them as a function.
 */
#ifndef ONCPU_INLINE_FASTPATHS
#define ONCPU_INLINE_FASTPATHS 1
#endif
#if ONCPU_INLINE_FASTPATHS != 0 && ONCPU_INLINE_FASTPATHS != 1
#error "ONCPU_INLINE_FASTPATHS must be 0 or 1"
#endif

/* Exported from liboncpu; everything else there is hidden. */
#define ONCPU_API         __attribute__((visibility("default")))
#define ONCPU_INLINE      static inline __attribute__((always_inline))
#define ONCPU_LIKELY(x)   __builtin_expect(!!(x), 1)
#define ONCPU_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ONCPU_CACHELINE   64
/* A name kept for one release after its replacement (CHANGELOG.md): using
 * it warns (-Wdeprecated-declarations) and still works. */
#define ONCPU_DEPRECATED(msg) __attribute__((deprecated(msg)))

#ifdef __cplusplus
#define ONCPU_BEGIN_DECLS extern "C" {
#define ONCPU_END_DECLS   }
#else
#define ONCPU_BEGIN_DECLS
#define ONCPU_END_DECLS
#endif

#endif /* ONCPU_CONFIG_H */
