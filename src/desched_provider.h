/* SPDX-License-Identifier: MIT */
/*
 * desched_provider.h - private: the interface between liboncpu's desched
 * core (desched.c) and the providers that write into the notification
 * blocks (desched_kernel.c, desched_bpf.c, "none"). The block's layout is
 * common/desched_block.h; the pool of blocks desched_pool.h.
 */
#ifndef ONCPU_DESCHED_PROVIDER_H
#define ONCPU_DESCHED_PROVIDER_H

#include "desched_block.h"

/* ---- The provider interface ----------------------------------------------
 * Process-wide selection (desched.c): the first provider of kernel, bpf,
 * none whose probe() answers 0, once, on the first use of desched or the
 * mutex; ONCPU_DESCHED_PROVIDER=name|auto overrides the order.
 *
 * Calls (every per-thread call runs in the context of the thread that owns
 * `blk`, with blk->entries[0..nr_entries) already filled and validated):
 *   probe()                 0 when the provider works in this process, else
 *                           -errno. Called at most once, from the first
 *                           thread that uses desched, not from a signal
 *                           handler. May set up process-wide state (open
 *                           pinned maps ...).
 *   thread_register(blk)    start (or, when already registered, replace)
 *                           notifications for the calling thread into blk,
 *                           per blk->entries / nr_entries. 0 or -errno.
 *                           After a success the library stores 1 in
 *                           blk->oncpu (the thread runs) and records the
 *                           provider in blk->provider.
 *   thread_unregister(blk)  stop them; 0 or -errno. After a 0 the provider
 *                           never writes blk again for this thread; after
 *                           an error it may (the block is then never
 *                           reused). Called before the thread exits (a
 *                           pthread key destructor) and on explicit
 *                           unregistration of every entry including the
 *                           on-CPU word (not in normal use).
 *   thread_check(blk)       optional: 0 while the provider still writes blk
 *                           for the calling thread, -errno when it found the
 *                           registration lost (then the library registers
 *                           again, or marks the thread untracked). Called
 *                           after the thread blocked in the library.
 *   atfork_child(blk)       optional (NULL: thread_register is called): in
 *                           the child after fork(), for the one thread
 *                           there, with blk as the parent registered it.
 *                           Neither the kernel nor a BPF task storage entry
 *                           carries a registration into the child.
 * A provider never keeps a pointer into a block past thread_unregister and
 * never writes outside blk's oncpu and words (entries point only there).
 */
struct _oncpu_desched_provider {
	const char *name;
	_oncpu_u32 id; /* ONCPU_DESCHED_PROV_* */
	int (*probe)(void);
	int (*thread_register)(struct _oncpu_desched_block *blk);
	int (*thread_unregister)(struct _oncpu_desched_block *blk);
	int (*thread_check)(struct _oncpu_desched_block *blk);
	int (*atfork_child)(struct _oncpu_desched_block *blk);
};

/* The providers (strong references: a static link pulls every provider's
 * object file from liboncpu.a; a statically linked program still needs
 * `oncpu-bpfd attach PROGRAM` for the bpf provider's uprobe). */
extern const struct _oncpu_desched_provider _oncpu_desched_provider_kernel
    __attribute__((visibility("hidden")));
extern const struct _oncpu_desched_provider _oncpu_desched_provider_bpf
    __attribute__((visibility("hidden")));
extern const struct _oncpu_desched_provider _oncpu_desched_provider_none
    __attribute__((visibility("hidden")));

/* ---- Services of desched.c for the providers ---- */
/* This thread's block, allocated and registered on first use; NULL when
 * none can be had (ENOMEM, or the thread is exiting). Async-signal-safe
 * once the thread has its block. */
struct _oncpu_desched_block *_oncpu_desched_block_self(void) __attribute__((visibility("hidden")));
/* The active provider (selected on first call). */
const struct _oncpu_desched_provider *_oncpu_desched_active(void)
    __attribute__((visibility("hidden")));

#endif /* ONCPU_DESCHED_PROVIDER_H */
