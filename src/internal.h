/* SPDX-License-Identifier: MIT */
/* internal.h - liboncpu's private declarations (never installed). */
#ifndef ONCPU_INTERNAL_H
#define ONCPU_INTERNAL_H

#include <oncpu.h>

/* Process-wide facts, valid after _oncpu_process_init(). */
void _oncpu_process_init(void);
/* Bound on cpu ids: possible CPUs, raised (never lowered) by the testing
 * variable ONCPU_POSSIBLE_CPUS. */
int _oncpu_possible_cpus(void);
/* The current CPU without rseq (sched_getcpu), clamped into range. */
int _oncpu_cpu_without_rseq(void);

/* Report corruption (double free, foreign pointer) with its origin and
 * abort the process: never continue with bad memory. */
__attribute__((noreturn, format(printf, 3, 4))) void _oncpu_fatal(const char *file, int line,
                                                                  const char *fmt, ...);
#define ONCPU_FATAL(...) _oncpu_fatal(__FILE__, __LINE__, __VA_ARGS__)

#endif /* ONCPU_INTERNAL_H */
