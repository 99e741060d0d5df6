/* SPDX-License-Identifier: MIT */
/*
 * oncpu_bpf.h - the contract between the BPF programs of the "bpf"
 * deschedule-notification provider (oncpu_desched.bpf.c), their loader
 * (oncpu-bpfd) and the library's provider (src/desched_bpf.c).
 *
 * Pinned objects, under the pin directory (default ONCPU_BPF_PIN_DIR). GROUP is
 * the group that `oncpu-bpfd load --group` grants registration (default: none,
 * so only root registers):
 *
 *   info      ARRAY[1] of struct oncpu_bpf_info, frozen: the ABI version and
 *             the block size the programs were built for.       mode 0444
 *   reg       TASK_STORAGE of struct oncpu_bpf_reg: a thread's registration,
 *             keyed (from user space) by a pidfd of the thread. Written by
 *             the thread itself through BPF_MAP_UPDATE_ELEM; the kernel pins
 *             the block (a __uptr, kernel 6.13+) in the updater's own
 *             address space.                  mode 0620 root:GROUP (0600)
 *   auth      TASK_STORAGE of struct oncpu_bpf_auth: written only by the
 *             programs; no user access.                          mode 0600
 *   stats     PERCPU_ARRAY[ONCPU_BPF_NR_STATS] of __u64 counters.
 *                                             mode 0640 root:GROUP (0600)
 *   files     ARRAY[ONCPU_BPF_MAX_FILES] of struct oncpu_bpf_file: the
 *             binary files the loader attached the arm uprobe to (the
 *             loader's bookkeeping; no program reads it).        mode 0600
 *   links/    the attachments: switch, resume, exit, exec and one
 *             arm-<dev>-<ino> per binary file (uprobe) that contains
 *             _oncpu_desched_bpf_arm.                            mode 0700
 *
 * Registration (by the thread, for itself):
 *   1. reg[pidfd(self)] = { .block = its block's user address, .strikes = 0 }
 *      (BPF_ANY);
 *   2. block->provider_data[ONCPU_BPF_PD_ARM] = a fresh random nonce (even,
 *      non-zero: getrandom(2));
 *   3. call _oncpu_desched_bpf_arm(block): a uprobe runs the arm program as
 *      this thread. It reads the nonce through the kernel mapping of the
 *      pinned page and through the user address the thread passed, in the
 *      thread's own address space. Only if both agree does it record, in
 *      auth, the registration's identity (the map element, the pinned kernel
 *      address and nonce | 1) and store nonce | 1 in the arm word; otherwise
 *      it writes nothing and deletes the registration;
 *   4. the thread checks the arm word: nonce | 1 means armed; the nonce
 *      unchanged means the uprobe did not run (not attached to this binary
 *      file: the library was replaced, or the loader never attached it) or
 *      refused.
 * The switch programs write a block only when auth matches the current
 * registration element, its pinned page, and the nonce in the block's arm
 * word. A registration that is not armed by the time its thread has been
 * switched out ONCPU_BPF_UNARMED_GRACE times is deleted (its pin released);
 * one on a kernel thread at its first switch-out.
 * Who may write reg is the pin's mode: the kernel checks no permission on
 * the task a pidfd names, and a map update from user space runs no program
 * that could (an fmod_ret or LSM program on security_bpf could; kernels
 * that refuse tracing programs, such as the 6.18 this was tested on, do not
 * load one). A registration made for another thread is never armed (its
 * events are never written anywhere) and is dropped as above, but it does
 * replace that thread's own registration: the thread notices and registers
 * again (src/desched_bpf.c). So the group is trusted not to disturb others.
 */
#ifndef ONCPU_BPF_H
#define ONCPU_BPF_H

#if defined(__bpf__)
typedef __u32 _oncpu_bpf_u32;
typedef __u64 _oncpu_bpf_u64;
#else
#include <stdint.h>
typedef uint32_t _oncpu_bpf_u32;
typedef uint64_t _oncpu_bpf_u64;
#endif

/* Raised on any change of this file's layouts or of the block's. */
#define ONCPU_BPF_ABI 2

#define ONCPU_BPF_PIN_DIR   "/sys/fs/bpf/oncpu"
#define ONCPU_BPF_PIN_INFO  "info"
#define ONCPU_BPF_PIN_REG   "reg"
#define ONCPU_BPF_PIN_AUTH  "auth"
#define ONCPU_BPF_PIN_STATS "stats"
#define ONCPU_BPF_PIN_FILES "files"
#define ONCPU_BPF_PIN_LINKS "links"
#define ONCPU_BPF_MAX_FILES 64
/* The function whose entry the arm uprobe is attached to. */
#define ONCPU_BPF_ARM_SYMBOL "_oncpu_desched_bpf_arm"
/* Switch-outs a registration may stay unarmed before the programs drop it
 * (registering and arming take microseconds and never block). */
