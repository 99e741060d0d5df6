// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * oncpu_desched.bpf.c - the "bpf" deschedule-notification provider: writes
 * the entries of each registered thread's notification block when the thread
 * is switched out (value) and in (resume_value), on a stock kernel 6.13+.
 *
 * Why this shape (facts of 6.13+ kernels under lockdown=integrity):
 *   - bpf_probe_write_user is refused, so a program cannot write arbitrary
 *     user addresses. A task-storage value holding a __uptr can: the kernel
 *     pins the user object (one page at most) when the thread registers, and
 *     programs write it through the kernel mapping, from any context.
 *   - So the library owns the target memory: one block per thread
 *     (common/desched_block.h), whose entries point into the block itself.
 *     Every entry is bounds-checked here: a target outside the block's
 *     on-CPU word or user words is refused and counted.
 *   - Registration is authenticated in the thread's own context (the arm
 *     uprobe, see oncpu_bpf.h): a registration made for another thread is
 *     never armed and never written, and one never armed is dropped after
 *     ONCPU_BPF_UNARMED_GRACE switch-outs of its thread.
 *   - A map update from user space runs no program, and the kernel checks
 *     no permission on the task a pidfd key names: who may write the reg
 *     map at all is the pin's mode (oncpu-bpfd load --group).
 *
 * Programs:
 *   oncpu_switch       tp_btf/sched_switch: prev's values, next's resume values
 *   oncpu_resume       tp_btf/rseq_update (return to user of an rseq thread):
 *                      repairs a switch-in that sched_switch did not show
 *   oncpu_exit         tp_btf/sched_process_exit: switch-out values, then
 *                      removes the registration
 *   oncpu_exec         tp_btf/sched_process_exec: removes the registration
 *                      (the pinned block belonged to the old image)
 *   oncpu_arm          uprobe on _oncpu_desched_bpf_arm in each binary file
 *                      that contains it (liboncpu.so, static executables)
 * Work per switch is bounded: for a task without task-local storage (the
 * common case) one load; else two task-storage lookups (one when it is not
 * registered) and at most ONCPU_DESCHED_BLOCK_ENTRIES writes.
 *
 * Built with clang's BPF target (clang 19: older ones drop the uptr tag) and
 * no vmlinux.h: the programs pass kernel pointers to helpers and read a few
 * fields (through CO-RE relocations), so no kernel structure layout is
 * compiled in; the tracepoints' argument types come from the running
 * kernel's BTF at load time.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "desched_block.h"
#include "oncpu_bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* The kernel fields read (CO-RE: relocated at load time). bpf_storage: a
 * task without any task-local storage cannot be registered, and most tasks
 * have none, so the helpers are skipped for them. flags: PF_KTHREAD. */
struct task_struct {
	void *bpf_storage;
	unsigned int flags;
} __attribute__((preserve_access_index));
#define ONCPU_PF_KTHREAD 0x00200000 /* include/linux/sched.h */

#define __oncpu_uptr __attribute__((btf_type_tag("uptr")))

/* The uprobe's context, bpf_user_pt_regs_t: only the first argument is read. */
#if defined(__TARGET_ARCH_x86)
struct oncpu_uregs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
};
#define ONCPU_ARG1(regs) ((regs)->di)
#elif defined(__TARGET_ARCH_arm64)
struct oncpu_uregs {
	unsigned long regs[31];
};
#define ONCPU_ARG1(regs) ((regs)->regs[0])
#else
#error "oncpu_desched.bpf.c: define __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif

/* struct oncpu_bpf_reg_user, as the programs see it. */
struct oncpu_bpf_reg {
	struct _oncpu_desched_block __oncpu_uptr *block;
	__u64 strikes;
};
/* Makes clang emit the block's full BTF (a tagged pointer alone gives a
 * forward declaration, and the kernel needs the size to pin it). */
struct _oncpu_desched_block *_oncpu_bpf_block_btf;

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct oncpu_bpf_reg);
} oncpu_reg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct oncpu_bpf_auth);
} oncpu_auth SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ONCPU_BPF_NR_STATS);
	__type(key, __u32);
	__type(value, __u64);
} oncpu_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct oncpu_bpf_info);
} oncpu_info SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ONCPU_BPF_MAX_FILES);
	__type(key, __u32);
	__type(value, struct oncpu_bpf_file);
} oncpu_files SEC(".maps");

/* Counters of the tracepoint programs, which run with preemption disabled:
 * a plain add on this CPU's copy. */
static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&oncpu_stats, &idx);
	if (c)
		*c += n;
}

/* Counters of the arm program: a uprobe program can be preempted, and
 * another thread's arm program run on the same CPU meanwhile. */
static __always_inline void stat_add_atomic(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&oncpu_stats, &idx);
	if (c)
		__sync_fetch_and_add(c, n);
}

/* False when t has no task-local storage at all (so no registration). */
static __always_inline int may_be_registered(struct task_struct *t)
{
	return !bpf_core_field_exists(t->bpf_storage) || t->bpf_storage;
}

/* The armed block of task t, or NULL (not registered, or not armed). When
 * reg is not NULL, *reg is set to t's registration, armed or not. */
