/* SPDX-License-Identifier: MIT */
/*
 * mutex_hooks.h - private: the adaptive mutex's hook for benchmarks and
 * tests (oncpu-bench's *.oncpu_untracked cases). Not part of liboncpu's
 * ABI: no symbol, only a bit of the mutex's own _spins word that the
 * liboncpu built from the same tree reads (src/mutex.c). Never installed.
 */
#ifndef ONCPU_MUTEX_HOOKS_H
#define ONCPU_MUTEX_HOOKS_H

#include <oncpu/mutex.h>

/* _spins bit: waiters ignore the owners' on-CPU words. */
#define _ONCPU_MUTEX_SPINS_IGNORE_PROVIDER 0x80000000U

/* Make m's waiters ignore the owners' on-CPU words, as under provider
 * "none". Call after init, before any thread waits on m; init clears it. */
static inline void _oncpu_mutex_ignore_provider(oncpu_mutex_t *m)
{
	__atomic_fetch_or(&m->_spins, _ONCPU_MUTEX_SPINS_IGNORE_PROVIDER, __ATOMIC_RELAXED);
}

#endif /* ONCPU_MUTEX_HOOKS_H */
