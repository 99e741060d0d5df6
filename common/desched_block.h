/* SPDX-License-Identifier: MIT */
/*
 * desched_block.h - the per-thread notification block: its layout and the
 * values of its fields, shared by liboncpu (src/desched*.c), the BPF
 * programs of the bpf provider (bpf/oncpu_desched.bpf.c, which include it
 * after vmlinux.h, with __bpf__ defined), oncpu-bpfd and the BPF tests.
 * Plain C and BPF C: nothing else of the library.
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
#ifndef ONCPU_DESCHED_BLOCK_H
#define ONCPU_DESCHED_BLOCK_H

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
#endif /* !__bpf__ */

#endif /* ONCPU_DESCHED_BLOCK_H */
