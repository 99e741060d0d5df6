/* SPDX-License-Identifier: MIT */
/*
 * oncpu/resched.h - reschedule detection: "was this thread switched out,
 * migrated or signalled since I last looked?" in two instructions.
 *
 * tcmalloc's trick (described in the LKML thread "On-CPU state for user
 * space", Vyukov, 2023): the kernel rewrites rseq's cpu_id_start with
 * the current CPU (a value below 2^31) after every context switch and before
 * every signal delivery. oncpu_resched_arm() stores a value with the high bit
 * set there; oncpu_resched_check() is true once the high bit is gone.
 *
 * Where it works (oncpu_resched_init() says): a registered rseq area of the
 * legacy 32-byte ABI, on a kernel that rewrites the ids after every switch:
 *   - kernels up to 6.18, and 7.1+ with a legacy (32-byte) registration
 *     (oncpu's own area; glibc up to 2.40);
 *   - not 6.19 to 7.0: the ids were rewritten only when they changed, so a
 *     switch back onto the same CPU went unseen (ENOTSUP);
 *   - not 7.1+ with an optimized registration (glibc 2.41+ registers its
 *     feature size: __rseq_size > 32): the kernel kills a task that writes
 *     cpu_id_start (ENOTSUP);
 *   - not a kernel built with CONFIG_DEBUG_RSEQ on 6.13+, which validates
 *     the read-only fields and kills the task (ENOTSUP when the kernel's
 *     config is readable as /boot/config-RELEASE; not detectable otherwise);
 *   - not in fallback mode (no rseq: ENOTSUP).
 * Where it does not work, arm() does nothing and check() is always true:
 * callers revalidate every time, which stays correct.
 *
 * False positives: the ids are also rewritten on other returns through the
 * kernel's notify-resume path (task work after close(), NUMA balancing), so
 * check() may say "rescheduled" without a switch; never the reverse.
 * cpu_id_start is one per thread: another user of the trick in the same
 * thread (tcmalloc) would steal the mark. Use the epoch to share it.
 */
#ifndef ONCPU_RESCHED_H
#define ONCPU_RESCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <oncpu/config.h>
#include <oncpu/percpu.h>
#include <oncpu/thread.h>

ONCPU_BEGIN_DECLS

/* The value armed in cpu_id_start: no CPU number has bit 31 set. */
#define ONCPU_RESCHED_MARK 0x80000000U

/*
 * oncpu_resched_init - register this thread and say whether detection works
 * here. 0, or -1 with errno ENOTSUP (see above for where). Optional: arm()
 * does the same on its first call. Not async-signal-safe on its first call.
 */
ONCPU_API int oncpu_resched_init(void);

/*
 * The functions below are functions of liboncpu; with ONCPU_INLINE_FASTPATHS
 * (oncpu/config.h) macros over their fast paths.
 */

/*
 * oncpu_resched_arm - start watching: from now on, a switch-out, migration
 * or signal of this thread makes oncpu_resched_check() true. Returns false
 * when detection does not work here (check() is then always true). Also
 * advances this thread's epoch. Async-signal-safe after the first call.
 */
ONCPU_API bool oncpu_resched_arm(void);

/*
 * oncpu_resched_check - true when this thread may have been switched out,
 * migrated or signalled since its last oncpu_resched_arm() (always true
 * where detection does not work, or before the first arm). Does not re-arm.
 */
ONCPU_API bool oncpu_resched_check(void);

/*
 * oncpu_resched_epoch - a per-thread number that changes whenever this
 * thread was (or may have been) rescheduled since the previous call: check,
 * and on a reschedule re-arm and advance. Several users in one thread can
 * each remember the epoch they last validated at; unlike arm/check, they do
 * not steal the mark from each other. Where detection does not work, every
 * call returns a new epoch. Never returns 0.
 */
ONCPU_API uint64_t oncpu_resched_epoch(void);

