/* SPDX-License-Identifier: MIT */
/*
 * mixed.h - the *.vcpu_mixed cases of the stack, ring and cache modules:
 * vCPU-indexed structures used by threads with rseq and, every second
 * thread, threads without it, as when another library registered its own
 * rseq area on them. Compare with the *.vcpu cases (every thread in rseq
 * mode) at the same thread count.
 */
#ifndef ONCPU_BENCH_MIXED_H
#define ONCPU_BENCH_MIXED_H

#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <oncpu.h>

/* glibc >= 2.35; weak so that the benchmark runs without them. */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

/* The area registered to push a thread out of rseq mode, if any. */
static __thread struct oncpu_rseq_area mixed_foreign;
static __thread bool mixed_foreign_registered;

/*
 * Make the calling thread, before its first oncpu call, run without rseq:
 * unregister the C library's area of this thread, or register a foreign
 * one before oncpu registers its own. Returns true when it runs without.
 */
static inline bool mixed_leave_rseq(void)
{
#if defined(SYS_rseq) && defined(ONCPU_RSEQ_SIG)
	if (&__rseq_size && &__rseq_offset && __rseq_size > 0) {
		char *area = (char *)__builtin_thread_pointer() + __rseq_offset;
		if (syscall(SYS_rseq, area, 32, ONCPU_RSEQ_FLAG_UNREGISTER, ONCPU_RSEQ_SIG) != 0)
			syscall(SYS_rseq, area, __rseq_size, ONCPU_RSEQ_FLAG_UNREGISTER,
			        ONCPU_RSEQ_SIG);
	} else {
		mixed_foreign.cpu_id = ONCPU_RSEQ_CPU_ID_UNINITIALIZED;
		mixed_foreign_registered =
		    syscall(SYS_rseq, &mixed_foreign, 32, 0, ONCPU_RSEQ_SIG) == 0;
	}
#endif
	return !oncpu_thread_rseq_active();
}

/* Before the thread exits: unregister the foreign area (it lives in TLS). */
static inline void mixed_rejoin(void)
{
#if defined(SYS_rseq) && defined(ONCPU_RSEQ_SIG)
	if (mixed_foreign_registered)
		syscall(SYS_rseq, &mixed_foreign, 32, ONCPU_RSEQ_FLAG_UNREGISTER, ONCPU_RSEQ_SIG);
	mixed_foreign_registered = false;
#endif
}

/*
 * Thread tid of a mixed case: odd ones leave rseq mode (a thread that
 * cannot is counted in *failed, which the teardown reports).
 */
static inline void mixed_thread_start(int tid, atomic_int *failed)
{
	if (tid % 2 == 1 && !mixed_leave_rseq())
		atomic_fetch_add(failed, 1);
}

/* The teardown's check: 0, or -1 after saying why the run was not mixed. */
static inline int mixed_check(const char *name, atomic_int *failed)
{
	int n = atomic_load(failed);
	if (n == 0)
		return 0;
	fprintf(stderr, "%s: %d threads could not leave rseq mode (no rseq here?)\n", name, n);
	return -1;
}

#endif /* ONCPU_BENCH_MIXED_H */
