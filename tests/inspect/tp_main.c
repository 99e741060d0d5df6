/*
 * Test program for oncpu-inspect and the GDB extension.  Its critical
 * sections are hand-written in the kernel-selftest layout (tp_sections.c,
 * and tp_dso.c when built with TP_WITH_DSO).
 *
 *   tp_prog dump   run every section once and print, as the kernel and the
 *                  loader see them: each module's load bias, the descriptor
 *                  registered in rseq->rseq_cs by each section, and the
 *                  relocated pointer and exit-point arrays
 *   tp_prog wait   dump, then wait for a line on stdin (for --pid)
 *   tp_prog loop N add 1 to a per-CPU counter N times, print the sum
 *   tp_prog iloop N the same with the section inlined into main()
 */
#define _GNU_SOURCE
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/rseq.h>

#include "tp_sections.h"
#ifdef TP_WITH_DSO
#include "tp_dso.h"
#endif

#define TP_MAX_CPUS 4096

struct tp_slot {
	intptr_t v;
	char pad[56];
};

static struct tp_slot tp_counts[TP_MAX_CPUS];
volatile long tp_iterations; /* read by the GDB test */

extern const uint64_t __start___rseq_cs_ptr_array[];
extern const uint64_t __stop___rseq_cs_ptr_array[];
extern const uint64_t __start___rseq_exit_point_array[];
extern const uint64_t __stop___rseq_exit_point_array[];

static int tp_slot_cpu(void)
{
	int cpu = tp_cpu();

	if (cpu < 0 || cpu >= TP_MAX_CPUS) {
		fprintf(stderr, "tp_prog: cpu %d out of range\n", cpu);
		exit(3);
	}
	return cpu;
}

/* One counter increment, retried until it commits. */
static __attribute__((noinline)) void tp_counter_inc(void)
{
	for (;;) {
		int cpu = tp_slot_cpu();

		if (tp_addv(&tp_counts[cpu].v, 1, cpu) == 0)
			return;
	}
}

/* The same increment, inlined into the caller as oncpu's operations are. */
static inline __attribute__((always_inline)) int
tp_inline_addv(intptr_t *v, intptr_t count, int cpu)
{
	__asm__ __volatile__ goto(
		TP_DEFINE_CS(3, 1, 2, 4)
		"leaq 3b(%%rip), %%rax\n\t"
		"movq %%rax, %%fs:8(%[off])\n\t"
		"1:\n\t"
		"cmpl %[cpu], %%fs:4(%[off])\n\t"
		"jnz 4f\n\t"
		"addq %[count], %[v]\n\t"
		"2:\n\t"
		TP_ABORT_STUB(4, %l[abort])
		:
		: [cpu] "r"(cpu), [off] "r"(__rseq_offset), [v] "m"(*v),
		  [count] "r"(count)
		: "memory", "cc", "rax"
		: abort);
	return 0;
abort:
	return -1;
}

static long tp_counter_sum(void)
{
	long s = 0;
	int i;

	for (i = 0; i < TP_MAX_CPUS; i++)
		s += tp_counts[i].v;
	return s;
}

static void print_registered(void)
{
	const volatile uint32_t *d =
		(const volatile uint32_t *)(uintptr_t)tp_area_cs();
	const volatile uint64_t *q = (const volatile uint64_t *)d;

	if (!d) /* preempted right after the commit: the kernel cleared it */
		return;
	printf("registered 0x%llx %u %u 0x%llx %llu 0x%llx\n",
	       (unsigned long long)(uintptr_t)d, d[0], d[1],
	       (unsigned long long)q[1], (unsigned long long)q[2],
	       (unsigned long long)q[3]);
}

static int print_bias(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	if (info->dlpi_name[0] == 0)
		printf("bias exe 0x%llx\n", (unsigned long long)info->dlpi_addr);
	else if (strstr(info->dlpi_name, "libtp_dso"))
		printf("bias dso 0x%llx\n", (unsigned long long)info->dlpi_addr);
	return 0;
}