static __always_inline struct _oncpu_desched_block *armed_block(struct task_struct *t,
                                                                struct oncpu_bpf_reg **reg)
{
	if (!may_be_registered(t))
		return 0;
	struct oncpu_bpf_reg *r = bpf_task_storage_get(&oncpu_reg, t, 0, 0);
	if (reg)
		*reg = r;
	if (!r)
		return 0;
	struct _oncpu_desched_block *b = r->block;
	if (!b)
		return 0;
	struct oncpu_bpf_auth *a = bpf_task_storage_get(&oncpu_auth, t, 0, 0);
	/* Armed means: this very element, with this very page, was verified
	 * by the arm program running as t, and the page still holds the
	 * nonce it armed (a page and an element that were freed and reused
	 * for someone else's registration do not hold it). A new registration
	 * is a new element: unarmed. */
	if (!a || a->elem != (__u64)r || a->kaddr != (__u64)b || !(a->nonce & 1) ||
	    *(volatile __u64 *)&b->provider_data[ONCPU_BPF_PD_ARM] != a->nonce) {
		stat_add(ONCPU_BPF_STAT_UNARMED, 1);
		return 0;
	}
	return b;
}

/* A switch-out of t, whose registration r is not armed: one strike; past
 * the grace, the registration (and the pin of its page) is dropped. A
 * kernel thread never registers itself: dropped at once. */
static __always_inline void strike_unarmed(struct task_struct *t, struct oncpu_bpf_reg *r)
{
	if (r->strikes < ONCPU_BPF_UNARMED_GRACE && !(t->flags & ONCPU_PF_KTHREAD)) {
		r->strikes++;
		return;
	}
	if (bpf_task_storage_delete(&oncpu_reg, t) == 0)
		stat_add(ONCPU_BPF_STAT_DROPPED, 1);
}

/* A target is the on-CPU word or the user words, naturally aligned. */
static __always_inline int target_ok(__u64 off, __u32 size)
{
	if (size != 1 && size != 2 && size != 4 && size != 8)
		return 0;
	if (off & (size - 1))
		return 0;
	if (off + size <= ONCPU_DESCHED_OFF_ONCPU + 4)
		return 1;
	return off >= ONCPU_DESCHED_OFF_WORDS &&
	       off + size <= ONCPU_DESCHED_OFF_WORDS + ONCPU_DESCHED_BLOCK_WORDS;
}

/* Writes value (resume = 0) or resume_value (resume = 1, F_RESUME entries
 * only) of each of b's entries; returns the number written. */
static __always_inline __u32 write_entries(struct _oncpu_desched_block *b, int resume)
{
	__u32 n = *(volatile __u32 *)&b->nr_entries;
	__u64 self = *(volatile __u64 *)&b->self;
	__u32 written = 0, bad = 0;

	for (__u32 i = 0; i < ONCPU_DESCHED_BLOCK_ENTRIES; i++) {
		if (i >= n)
			break;
		struct _oncpu_desched_kentry *e = &b->entries[i];
		__u32 size = e->size, flags = e->flags;
		if (resume && !(flags & ONCPU_DESCHED_ENTRY_F_RESUME))
			continue;
		__u64 v = resume ? e->resume_value : e->value;
		__u64 off = e->addr - self;
		if (!target_ok(off, size)) {
			bad++;
			continue;
		}
		/* Restated for the verifier: the store stays inside the block. */
		if (off > ONCPU_DESCHED_BLOCK_SIZE - 8)
			continue;
		void *p = (char *)b + off;
		switch (size) {
		case 1:
			*(volatile __u8 *)p = (__u8)v;
			break;
		case 2:
			*(volatile __u16 *)p = (__u16)v;
			break;
		case 4:
			*(volatile __u32 *)p = (__u32)v;
			break;
		default:
			*(volatile __u64 *)p = v;
			break;
		}
		written++;
	}
	if (bad) {
		b->provider_data[ONCPU_BPF_PD_BAD_ENTRY] += bad;
		stat_add(ONCPU_BPF_STAT_BAD_ENTRY, bad);
	}
	return written;
}

SEC("tp_btf/sched_switch")
int oncpu_switch(__u64 *ctx)
{
	/* TP_PROTO(bool preempt, struct task_struct *prev,
	 *          struct task_struct *next, unsigned int prev_state) */
	struct task_struct *prev = (struct task_struct *)ctx[1];
	struct task_struct *next = (struct task_struct *)ctx[2];
	struct oncpu_bpf_reg *r = 0;
	struct _oncpu_desched_block *b;

	b = armed_block(prev, &r);
	if (b) {
		__u32 w = write_entries(b, 0);
		b->provider_data[ONCPU_BPF_PD_SWITCH_OUT]++;
		stat_add(ONCPU_BPF_STAT_SWITCH_OUT, 1);
		stat_add(ONCPU_BPF_STAT_WRITES, w);
	} else if (r) {
		strike_unarmed(prev, r);
	}
	b = armed_block(next, 0);
	if (b) {
		if (*(volatile __u32 *)&b->oncpu == ONCPU_DESCHED_WORD_ON)
			stat_add(ONCPU_BPF_STAT_MISSED_OUT, 1);
		__u32 w = write_entries(b, 1);
		b->provider_data[ONCPU_BPF_PD_SWITCH_IN]++;
		stat_add(ONCPU_BPF_STAT_SWITCH_IN, 1);
		stat_add(ONCPU_BPF_STAT_WRITES, w);
	}
	return 0;
}

