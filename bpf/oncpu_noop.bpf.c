// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * oncpu_noop.bpf.c - an empty tp_btf/sched_switch program: the baseline of
 * `oncpu-bpfd cost` (what any program on this tracepoint costs per switch).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

SEC("tp_btf/sched_switch")
int oncpu_noop(__u64 *ctx)
{
	(void)ctx;
	return 0;
}
