/*
 * Test program for oncpu-inspect and the GDB extension built on liboncpu's
 * own critical sections (include/oncpu/arch/x86_64.h).
 *
 *   oncpu_prog dump    print the load bias and the relocated
 *                      __rseq_cs_ptr_array / __rseq_exit_point_array
 *   oncpu_prog wait    dump, then wait for a line on stdin (for --pid)
 *   oncpu_prog loop N  oncpu_counter_add(c, 1) N times through a call
 *   oncpu_prog iloop N the same with the add inlined into main()
 */
#define _GNU_SOURCE
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oncpu.h>

extern const uint64_t __start___rseq_cs_ptr_array[];
extern const uint64_t __stop___rseq_cs_ptr_array[];
extern const uint64_t __start___rseq_exit_point_array[];
extern const uint64_t __stop___rseq_exit_point_array[];

static struct oncpu_counter *op_counter;
volatile long tp_iterations; /* read by the GDB test */

static __attribute__((noinline)) void tp_counter_inc(void)
{
	oncpu_counter_add(op_counter, 1);
}

static int print_bias(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	if (info->dlpi_name[0] == 0)
		printf("bias exe 0x%llx\n", (unsigned long long)info->dlpi_addr);
	return 0;
}

static void dump(void)
{
	const uint64_t *p = __start___rseq_cs_ptr_array;
	const uint64_t *x = __start___rseq_exit_point_array;

	dl_iterate_phdr(print_bias, NULL);
	for (; p < __stop___rseq_cs_ptr_array; p++)
		printf("ptr exe 0x%llx\n", (unsigned long long)*p);
	for (; x + 1 < __stop___rseq_exit_point_array; x += 2)
		printf("exit exe 0x%llx 0x%llx\n", (unsigned long long)x[0],
		       (unsigned long long)x[1]);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	long i, n;

	op_counter = oncpu_counter_new();
	if (!op_counter)
		return 1;
	oncpu_counter_add(op_counter, 0); /* registers this thread */
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
		for (i = 0; i < n; i++) {
			tp_counter_inc(); /* gdb-test: call */
			tp_iterations = i + 1;
		}
		printf("sum %ld\n", oncpu_counter_sum(op_counter));
		return oncpu_counter_sum(op_counter) == n ? 0 : 1;
	}
	if (argc >= 3 && strcmp(argv[1], "iloop") == 0) {
		n = strtol(argv[2], NULL, 10);
		for (i = 0; i < n; i++) {
			/* gdb-test: inline (the next line) */
			oncpu_counter_add(op_counter, 1);
			tp_iterations = i + 1;
		}
		printf("sum %ld\n", oncpu_counter_sum(op_counter));
		return oncpu_counter_sum(op_counter) == n ? 0 : 1;
	}
	fprintf(stderr, "usage: oncpu_prog dump|wait|loop N|iloop N\n");
	return 2;
}