/* Return to user space of a thread with an rseq area, after a switch, a
 * migration or a signal: if the on-CPU word still says "off", the switch-in
 * was not seen; write the resume values now, before user code runs. */
SEC("tp_btf/rseq_update")
int oncpu_resume(__u64 *ctx)
{
	struct task_struct *t = (struct task_struct *)ctx[0];
	if (!may_be_registered(t))
		return 0;
	/* Reading a registered block is harmless, armed or not: check the
	 * registration's authentication only when a write is due. */
	struct oncpu_bpf_reg *r = bpf_task_storage_get(&oncpu_reg, t, 0, 0);
	if (!r || !r->block || *(volatile __u32 *)&r->block->oncpu != ONCPU_DESCHED_WORD_OFF)
		return 0;
	struct _oncpu_desched_block *b = armed_block(t, 0);
	if (b && *(volatile __u32 *)&b->oncpu == ONCPU_DESCHED_WORD_OFF) {
		__u32 w = write_entries(b, 1);
		b->provider_data[ONCPU_BPF_PD_REPAIRED]++;
		stat_add(ONCPU_BPF_STAT_REPAIRED, 1);
		stat_add(ONCPU_BPF_STAT_WRITES, w);
	}
	return 0;
}

/* The thread exits without having unregistered (no destructor ran): say
 * "off CPU" for the last time, then drop the registration (and the pin). */
SEC("tp_btf/sched_process_exit")
int oncpu_exit(__u64 *ctx)
{
	struct task_struct *t = (struct task_struct *)ctx[0];
	if (!may_be_registered(t))
		return 0;
	struct _oncpu_desched_block *b = armed_block(t, 0);
	if (b)
		stat_add(ONCPU_BPF_STAT_WRITES, write_entries(b, 0));
	if (bpf_task_storage_delete(&oncpu_reg, t) == 0)
		stat_add(ONCPU_BPF_STAT_EXIT, 1);
	bpf_task_storage_delete(&oncpu_auth, t);
	return 0;
}

/* exec replaced the address space: the pinned block belonged to the old one. */
SEC("tp_btf/sched_process_exec")
int oncpu_exec(__u64 *ctx)
{
	struct task_struct *t = (struct task_struct *)ctx[0];
	if (!may_be_registered(t))
		return 0;
	if (bpf_task_storage_delete(&oncpu_reg, t) == 0)
		stat_add(ONCPU_BPF_STAT_EXEC, 1);
	bpf_task_storage_delete(&oncpu_auth, t);
	return 0;
}

/* Entry of _oncpu_desched_bpf_arm(block), as the calling thread, which has
 * just stored a fresh random nonce (even, non-zero) in its block's arm word.
 * The pinned page is the caller's block only if the nonce reads the same
 * through the kernel mapping of the pinned page and through the caller's
 * own address space at the address it passed. Nothing is written into a
 * block that fails the check: a registration made by another process for
 * this thread learns nothing, not even that the thread tried to arm. */
SEC("uprobe")
int oncpu_arm(struct oncpu_uregs *ctx)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct oncpu_bpf_reg *r = bpf_task_storage_get(&oncpu_reg, cur, 0, 0);
	if (!r || !r->block) {
		stat_add_atomic(ONCPU_BPF_STAT_ARM_NOREG, 1);
		return 0;
	}
	struct _oncpu_desched_block *b = r->block;
	__u64 uaddr = ONCPU_ARG1(ctx);
	__u64 nonce = *(volatile __u64 *)&b->provider_data[ONCPU_BPF_PD_ARM];
	__u64 back = 0;

	if (nonce == 0 || (nonce & 1) ||
	    bpf_probe_read_user(
	        &back, sizeof(back),
	        (void *)(uaddr + ONCPU_DESCHED_OFF_PROVIDER_DATA + 8 * ONCPU_BPF_PD_ARM)) != 0 ||
	    back != nonce) {
		stat_add_atomic(ONCPU_BPF_STAT_ARM_REFUSED, 1);
		/* Not the caller's memory: drop it (and its pin). */
		bpf_task_storage_delete(&oncpu_reg, cur);
		return 0;
	}
	struct oncpu_bpf_auth *a =
	    bpf_task_storage_get(&oncpu_auth, cur, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!a) {
		stat_add_atomic(ONCPU_BPF_STAT_ARM_NOMEM, 1);
		return 0;
	}
	a->elem = (__u64)r;
	a->kaddr = (__u64)b;
	a->nonce = nonce | 1;
	*(volatile __u64 *)&b->provider_data[ONCPU_BPF_PD_ARM] = nonce | 1;
	stat_add_atomic(ONCPU_BPF_STAT_ARM_OK, 1);
	return 0;
}
