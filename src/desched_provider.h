/* SPDX-License-Identifier: MIT */
/*
 * desched_provider.h - private: the per-thread notification block and the
 * interface between liboncpu's desched core (desched.c) and the providers
 * that write into blocks (desched_kernel.c, desched_bpf.c, "none").
 *
 * The block layout is also read by the BPF programs of the bpf provider:
 * include this header after vmlinux.h in a BPF object (__bpf__ defined);
 * only the layout part is visible there.
 *
 * ---- The block -----------------------------------------------------------
 * One per thread that uses desched or the mutex, ONCPU_DESCHED_BLOCK_SIZE
 * bytes, aligned to its size, so it never crosses a page (what the BPF
 * provider's __uptr pinning requires). Blocks live in chunks that are never
 * unmapped; block `index` (1-based, never 0) is at a fixed address for the
 * life of the process.
 *
 *   off   size  field         written by
 *   0     4     oncpu         provider (entry 0: 0 on switch-out, 1 on
 *                             switch-in); library: 1 after registration,
 *                             2 (untracked) after unregistration, 0 when
 *                             the thread is gone
 *   4     4     gen           library: +1 when the thread is gone
 *   8     4     index         constant
 *   12    4     tid           library: owner's kernel tid, 0 when free
 *   16    8     self          constant: this block's user address (a BPF
 *                             program translates entry addresses into
 *                             offsets: off = addr - self)
 *   24    4     nr_entries    library: valid entries[] (0..16)
 *   28    4     provider      library: ONCPU_DESCHED_PROV_* registered, or 0
 *   32    4     state         library: FREE / LIVE / GHOST (never reused)
 *   36    4     next_free     library: free-list link (an index)
 *   40    24    (reserved)
 *   64    64    provider_data provider private (nonce, counters ...)
 *   128   256   words         user words: the only targets of user entries
 *   384   128   (reserved)
 *   512   512   entries[16]   struct rseq_desched_entry, the kernel's ABI:
 *                             entries[0] is the library's on-CPU entry
 *                             {&oncpu, 0, 1, 4, F_RESUME}; then the user's
 *
 * Every entry's [addr, addr+size) lies inside this block, in `oncpu` or in
 * `words` (the library validates). A provider writes only the entries of a
 * block registered by its own thread, and writes entries[i].value on
 * switch-out, entries[i].resume_value on switch-in when F_RESUME is set, for
 * i < nr_entries (bounded: nr_entries <= ONCPU_DESCHED_BLOCK_ENTRIES).
 */
#ifndef ONCPU_DESCHED_PROVIDER_H
#define ONCPU_DESCHED_PROVIDER_H

#if defined(__bpf__)
typedef __u8 _oncpu_u8;
typedef __u32 _oncpu_u32;
typedef __u64 _oncpu_u64;
#else
#include <stddef.h>
#include <stdint.h>
typedef uint8_t _oncpu_u8;
typedef uint32_t _oncpu_u32;
typedef uint64_t _oncpu_u64;
#endif

#define ONCPU_DESCHED_BLOCK_SIZE     1024
#define ONCPU_DESCHED_BLOCK_ENTRIES  16   /* RSEQ_DESCHED_MAX_ENTRIES */
#define ONCPU_DESCHED_BLOCK_WORDS    256  /* ONCPU_DESCHED_WORDS_SIZE */
#define ONCPU_DESCHED_ENTRY_F_RESUME 0x1U /* RSEQ_DESCHED_F_RESUME */

/* Values of the on-CPU word. */
#define ONCPU_DESCHED_WORD_OFF       0U
#define ONCPU_DESCHED_WORD_ON        1U
#define ONCPU_DESCHED_WORD_UNTRACKED 2U

/* Block states (library private). */
#define ONCPU_DESCHED_BLOCK_FREE 0U
#define ONCPU_DESCHED_BLOCK_LIVE 1U
/* Never reused: a fork child's copy of another thread's block, or the block
 * of a thread whose unregistration failed (the provider may still write it). */
#define ONCPU_DESCHED_BLOCK_GHOST 2U

/* Provider ids (block->provider). */
#define ONCPU_DESCHED_PROV_NONE   0U
#define ONCPU_DESCHED_PROV_KERNEL 1U
#define ONCPU_DESCHED_PROV_BPF    2U

/* Byte offsets, for BPF programs and assembly. */
#define ONCPU_DESCHED_OFF_ONCPU         0
#define ONCPU_DESCHED_OFF_GEN           4
#define ONCPU_DESCHED_OFF_SELF          16
#define ONCPU_DESCHED_OFF_NR_ENTRIES    24
#define ONCPU_DESCHED_OFF_PROVIDER_DATA 64
#define ONCPU_DESCHED_OFF_WORDS         128
#define ONCPU_DESCHED_OFF_ENTRIES       512

/* struct rseq_desched_entry of the kernel patch, byte for byte. */
struct _oncpu_desched_kentry {
	_oncpu_u64 addr;
	_oncpu_u64 value;
	_oncpu_u64 resume_value;
	_oncpu_u32 size;
	_oncpu_u32 flags;
};

