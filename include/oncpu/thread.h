/* SPDX-License-Identifier: MIT */
/*
 * oncpu/thread.h - this thread's rseq area, registration and CPU ids.
 *
 * Registration: when the C library registered an rseq area for every thread
 * (glibc >= 2.35, __rseq_size > 0), oncpu uses that area. Otherwise it
 * registers its own 32-byte area (legacy ABI) lazily, on the first call of a
 * thread, and unregisters it when the thread exits. When the kernel refuses
 * rseq (ENOSYS: old kernel, seccomp, valgrind) every API keeps working
 * through atomic fallbacks, and oncpu_thread_rseq_active() says false.
 *
 * Names: oncpu_thread_* is the calling thread's registration (init,
 * rseq_active, registration, area); oncpu_cpu*, oncpu_vcpu* and oncpu_node
 * are the ids and their properties (the id, its bound oncpu_cpu_count, and
 * oncpu_vcpu_dense), named after the id as the ONCPU_CPU and ONCPU_VCPU
 * tokens of oncpu/cs.h are.
 *
 * Ids:
 *   cpu   the CPU the thread runs on (rseq cpu_id), in [0, oncpu_cpu_count()).
 *   vcpu  the kernel's mm_cid (6.3+): dense per process, in
 *         [0, oncpu_cpu_count()), small when the process has few threads.
 *         Where the kernel does not provide mm_cid (AT_RSEQ_FEATURE_SIZE < 28)
 *         vcpu is the cpu id: still a valid index, only not dense.
 *   node  the NUMA node of cpu (0 where unknown).
 * An id is a snapshot: the thread may migrate right after reading it. Only a
 * critical section (oncpu/cs.h) acts on "the current CPU" atomically.
 */
#ifndef ONCPU_THREAD_H
#define ONCPU_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <oncpu/abi.h>
#include <oncpu/arch.h>
#include <oncpu/config.h>

ONCPU_BEGIN_DECLS

/*
 * oncpu_thread_init - register this thread now (optional; idempotent).
 * Returns 0 when this thread runs real rseq sections, or -1 with errno:
 *   ENOSYS   rseq is unavailable (kernel, seccomp, valgrind); fallback mode.
 *   EBUSY    another library registered an rseq area that oncpu cannot see
 *            (not glibc's); it is left untouched; fallback mode.
 *   ENOTSUP  no rseq assembly for this architecture; fallback mode.
 * Either way every oncpu API works afterwards. Async-signal-safe after the
 * first call in the process.
 */
ONCPU_API int oncpu_thread_init(void);

/* oncpu_thread_rseq_active - true when this thread runs real rseq sections. */
ONCPU_API bool oncpu_thread_rseq_active(void);
/* Deprecated alias, removed in the next release. */
ONCPU_API bool oncpu_rseq_active(void) ONCPU_DEPRECATED("use oncpu_thread_rseq_active");

/* oncpu_cpu_count - bound on cpu and vcpu ids: the number of possible CPUs. */
ONCPU_API int oncpu_cpu_count(void);

/* oncpu_node - NUMA node of the current CPU (0 where the kernel cannot say). */
ONCPU_API int oncpu_node(void);

/*
 * How the process runs rseq, for diagnostics and tests.
 * ONCPU_REG_LIBC: the C library's area; ONCPU_REG_OWN: oncpu's own area;
 * ONCPU_REG_NONE: fallback mode for this thread.
 */
enum oncpu_registration { ONCPU_REG_NONE = 0, ONCPU_REG_LIBC = 1, ONCPU_REG_OWN = 2 };
ONCPU_API enum oncpu_registration oncpu_thread_registration(void);
/* oncpu_vcpu_dense - true when vcpu ids come from the kernel's mm_cid. */
ONCPU_API bool oncpu_vcpu_dense(void);
/* oncpu_thread_area - this thread's registered area, or NULL in fallback mode. */
ONCPU_API struct oncpu_rseq_area *oncpu_thread_area(void);

/*
 * oncpu_cpu - the current CPU id, 0 <= id < oncpu_cpu_count().
 * oncpu_vcpu - the current virtual CPU id, 0 <= id < oncpu_cpu_count().
 * Functions of liboncpu; with ONCPU_INLINE_FASTPATHS (oncpu/config.h)
 * macros over their fast paths.
 */
ONCPU_API int oncpu_cpu(void);
ONCPU_API int oncpu_vcpu(void);

#if ONCPU_INLINE_FASTPATHS
/* ---- internal: process-wide state read by the inline fast paths ---- */
struct _oncpu_process {
	/* Thread-pointer-relative offset of every thread's rseq area, or 0
	 * until the first call initialized the process (0 is never an area:
	 * it holds the TCB's self pointer). Written once, then read-only. */
	ptrdiff_t rseq_offset;
	/* Thread-pointer-relative offset of the id that vcpu mode indexes:
	 * mm_cid when the kernel provides it, cpu_id otherwise. */
	ptrdiff_t vcpu_offset;
};
extern ONCPU_API struct _oncpu_process _oncpu_process;

ONCPU_API int _oncpu_cpu_slow(void);
ONCPU_API int _oncpu_vcpu_slow(void);
/* Registers this thread if needed; returns true when sections can run. */
ONCPU_API bool _oncpu_thread_ready_slow(void);

#if defined(ONCPU_HAVE_TP_LOAD)
/* The current cpu id, or -1 when this thread is not registered (yet). */
ONCPU_INLINE int _oncpu_registered_cpu(void)
{
	ptrdiff_t off = _oncpu_process.rseq_offset;
	if (ONCPU_UNLIKELY(off == 0))
		return -1;
	return _oncpu_tp_load32(off + ONCPU_RSEQ_OFF_CPU_ID);
}
#else
ONCPU_INLINE int _oncpu_registered_cpu(void)
{
	return -1;
}
#endif

ONCPU_INLINE int _oncpu_cpu_fast(void)
{
	int cpu = _oncpu_registered_cpu();
	return ONCPU_LIKELY(cpu >= 0) ? cpu : _oncpu_cpu_slow();
}

ONCPU_INLINE int _oncpu_vcpu_fast(void)
{
#if defined(ONCPU_HAVE_TP_LOAD)
	if (ONCPU_LIKELY(_oncpu_registered_cpu() >= 0))
		return _oncpu_tp_load32(_oncpu_process.vcpu_offset);
#endif
	return _oncpu_vcpu_slow();
}

#define oncpu_cpu()  _oncpu_cpu_fast()
#define oncpu_vcpu() _oncpu_vcpu_fast()
#endif /* ONCPU_INLINE_FASTPATHS */

ONCPU_END_DECLS

#endif /* ONCPU_THREAD_H */
