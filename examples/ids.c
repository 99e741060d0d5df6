/* SPDX-License-Identifier: MIT */
/*
 * ids.c - how this thread runs rseq, and its CPU, virtual CPU and node ids.
 *
 *   cc ids.c $(pkg-config --cflags --libs oncpu) -o ids
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <oncpu.h>

static const char *registration(enum oncpu_registration r)
{
	switch (r) {
	case ONCPU_REG_LIBC:
		return "the C library's area";
	case ONCPU_REG_OWN:
		return "oncpu's own area";
	default:
		return "none (fallback mode)";
	}
}

int main(void)
{
	/* Optional: without it the first oncpu call registers the thread. */
	if (oncpu_thread_init() != 0)
		printf("oncpu_thread_init: %s: running in fallback mode\n", strerror(errno));

	printf("liboncpu %s (headers %s)\n", oncpu_version(), ONCPU_VERSION_STRING);
	printf("rseq active:  %s\n", oncpu_thread_rseq_active() ? "yes" : "no");
	printf("registration: %s\n", registration(oncpu_thread_registration()));
	printf("rseq area:    %p\n", (void *)oncpu_thread_area());
	printf("cpu count:    %d\n", oncpu_cpu_count());

	int cpu = oncpu_cpu(), vcpu = oncpu_vcpu(), node = oncpu_node();
	printf("cpu:          %d\n", cpu);
	printf("vcpu:         %d (%s)\n", vcpu,
	       oncpu_vcpu_dense() ? "the kernel's mm_cid" : "same as cpu: no mm_cid");
	printf("node:         %d\n", node);

	int n = oncpu_cpu_count();
	bool ok = cpu >= 0 && cpu < n && vcpu >= 0 && vcpu < n && node >= 0;
	printf("ids: %s, cpu %d, vcpu %d, node %d: %s\n",
	       oncpu_thread_rseq_active() ? "rseq" : "fallback", cpu, vcpu, node,
	       ok ? "in range" : "OUT OF RANGE");
	return ok ? 0 : 1;
}
