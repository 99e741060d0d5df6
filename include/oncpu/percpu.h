/* SPDX-License-Identifier: MIT */
/*
 * oncpu/percpu.h - per-CPU memory.
 *
 * oncpu_percpu_alloc() returns a handle: the address of CPU 0's instance of
 * an item. CPU c's instance lies at handle + c * ONCPU_PERCPU_STRIDE, for
 * every c in [0, oncpu_cpu_count()); oncpu_ptr() computes it. Instances of
 * different CPUs never share a cache line (they are a stride apart), and
 * items on one CPU are packed.
 *
 * Memory is reserved, not committed: a CPU that never touches its instance
 * costs no resident memory, so an item in a process on a machine with 4096
 * possible CPUs costs what the CPUs that really use it touch.
 * Items are zero on every CPU when allocated.
 *
 * Thread safety: alloc and free may be called concurrently from any thread.
 */
#ifndef ONCPU_PERCPU_H
#define ONCPU_PERCPU_H

#include <stddef.h>

#include <oncpu/config.h>

ONCPU_BEGIN_DECLS

#define ONCPU_PERCPU_STRIDE_SHIFT 16
#define ONCPU_PERCPU_STRIDE       ((size_t)1 << ONCPU_PERCPU_STRIDE_SHIFT) /* 64 KiB */

/*
 * oncpu_percpu_alloc - an item of `size` bytes per CPU, aligned to `align`
 * (a power of two up to 4096; 0 means 16), zero on every CPU.
 * Returns the handle, or NULL with errno EINVAL (size 0, size above
 * ONCPU_PERCPU_STRIDE, bad align) or ENOMEM.
 */
ONCPU_API void *oncpu_percpu_alloc(size_t size, size_t align);

/* oncpu_percpu_free - release an item (NULL is ignored). No instance may be
 * in use. A handle that was not returned by oncpu_percpu_alloc is reported
 * on stderr and aborts the process. */
ONCPU_API void oncpu_percpu_free(void *handle);

/*
 * ONCPU_F_VCPU - the creation flag of every per-CPU structure (stack, ring,
 * cache: oncpu_*_new_flags): index its slots by virtual CPU. A structure
 * created with it runs its sections in mode ONCPU_VCPU (oncpu/cs.h), one
 * without it in ONCPU_CPU: the flag is the run-time choice, made once per
 * structure, of the indexing that the ONCPU_VCPU token names at compile
 * time for one operation. Bits above it are a structure's own flags
 * (ONCPU_CACHE_DEBUG).
 */
#define ONCPU_F_VCPU 1u

/* oncpu_ptr - CPU `cpu`'s instance of the item `handle` (inline in both
 * settings of ONCPU_INLINE_FASTPATHS: the stride is part of the API). */
ONCPU_INLINE void *oncpu_ptr(void *handle, int cpu)
{
	return (char *)handle + (size_t)cpu * ONCPU_PERCPU_STRIDE;
}

ONCPU_END_DECLS

#endif /* ONCPU_PERCPU_H */
