/*
 * A shared object with its own critical section and exit point, to test
 * that oncpu-inspect and the GDB extension handle DSOs (load bias,
 * R_X86_64_RELATIVE in the arrays).
 */
#define _GNU_SOURCE
#include "tp_dso.h"

#include <sys/rseq.h>

#include "rseq_asm.h"

extern const uint64_t __start___rseq_cs_ptr_array[] __attribute__((weak));
extern const uint64_t __stop___rseq_cs_ptr_array[] __attribute__((weak));
extern const uint64_t __start___rseq_exit_point_array[]
	__attribute__((weak));
extern const uint64_t __stop___rseq_exit_point_array[] __attribute__((weak));

/*
 * if (*v < limit) *v += 1 on CPU cpu: 0 committed, 1 at the limit (left
 * through the exit point), -1 aborted.
 */
TP_NOINLINE int tp_dso_inc_below(intptr_t *v,
						      intptr_t limit, int cpu)
{
	__asm__ __volatile__ goto(
		TP_DEFINE_CS(3, 1, 2, 4)
		TP_EXIT_POINT(1, %l[full])
		"leaq 3b(%%rip), %%rax\n\t"
		"movq %%rax, %%fs:8(%[off])\n\t"
		"1:\n\t"
		"cmpl %[cpu], %%fs:4(%[off])\n\t"
		"jnz 4f\n\t"
		"movq %[v], %%rax\n\t"
		"cmpq %[limit], %%rax\n\t"
		"jge %l[full]\n\t"
		"addq $1, %%rax\n\t"
		"movq %%rax, %[v]\n\t"
		"2:\n\t"
		TP_ABORT_STUB(4, %l[abort])
		:
		: [cpu] "r"(cpu), [off] "r"(__rseq_offset), [v] "m"(*v),
		  [limit] "r"(limit)
		: "memory", "cc", "rax"
		: abort, full);
	return 0;
abort:
	return -1;
full:
	return 1;
}

/*
 * *v += count, with the descriptor behind a global symbol so that the
 * pointer array needs R_X86_64_64 against a dynamic symbol (not RELATIVE).
 */
TP_NOINLINE int tp_dso_addv_sym(intptr_t *v,
						     intptr_t count, int cpu)
{
	__asm__ __volatile__ goto(
		".pushsection __rseq_cs, \"aw\"\n\t"
		".balign 32\n\t"
		".globl tp_dso_desc_global\n\t"
		".type tp_dso_desc_global, @object\n\t"
		".size tp_dso_desc_global, 32\n\t"
		"tp_dso_desc_global:\n\t"
		"3:\n\t"
		".long 0x0, 0x0\n\t"
		".quad 1f, (2f - 1f), 4f\n\t"
		".popsection\n\t"
		".pushsection __rseq_cs_ptr_array, \"aw\"\n\t"
		".quad tp_dso_desc_global\n\t"
		".popsection\n\t"
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

size_t tp_dso_ptr_array(const uint64_t **first)
{
	*first = __start___rseq_cs_ptr_array;
	return (size_t)(__stop___rseq_cs_ptr_array -
			__start___rseq_cs_ptr_array);
}

size_t tp_dso_exit_array(const uint64_t **first)
{
	*first = __start___rseq_exit_point_array;
	return (size_t)(__stop___rseq_exit_point_array -
			__start___rseq_exit_point_array) /
	       2;
}
