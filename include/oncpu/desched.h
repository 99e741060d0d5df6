/* SPDX-License-Identifier: MIT */
/*
 * oncpu/desched.h - deschedule notification: values written into this
 * thread's memory when it leaves a CPU, and again when it runs.
 *
 * Every thread that uses this module (or an oncpu_mutex) owns one
 * notification block: a small, 64-byte aligned, page-confined object that
 * liboncpu allocates from a pool that is never unmapped (type-stable memory).
 * The block holds
 *   - the library's on-CPU word: 0 while the thread is switched out, 1 while
 *     it runs (what oncpu_desched_state() and the adaptive mutex read);
 *   - ONCPU_DESCHED_WORDS_SIZE bytes of user words (oncpu_desched_words()),
 *     the only memory a user entry may target;
 *   - the registered entries themselves.
 * A provider writes the values: "kernel" (a kernel with the deschedule
 * notification patch: prctl(PR_RSEQ_DESCHED_SET)), "bpf" (a BPF program
 * loaded by oncpu-bpfd on a stock 6.13+ kernel) or "none" (nothing is ever
 * written; registration says ENOTSUP). The first available of kernel, bpf,
 * none is chosen once per process; the environment variable
 * ONCPU_DESCHED_PROVIDER=kernel|bpf|none|auto overrides the choice (a
 * named provider that is not available gives "none").
 *
 * Writes are hints: a provider may miss a switch (a write that would fault,
 * a switch the tracer did not see) and repairs it on the thread's next
 * return to user space. The thread itself always sees its own words as
 * "running" while it runs; other threads see a state a few microseconds old.
 *
 * Lifetime: a block stays mapped forever. When its thread exits, the block's
 * generation changes, its on-CPU word reads 0 (off CPU) and it may later be
 * given to a new thread. A waiter keeps a token (oncpu_desched_self()), not
 * a pointer, and oncpu_desched_state() tells it when the token went stale.
 *
 * fork(): the child's thread keeps its block, its words and its entries
 * (registered again with the provider in the child). Blocks of the parent's
 * other threads become "gone" in the child (their tokens read
 * ONCPU_DESCHED_GONE) and are never reused there.
 */
#ifndef ONCPU_DESCHED_H
#define ONCPU_DESCHED_H

#include <stdint.h>

#include <oncpu/config.h>

ONCPU_BEGIN_DECLS

/* Most user entries per thread (the kernel's 16, less the library's own). */
#define ONCPU_DESCHED_MAX_ENTRIES 15
/* Bytes of user words in each thread's block (64-byte aligned). */
#define ONCPU_DESCHED_WORDS_SIZE 256
/* Entry flag: also write resume_value when the thread runs again. */
#define ONCPU_DESCHED_F_RESUME 0x1U

/*
 * One notification: when the thread is switched out, `value` is stored at
 * `addr` with a single store of `size` bytes (1, 2, 4 or 8; addr aligned to
 * size; value must fit in size bytes); with ONCPU_DESCHED_F_RESUME,
 * `resume_value` is stored before the thread runs user code again.
 * `addr` must lie inside the calling thread's oncpu_desched_words().
 */
struct oncpu_desched_entry {
	void *addr;
	uint64_t value;
	uint64_t resume_value;
	uint32_t size;
	uint32_t flags;
};

/* oncpu_desched_provider - "kernel", "bpf" or "none": the process's provider. */
ONCPU_API const char *oncpu_desched_provider(void);

/*
 * oncpu_desched_words - this thread's user words: ONCPU_DESCHED_WORDS_SIZE
 * bytes, 64-byte aligned, zero when the thread first gets its block, valid
 * (mapped) forever, owned by this thread until it exits. Other threads may
 * read them (the point of the module). NULL with errno ENOMEM.
 */
ONCPU_API void *oncpu_desched_words(void);

/*
 * oncpu_desched_register - replace this thread's entries by `count` entries
 * (count 0 removes them; entries may then be NULL). The entries are copied.
 * Takes effect before the call returns. Returns 0, or -1 with errno:
 *   E2BIG    count > ONCPU_DESCHED_MAX_ENTRIES
 *   EINVAL   entries NULL with count > 0; a size other than 1, 2, 4, 8; addr
 *            not aligned to size; [addr, addr+size) not inside this thread's
 *            words; unknown flags; a value or resume_value that does not fit
 *   ENOTSUP  the provider is "none": the entries were valid but nothing will
 *            ever be written (previous entries are removed)
 *   ENOMEM   no block could be allocated for this thread
 *   other    the provider's own refusal (e.g. EPERM), entries removed
 * Validation errors leave the previous entries in place.
 * Only the calling thread's entries change; any thread may call it for itself
 * concurrently with others. Not async-signal-safe.
 */
ONCPU_API int oncpu_desched_register(const struct oncpu_desched_entry *entries, unsigned int count);

/* oncpu_desched_unregister - oncpu_desched_register(NULL, 0), but 0 (not
 * ENOTSUP) under provider "none". The library's on-CPU word stays tracked. */
ONCPU_API int oncpu_desched_unregister(void);

/*
 * Tokens: a thread's identity for observers that outlives the thread.
 * oncpu_desched_self - this thread's token (never 0), or 0 with errno ENOMEM.
 * oncpu_desched_state - what a token's thread is doing now, from any thread:
 *   ONCPU_DESCHED_ON_CPU     running
 *   ONCPU_DESCHED_OFF_CPU    switched out (blocked, preempted)
 *   ONCPU_DESCHED_UNTRACKED  alive, but no provider tracks it (provider
 *                            "none", or its registration failed)
 *   ONCPU_DESCHED_GONE       the thread exited (or, in a fork child, was
 *                            not copied); also for token 0 and foreign values
 */
typedef uint64_t oncpu_desched_token_t;
enum oncpu_desched_state {
	ONCPU_DESCHED_GONE = -1,
	ONCPU_DESCHED_OFF_CPU = 0,
	ONCPU_DESCHED_ON_CPU = 1,
	ONCPU_DESCHED_UNTRACKED = 2,
};
ONCPU_API oncpu_desched_token_t oncpu_desched_self(void);
ONCPU_API int oncpu_desched_state(oncpu_desched_token_t token);

ONCPU_END_DECLS

#endif /* ONCPU_DESCHED_H */