#define ONCPU_BPF_UNARMED_GRACE 4

/* provider_data[] words of a block that this provider uses. */
#define ONCPU_BPF_PD_ARM        0 /* nonce (even), nonce | 1 once armed */
#define ONCPU_BPF_PD_SWITCH_OUT 1 /* switch-outs written (thread's counter) */
#define ONCPU_BPF_PD_SWITCH_IN  2 /* switch-ins written */
#define ONCPU_BPF_PD_REPAIRED   3 /* switch-ins repaired at return to user */
#define ONCPU_BPF_PD_BAD_ENTRY  4 /* entries refused (bounds, size, alignment) */

struct oncpu_bpf_info {
	_oncpu_bpf_u32 abi;        /* ONCPU_BPF_ABI */
	_oncpu_bpf_u32 block_size; /* ONCPU_DESCHED_BLOCK_SIZE */
	_oncpu_bpf_u64 loaded_ns;  /* CLOCK_REALTIME of the load */
	/* Mode of the bpffs directory above the pin directory before any
	 * oncpu provider added search permission for others; 0: untouched.
	 * The last provider unloaded there restores it. */
	_oncpu_bpf_u32 parent_mode;
	_oncpu_bpf_u32 pad;
};

/* Value of the files map: one attached binary file (used = 0: a free slot). */
struct oncpu_bpf_file {
	_oncpu_bpf_u64 dev; /* st_dev and st_ino when attached: a uprobe */
	_oncpu_bpf_u64 ino; /* belongs to this inode, not to the path */
	_oncpu_bpf_u32 used;
	_oncpu_bpf_u32 pad;
	char path[232];
};

/* Value of the auth map (BPF only): what the arm program verified. */
struct oncpu_bpf_auth {
	_oncpu_bpf_u64 elem;  /* kernel address of the reg element it armed */
	_oncpu_bpf_u64 kaddr; /* kernel address of the pinned block */
	_oncpu_bpf_u64 nonce; /* nonce | 1, as stored in the block's arm word */
};

/* Value of the reg map, as user space writes it: the block's user address
 * (the kernel replaces it by the pinned kernel address). In the BPF object
 * the field is a __uptr to the block type. */
struct oncpu_bpf_reg_user {
	_oncpu_bpf_u64 block;
	_oncpu_bpf_u64 strikes; /* 0; the programs count unarmed switch-outs */
};

/* Counters of the stats map (sum over CPUs). */
enum oncpu_bpf_stat {
	ONCPU_BPF_STAT_SWITCH_OUT,  /* switch-outs of armed threads */
	ONCPU_BPF_STAT_SWITCH_IN,   /* switch-ins of armed threads */
	ONCPU_BPF_STAT_WRITES,      /* entry values written */
	ONCPU_BPF_STAT_UNARMED,     /* switches of registered, unarmed threads */
	ONCPU_BPF_STAT_MISSED_OUT,  /* switch-in found the word on: a missed switch-out */
	ONCPU_BPF_STAT_REPAIRED,    /* return to user found the word off: a missed switch-in */
	ONCPU_BPF_STAT_BAD_ENTRY,   /* entries refused by the bounds check */
	ONCPU_BPF_STAT_ARM_OK,      /* threads armed */
	ONCPU_BPF_STAT_ARM_REFUSED, /* arm calls whose block was not the caller's */
	ONCPU_BPF_STAT_ARM_NOREG,   /* arm calls without a registration */
	ONCPU_BPF_STAT_ARM_NOMEM,   /* arm calls that could not create the auth entry */
	ONCPU_BPF_STAT_EXIT,        /* registrations removed at thread exit */
	ONCPU_BPF_STAT_EXEC,        /* registrations removed at exec */
	ONCPU_BPF_STAT_DROPPED,     /* registrations dropped: never armed */
	ONCPU_BPF_NR_STATS
};

#define ONCPU_BPF_STAT_NAMES                                                                       \
	{                                                                                          \
		"switch_out", "switch_in", "writes", "unarmed", "missed_out", "repaired",          \
		    "bad_entry", "arm_ok", "arm_refused", "arm_noreg", "arm_nomem", "exit",        \
		    "exec", "dropped"                                                              \
	}

#endif /* ONCPU_BPF_H */