/*
 * A per-CPU pointer cached per thread and revalidated only after a
 * reschedule (what tcmalloc does with its slab pointer): where the thread
 * has not been switched out since the last call it is still on the same
 * CPU, so the cached oncpu_ptr(handle, cpu) is still this CPU's instance.
 * The answer is a snapshot like oncpu_cpu(): the thread may migrate right
 * after. Keep one cache per thread and handle (e.g. in a __thread variable).
 */
struct oncpu_resched_cache {
	uint64_t epoch; /* 0: never validated */
	int cpu;
	void *ptr;
};
/* clang-format off */
#define ONCPU_RESCHED_CACHE_INIT {0, -1, NULL}
/* clang-format on */

ONCPU_API void *oncpu_resched_cpu_ptr(struct oncpu_resched_cache *c, void *handle);

#if ONCPU_INLINE_FASTPATHS
/* ---- internal state read by the inline functions ---- */
/* Offset of cpu_id_start from the thread pointer when detection works, else
 * 0 (undecided or unsupported). */
extern ONCPU_API ptrdiff_t _oncpu_resched_offset;
/* This thread's reschedule epoch (see oncpu_resched_epoch()). */
extern ONCPU_API __thread uint64_t _oncpu_resched_epoch_tls
    __attribute__((tls_model("initial-exec")));
ONCPU_API bool _oncpu_resched_arm_slow(void);

ONCPU_INLINE bool _oncpu_resched_arm_fast(void)
{
#if defined(ONCPU_HAVE_TP_LOAD)
	ptrdiff_t off = _oncpu_resched_offset;
	/* cpu_id >= 0: this thread's area is registered (own mode registers
	 * threads lazily). */
	if (ONCPU_LIKELY(off != 0) &&
	    ONCPU_LIKELY(_oncpu_tp_load32(off + ONCPU_RSEQ_OFF_CPU_ID) >= 0)) {
		_oncpu_resched_epoch_tls++;
		_oncpu_tp_store32(off + ONCPU_RSEQ_OFF_CPU_ID_START, ONCPU_RESCHED_MARK);
		return true;
	}
#endif
	return _oncpu_resched_arm_slow();
}

ONCPU_INLINE bool _oncpu_resched_check_fast(void)
{
#if defined(ONCPU_HAVE_TP_LOAD)
	ptrdiff_t off = _oncpu_resched_offset;
	return ONCPU_UNLIKELY(off == 0) || _oncpu_tp_load32(off + ONCPU_RSEQ_OFF_CPU_ID_START) >= 0;
#else
	return true;
#endif
}

ONCPU_INLINE uint64_t _oncpu_resched_epoch_fast(void)
{
	if (ONCPU_UNLIKELY(_oncpu_resched_check_fast()))
		_oncpu_resched_arm_fast();
	return _oncpu_resched_epoch_tls;
}

ONCPU_INLINE void *_oncpu_resched_cpu_ptr_fast(struct oncpu_resched_cache *c, void *handle)
{
	uint64_t e = _oncpu_resched_epoch_fast();
	if (ONCPU_UNLIKELY(c->epoch != e)) {
		/* After the arm in epoch(): a migration from here on is caught
		 * by the next call. */
		c->cpu = _oncpu_cpu_fast();
		c->ptr = oncpu_ptr(handle, c->cpu);
		c->epoch = e;
	}
	return c->ptr;
}

#define oncpu_resched_arm()              _oncpu_resched_arm_fast()
#define oncpu_resched_check()            _oncpu_resched_check_fast()
#define oncpu_resched_epoch()            _oncpu_resched_epoch_fast()
#define oncpu_resched_cpu_ptr(c, handle) _oncpu_resched_cpu_ptr_fast(c, handle)
#endif /* ONCPU_INLINE_FASTPATHS */

ONCPU_END_DECLS

#endif /* ONCPU_RESCHED_H */
