/* SPDX-License-Identifier: GPL-2.0+ WITH Linux-syscall-note */
#ifndef _ONCPU_RSEQ_DESCHED_H
#define _ONCPU_RSEQ_DESCHED_H

/*
 * Standalone user-space copy of the ABI added by
 * kernel/patches/0001-rseq-Add-deschedule-notification.patch
 * (include/uapi/linux/rseq_desched.h and the two prctl options of
 * include/uapi/linux/prctl.h), so that user space can use it without the
 * patched kernel's headers.  Keep in sync with the patch.
 */

#include <linux/types.h>

#ifndef PR_RSEQ_DESCHED_SET
#define PR_RSEQ_DESCHED_SET		0x4f4e4350	/* "ONCP" */
#define PR_RSEQ_DESCHED_GET		0x4f4e4351
#endif

#ifndef _UAPI_LINUX_RSEQ_DESCHED_H
#define _UAPI_LINUX_RSEQ_DESCHED_H
/*
 * Deschedule notification: user space registers, per thread, up to
 * RSEQ_DESCHED_MAX_ENTRIES {addr, value, size} entries with
 *
 *	prctl(PR_RSEQ_DESCHED_SET, (unsigned long)entries, count, 0, 0);
 *
 * Whenever the thread is switched out (it blocks or is preempted), the
 * kernel stores each entry's value, with a single store of the entry's
 * size, at the entry's address in the thread's own address space.  With
 * RSEQ_DESCHED_F_RESUME, the entry's resume_value is stored again before
 * the thread next returns to user space.
 *
 * The store at switch-out must not fault: if the page is not present or
 * not writable at that moment it is retried, where faults are allowed,
 * before the thread returns to user space.  Other threads must therefore
 * treat the values as hints; the registering thread itself always sees
 * them once it runs user code again.  Stores that cannot be made at all
 * (unmapped or read-only memory) are dropped silently.  An entry whose
 * store faulted at switch-out is stored only before the return to user
 * space until such a store succeeds.
 *
 * count == 0 unregisters.  prctl(PR_RSEQ_DESCHED_GET, what, 0, 0, 0)
 * answers for the calling thread:
 *	RSEQ_DESCHED_GET_COUNT		number of registered entries (0: none);
 *					EINVAL means the kernel does not
 *					support the deschedule notification
 *	RSEQ_DESCHED_GET_FAULTS		switch-out stores that faulted since
 *					the registration (saturates at INT_MAX)
 *	RSEQ_DESCHED_GET_SKIPPED	bit i set: entry i is not stored at
 *					switch-out until a store before the
 *					return to user space succeeds
 * Every child of clone()/fork() starts unregistered (a fork() child
 * registers again if it wants the notification); execve() clears it.
 */
#define RSEQ_DESCHED_MAX_ENTRIES	16

/* PR_RSEQ_DESCHED_GET queries (arg2). */
#define RSEQ_DESCHED_GET_COUNT		0
#define RSEQ_DESCHED_GET_FAULTS		1
#define RSEQ_DESCHED_GET_SKIPPED	2

/* Entry flag: also store resume_value before returning to user space. */
#define RSEQ_DESCHED_F_RESUME		0x1U

struct rseq_desched_entry {
	__u64 addr;		/* user address, naturally aligned for size */
	__u64 value;		/* stored when the thread is switched out */
	__u64 resume_value;	/* stored on return to user space (F_RESUME) */
	__u32 size;		/* 1, 2, 4 or 8 */
	__u32 flags;		/* 0 or RSEQ_DESCHED_F_RESUME */
};

#endif /* _UAPI_LINUX_RSEQ_DESCHED_H */

#endif /* _ONCPU_RSEQ_DESCHED_H */