struct _oncpu_desched_block {
	_oncpu_u32 oncpu;
	_oncpu_u32 gen;
	_oncpu_u32 index;
	_oncpu_u32 tid;
	_oncpu_u64 self;
	_oncpu_u32 nr_entries;
	_oncpu_u32 provider;
	_oncpu_u32 state;
	_oncpu_u32 next_free;
	_oncpu_u8 reserved0[24];
	_oncpu_u64 provider_data[8];
	_oncpu_u8 words[ONCPU_DESCHED_BLOCK_WORDS];
	_oncpu_u8 reserved1[128];
	struct _oncpu_desched_kentry entries[ONCPU_DESCHED_BLOCK_ENTRIES];
} __attribute__((aligned(ONCPU_DESCHED_BLOCK_SIZE)));

#if !defined(__bpf__)
_Static_assert(sizeof(struct _oncpu_desched_kentry) == 32, "rseq_desched_entry size");
_Static_assert(offsetof(struct _oncpu_desched_block, oncpu) == ONCPU_DESCHED_OFF_ONCPU, "oncpu");
_Static_assert(offsetof(struct _oncpu_desched_block, gen) == ONCPU_DESCHED_OFF_GEN, "gen");
_Static_assert(offsetof(struct _oncpu_desched_block, self) == ONCPU_DESCHED_OFF_SELF, "self");
_Static_assert(offsetof(struct _oncpu_desched_block, nr_entries) == ONCPU_DESCHED_OFF_NR_ENTRIES,
               "nr_entries");
_Static_assert(offsetof(struct _oncpu_desched_block, provider_data) ==
                   ONCPU_DESCHED_OFF_PROVIDER_DATA,
               "provider_data");
_Static_assert(offsetof(struct _oncpu_desched_block, words) == ONCPU_DESCHED_OFF_WORDS, "words");
_Static_assert(offsetof(struct _oncpu_desched_block, entries) == ONCPU_DESCHED_OFF_ENTRIES,
               "entries");
_Static_assert(sizeof(struct _oncpu_desched_block) == ONCPU_DESCHED_BLOCK_SIZE, "block size");
_Static_assert(ONCPU_DESCHED_BLOCK_SIZE <= 4096 && (4096 % ONCPU_DESCHED_BLOCK_SIZE) == 0,
               "a block never crosses a page");

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

/* ---- Services of desched.c for providers and the mutex ---- */
/* This thread's block, allocated and registered on first use; NULL when
 * none can be had (ENOMEM, or the thread is exiting). Async-signal-safe
 * once the thread has its block. */
struct _oncpu_desched_block *_oncpu_desched_block_self(void) __attribute__((visibility("hidden")));
/* The pool: chunks of 64 blocks, mapped on demand, never unmapped; block i
 * (1-based; slot 0 of chunk 0 is never used) is slot i % 64 of chunk i / 64. */
#define ONCPU_DESCHED_CHUNK_SHIFT 6
#define ONCPU_DESCHED_MAX_CHUNKS  16384 /* 1 M blocks: live threads plus ghosts */
#define ONCPU_DESCHED_MAX_INDEX   ((ONCPU_DESCHED_MAX_CHUNKS << ONCPU_DESCHED_CHUNK_SHIFT) - 1)
extern struct _oncpu_desched_block *_oncpu_desched_chunks[ONCPU_DESCHED_MAX_CHUNKS]
    __attribute__((visibility("hidden")));

/* The block of index i, or NULL when i was never allocated. Lock-free; the
 * result stays mapped forever (it may belong to another thread by now). */
static inline struct _oncpu_desched_block *_oncpu_desched_block_at(_oncpu_u32 i)
{
	if (i == 0 || i > ONCPU_DESCHED_MAX_INDEX)
		return NULL;
	/* Acquire: pairs with the release that published the chunk. */
	struct _oncpu_desched_block *c = __atomic_load_n(
	    &_oncpu_desched_chunks[i >> ONCPU_DESCHED_CHUNK_SHIFT], __ATOMIC_ACQUIRE);
	return c ? c + (i & ((1U << ONCPU_DESCHED_CHUNK_SHIFT) - 1)) : NULL;
}
/* This thread's block index, cached for the mutex fast path: 0 until the
 * thread asked for its block, ONCPU_DESCHED_INDEX_NONE when it cannot have
 * one (the thread is exiting, or ENOMEM). */
#define ONCPU_DESCHED_INDEX_NONE 0xFFFFFFFFU
extern __thread _oncpu_u32 _oncpu_desched_self_index
    __attribute__((visibility("hidden"), tls_model("initial-exec")));
/* Incremented in every fork child (by desched.c's atfork handler): state
 * tagged with an older value was copied from the parent. */
extern _oncpu_u32 _oncpu_fork_generation __attribute__((visibility("hidden")));
/* After the calling thread blocked (it was switched out, or should have
 * been): when the provider lost its registration, registers it again, or
 * makes its on-CPU word say untracked. Not async-signal-safe. */
void _oncpu_desched_recheck(void) __attribute__((visibility("hidden")));
/* The active provider (selected on first call). */
const struct _oncpu_desched_provider *_oncpu_desched_active(void)
    __attribute__((visibility("hidden")));
#endif /* !__bpf__ */

#endif /* ONCPU_DESCHED_PROVIDER_H */
