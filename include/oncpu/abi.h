/* SPDX-License-Identifier: MIT */
/*
 * oncpu/abi.h - the kernel's rseq ABI, mirrored.
 *
 * Layouts of struct rseq and struct rseq_cs as in include/uapi/linux/rseq.h,
 * the per-architecture signatures, and the auxv keys that describe what the
 * running kernel provides. Every offset is checked at compile time so a
 * mistake here cannot reach a user.
 */
#ifndef ONCPU_ABI_H
#define ONCPU_ABI_H

#include <stddef.h>
#include <stdint.h>

/* Values the kernel (or registration) leaves in the cpu_id field. */
#define ONCPU_RSEQ_CPU_ID_UNINITIALIZED       ((uint32_t)-1)
#define ONCPU_RSEQ_CPU_ID_REGISTRATION_FAILED ((uint32_t)-2)

/* rseq() flags: the only one ever accepted from user space. */
#define ONCPU_RSEQ_FLAG_UNREGISTER 1

/* auxv keys (linux/auxvec.h, 6.3+). */
#define ONCPU_AT_RSEQ_FEATURE_SIZE 27
#define ONCPU_AT_RSEQ_ALIGN        28

/* The legacy ("original") registration size: 32 bytes, 32-byte aligned. */
#define ONCPU_RSEQ_LEGACY_SIZE 32

/* ONCPU_RSEQ_SIG, the signature preceding every abort handler (the kernel
 * compares it), comes from the architecture header. */
#include <oncpu/arch.h>

/* struct rseq: the per-thread area shared with the kernel. */
struct oncpu_rseq_area {
	uint32_t cpu_id_start; /* kernel: current CPU (always valid once registered) */
	uint32_t cpu_id;       /* kernel: current CPU, or ONCPU_RSEQ_CPU_ID_* */
	uint64_t rseq_cs;      /* user: address of the active descriptor, or 0 */
	uint32_t flags;        /* must stay 0 */
	uint32_t node_id;      /* kernel, 6.3+: NUMA node of cpu_id */
	uint32_t mm_cid;       /* kernel, 6.3+: dense concurrency id in this mm */
	uint8_t slice_ctrl[4]; /* kernel 7.0+: time-slice extension, unused here */
} __attribute__((aligned(ONCPU_RSEQ_LEGACY_SIZE)));

/* struct rseq_cs: one critical section's descriptor. */
struct oncpu_rseq_cs {
	uint32_t version; /* 0 */
	uint32_t flags;   /* 0 */
	uint64_t start_ip;
	uint64_t post_commit_offset; /* length of [start_ip, post-commit ip) */
	uint64_t abort_ip;           /* outside the range, preceded by the signature */
} __attribute__((aligned(32)));

/* Record of __rseq_exit_point_array: an exit that is neither commit nor abort. */
struct oncpu_rseq_exit_point {
	uint64_t start_ip;
	uint64_t exit_ip;
};

/* Field offsets, used by the assembly. */
#define ONCPU_RSEQ_OFF_CPU_ID_START 0
#define ONCPU_RSEQ_OFF_CPU_ID       4
#define ONCPU_RSEQ_OFF_RSEQ_CS      8
#define ONCPU_RSEQ_OFF_FLAGS        16
#define ONCPU_RSEQ_OFF_NODE_ID      20
#define ONCPU_RSEQ_OFF_MM_CID       24
/* A field is provided when AT_RSEQ_FEATURE_SIZE reaches its end. */
#define ONCPU_RSEQ_END_NODE_ID 24
#define ONCPU_RSEQ_END_MM_CID  28

#ifdef __cplusplus
#define ONCPU_STATIC_ASSERT static_assert
#else
#define ONCPU_STATIC_ASSERT _Static_assert
#endif

ONCPU_STATIC_ASSERT(offsetof(struct oncpu_rseq_area, cpu_id_start) == ONCPU_RSEQ_OFF_CPU_ID_START,
                    "cpu_id_start");
ONCPU_STATIC_ASSERT(offsetof(struct oncpu_rseq_area, cpu_id) == ONCPU_RSEQ_OFF_CPU_ID, "cpu_id");
ONCPU_STATIC_ASSERT(offsetof(struct oncpu_rseq_area, rseq_cs) == ONCPU_RSEQ_OFF_RSEQ_CS, "rseq_cs");
ONCPU_STATIC_ASSERT(offsetof(struct oncpu_rseq_area, flags) == ONCPU_RSEQ_OFF_FLAGS, "flags");
ONCPU_STATIC_ASSERT(offsetof(struct oncpu_rseq_area, node_id) == ONCPU_RSEQ_OFF_NODE_ID, "node_id");
ONCPU_STATIC_ASSERT(offsetof(struct oncpu_rseq_area, mm_cid) == ONCPU_RSEQ_OFF_MM_CID, "mm_cid");
ONCPU_STATIC_ASSERT(sizeof(struct oncpu_rseq_area) == ONCPU_RSEQ_LEGACY_SIZE, "legacy size");
ONCPU_STATIC_ASSERT(sizeof(struct oncpu_rseq_cs) == 32, "rseq_cs size");
ONCPU_STATIC_ASSERT(offsetof(struct oncpu_rseq_cs, start_ip) == 8, "start_ip");
ONCPU_STATIC_ASSERT(offsetof(struct oncpu_rseq_cs, post_commit_offset) == 16, "post_commit_offset");
ONCPU_STATIC_ASSERT(offsetof(struct oncpu_rseq_cs, abort_ip) == 24, "abort_ip");
ONCPU_STATIC_ASSERT(sizeof(struct oncpu_rseq_exit_point) == 16, "exit point record");

#endif /* ONCPU_ABI_H */
