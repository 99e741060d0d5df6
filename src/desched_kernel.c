/* SPDX-License-Identifier: MIT */
/*
 * desched_kernel.c - the "kernel" deschedule-notification provider: a kernel
 * with the patch of kernel/patches (the seeds' proposal, as a prctl):
 *
 *	prctl(PR_RSEQ_DESCHED_SET, (unsigned long)entries, count, 0, 0)
 *	prctl(PR_RSEQ_DESCHED_GET, 0, 0, 0, 0)   registered count, or EINVAL
 *
 * The kernel stores each entry's value when the thread is switched out and
 * its resume_value (RSEQ_DESCHED_F_RESUME) before it returns to user space.
 * A stock kernel answers EINVAL for the unknown options: probe() fails and
 * the next provider is tried. The uapi header lives in kernel/uapi; its few
 * definitions are mirrored here so that liboncpu builds without it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/prctl.h>

#include "desched_provider.h"
#include "internal.h"

/* kernel/uapi/rseq_desched.h */
#define PR_RSEQ_DESCHED_SET      0x4f4e4350
#define PR_RSEQ_DESCHED_GET      0x4f4e4351
#define RSEQ_DESCHED_MAX_ENTRIES 16
#define RSEQ_DESCHED_F_RESUME    0x1U

_Static_assert(RSEQ_DESCHED_MAX_ENTRIES == ONCPU_DESCHED_BLOCK_ENTRIES, "entries per thread");
_Static_assert(RSEQ_DESCHED_F_RESUME == ONCPU_DESCHED_ENTRY_F_RESUME, "F_RESUME");

static int kernel_probe(void)
{
	if (prctl(PR_RSEQ_DESCHED_GET, 0, 0, 0, 0) >= 0)
		return 0;
	return errno == EINVAL ? -ENOSYS : -errno;
}

static int kernel_register(struct _oncpu_desched_block *blk)
{
	unsigned long n = __atomic_load_n(&blk->nr_entries, __ATOMIC_RELAXED);
	if (prctl(PR_RSEQ_DESCHED_SET, (unsigned long)(uintptr_t)blk->entries, n, 0, 0) == 0)
		return 0;
	return -errno;
}

static int kernel_unregister(struct _oncpu_desched_block *blk)
{
	(void)blk;
	if (prctl(PR_RSEQ_DESCHED_SET, 0UL, 0UL, 0, 0) == 0)
		return 0;
	return -errno;
}

const struct _oncpu_desched_provider _oncpu_desched_provider_kernel = {
    .name = "kernel",
    .id = ONCPU_DESCHED_PROV_KERNEL,
    .probe = kernel_probe,
    .thread_register = kernel_register,
    .thread_unregister = kernel_unregister,
    /* A fork child starts unregistered; its copy of the block is at the
     * same address, so the parent's entries are registered again. */
    .atfork_child = kernel_register,
};
