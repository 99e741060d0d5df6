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

/*
 * fork(): the process has one pthread_atfork registration, in slot.c; it
 * calls these hooks in lock order next to the slot layer's own. Each is
 * safe whether or not its module was ever used. Modules with state to fix
 * in the child call _oncpu_fork_register (idempotent) before they have any.
 */
void _oncpu_fork_register(void);
void _oncpu_percpu_fork_prepare(void);
void _oncpu_percpu_fork_release(void);
void _oncpu_desched_fork_child(void);
/* Incremented in every fork child (by _oncpu_desched_fork_child): state
 * tagged with an older value was copied from the parent. */
extern uint32_t _oncpu_fork_generation __attribute__((visibility("hidden")));

#endif /* ONCPU_INTERNAL_H */
