/* SPDX-License-Identifier: MIT */
/*
 * oncpu/config.h - compiler and platform facts shared by every header.
 *
 * Feature macros (in the manner of ck's CK_F_*):
 *   ONCPU_HAVE_RSEQ_ASM   critical sections are real rseq assembly on this
 *                         architecture (x86-64). Without it every section
 *                         returns ONCPU_CS_UNAVAILABLE and structures take
 *                         their atomic fallback.
 *   ONCPU_HAVE_TP_LOAD    ids are read inline from the thread's rseq area.
 */
#ifndef ONCPU_CONFIG_H
#define ONCPU_CONFIG_H

#if !defined(__cplusplus) && (!defined(__STDC_VERSION__) || __STDC_VERSION__ < 201112L)
#error "oncpu needs C11 (or C++11)"
#endif

#if defined(__x86_64__) && !defined(ONCPU_NO_RSEQ_ASM)
#define ONCPU_HAVE_RSEQ_ASM 1
#endif
#if defined(__x86_64__) || defined(__aarch64__)
#define ONCPU_HAVE_TP_LOAD 1
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
