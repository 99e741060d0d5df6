/*
 * Test producer: per-CPU counter operations written by hand in the
 * kernel-selftest section layout (see rseq_asm.h).  Compiled into the test
 * programs and into a shared object to cover ET_EXEC, PIE and DSOs.
 */
#define _GNU_SOURCE
#include "tp_sections.h"

#include <sys/rseq.h>

#define TP_STR_(x) #x
#define TP_STR(x) TP_STR_(x)

/* The rseq area of this thread: glibc's registration. */
static inline volatile struct rseq *tp_area(void)
{
	char *tp;

	__asm__("mov %%fs:0, %0" : "=r"(tp));
	return (volatile struct rseq *)(void *)(tp + __rseq_offset);
}

int tp_registered(void)
{
	return __rseq_size > 0 && (int32_t)tp_area()->cpu_id >= 0;
}

int tp_cpu(void)
{
	return (int)tp_area()->cpu_id;
}

uint64_t tp_area_cs(void)
{
	return tp_area()->rseq_cs;
}

/*
 * *v += count on CPU cpu.  Returns 0 when committed, -1 when aborted (or
 * on the wrong CPU).  noipa keeps one copy so the global labels are unique.
 */
TP_NOINLINE int tp_addv(intptr_t *v, intptr_t count,
					     int cpu)
{
	__asm__ __volatile__ goto(
		TP_DEFINE_CS(3, 1, 2, 4)
		"leaq 3b(%%rip), %%rax\n\t"
		"movq %%rax, %%fs:" TP_STR(TP_RSEQ_CS_OFF) "(%[off])\n\t"
		".globl tp_addv_cs_start\n\t"
		"tp_addv_cs_start:\n\t"
		"1:\n\t"
		"cmpl %[cpu], %%fs:" TP_STR(TP_RSEQ_CPU_ID_OFF) "(%[off])\n\t"
		"jnz 4f\n\t"
		"movq %[v], %%rax\n\t"
		"addq %[count], %%rax\n\t"
		"movq %%rax, %[v]\n\t"
		"2:\n\t"
		".globl tp_addv_cs_post\n\t"
		"tp_addv_cs_post:\n\t"
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

/*
 * if (*v == expect) *v = newv on CPU cpu.  Returns 0 when committed, 1
 * when *v != expect (left through an exit point), -1 when aborted.
 */
TP_NOINLINE int tp_cmpeqv_storev(intptr_t *v,
						      intptr_t expect,
						      intptr_t newv, int cpu)
{
	__asm__ __volatile__ goto(
		TP_DEFINE_CS(3, 1, 2, 4)
		TP_EXIT_POINT(1, %l[ne])
		"leaq 3b(%%rip), %%rax\n\t"
		"movq %%rax, %%fs:" TP_STR(TP_RSEQ_CS_OFF) "(%[off])\n\t"
		"1:\n\t"
		"cmpl %[cpu], %%fs:" TP_STR(TP_RSEQ_CPU_ID_OFF) "(%[off])\n\t"
		"jnz 4f\n\t"
		"cmpq %[v], %[expect]\n\t"
		"jnz %l[ne]\n\t"
		"movq %[newv], %[v]\n\t"
		"2:\n\t"
		TP_ABORT_STUB(4, %l[abort])
		:
		: [cpu] "r"(cpu), [off] "r"(__rseq_offset), [v] "m"(*v),
		  [expect] "r"(expect), [newv] "r"(newv)
		: "memory", "cc", "rax"
		: abort, ne);
	return 0;
abort:
	return -1;
ne:
	return 1;
}