static void print_arrays(const char *mod, const uint64_t *p, size_t n,
			 const uint64_t *x, size_t nx)
{
	size_t i;

	for (i = 0; i < n; i++)
		printf("ptr %s 0x%llx\n", mod, (unsigned long long)p[i]);
	for (i = 0; i < nx; i++)
		printf("exit %s 0x%llx 0x%llx\n", mod,
		       (unsigned long long)x[2 * i],
		       (unsigned long long)x[2 * i + 1]);
}

static void dump(void)
{
	intptr_t v = 0;
	int tries, cpu, r;

	printf("registered-thread %d\n", tp_registered());
	dl_iterate_phdr(print_bias, NULL);
	/* Run each section until it commits, then read rseq->rseq_cs. */
	for (tries = 0; tries < 1000; tries++) {
		cpu = tp_slot_cpu();
		if (tp_addv(&tp_counts[cpu].v, 1, cpu) == 0 && tp_area_cs()) {
			print_registered();
			break;
		}
	}
	for (tries = 0; tries < 1000; tries++) {
		cpu = tp_slot_cpu();
		r = tp_cmpeqv_storev(&v, v, v + 1, cpu);
		if (r == 0 && tp_area_cs()) {
			print_registered();
			break;
		}
	}
#ifdef TP_WITH_DSO
	for (tries = 0; tries < 1000; tries++) {
		cpu = tp_slot_cpu();
		r = tp_dso_inc_below(&v, 1000000, cpu);
		if (r == 0 && tp_area_cs()) {
			print_registered();
			break;
		}
	}
	for (tries = 0; tries < 1000; tries++) {
		cpu = tp_slot_cpu();
		if (tp_dso_addv_sym(&tp_counts[cpu].v, 1, cpu) == 0 &&
		    tp_area_cs()) {
			print_registered();
			break;
		}
	}
	{
		const uint64_t *p, *x;
		size_t n = tp_dso_ptr_array(&p), nx = tp_dso_exit_array(&x);

		print_arrays("dso", p, n, x, nx);
	}
#endif
	print_arrays("exe", __start___rseq_cs_ptr_array,
		     (size_t)(__stop___rseq_cs_ptr_array -
			      __start___rseq_cs_ptr_array),
		     __start___rseq_exit_point_array,
		     (size_t)(__stop___rseq_exit_point_array -
			      __start___rseq_exit_point_array) /
			     2);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	long i, n;

	if (argc >= 2 && strcmp(argv[1], "dump") == 0) {
		dump();
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "wait") == 0) {
		char line[16];

		dump();
		printf("ready\n");
		fflush(stdout);
		return fgets(line, sizeof(line), stdin) ? 0 : 0;
	}
	if (argc >= 3 && strcmp(argv[1], "loop") == 0) {
		n = strtol(argv[2], NULL, 10);
		if (!tp_registered()) {
			fprintf(stderr, "tp_prog: thread not registered "
					"with rseq\n");
			return 77;
		}
		for (i = 0; i < n; i++) {
			tp_counter_inc(); /* gdb-test: call */
			tp_iterations = i + 1;
		}
		printf("sum %ld\n", tp_counter_sum());
		return tp_counter_sum() == n ? 0 : 1;
	}
	if (argc >= 3 && strcmp(argv[1], "iloop") == 0) {
		n = strtol(argv[2], NULL, 10);
		if (!tp_registered())
			return 77;
		for (i = 0; i < n; i++) {
			int cpu, r;

			do {
				cpu = tp_slot_cpu();
				/* gdb-test: inline (the next line) */
				r = tp_inline_addv(&tp_counts[cpu].v, 1, cpu);
			} while (r != 0);
			tp_iterations = i + 1;
		}
		printf("sum %ld\n", tp_counter_sum());
		return tp_counter_sum() == n ? 0 : 1;
	}
	fprintf(stderr, "usage: tp_prog dump|wait|loop N\n");
	return 2;
}
