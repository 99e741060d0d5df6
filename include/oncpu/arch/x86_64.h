/* SPDX-License-Identifier: MIT */
/*
 * oncpu/arch/x86_64.h - x86-64: the primitives and the rseq critical
 * sections' assembly, one macro per operation (_ONCPU_ARCH_*), which
 * oncpu/arch/ops.h wraps in the C that all architectures share. Selected
 * by <oncpu/arch.h>; the contract is at the top of oncpu/arch/generic.h,
 * the operations are specified in oncpu/cs.h.
 *
 * Every section has the same skeleton (labels are the kernel selftests'):
 *   3:  descriptor in __rseq_cs, its address in __rseq_cs_ptr_array
 *   1:  start, after rseq_cs = &3 (store through %fs: the area is in TLS)
 *   2:  post-commit: the instruction after the single committing store
 *   4:  abort handler in __rseq_failure, preceded by the signature
 *   5:  compare-failed exit, 6: not-registered exit; both recorded in
 *       __rseq_exit_point_array so a debugger can stop at every exit.
 * rseq_cs stays armed after an exit (the kernel clears it lazily) unless
 * the module is built with ONCPU_UNLOADABLE (oncpu/cs.h).
 */
#ifndef _ONCPU_ARCH_INCLUDE_OK
#error "do not include <oncpu/arch/x86_64.h> directly; include <oncpu/cs.h>"
#endif

/* ---- stage 1: the primitives ---- */
#ifndef ONCPU_ARCH_X86_64_H
#define ONCPU_ARCH_X86_64_H

#include <stddef.h>
#include <stdint.h>

#define ONCPU_ARCH_NAME "x86_64"
#define ONCPU_RSEQ_SIG  0x53053053U

ONCPU_INLINE void _oncpu_cpu_relax(void)
{
	__builtin_ia32_pause();
}

#if !defined(ONCPU_NO_TP_LOAD)
#define ONCPU_HAVE_TP_LOAD 1
#if !defined(ONCPU_NO_RSEQ_ASM)
#define ONCPU_HAVE_RSEQ_ASM 1
#endif

/* The thread pointer: %fs:0 holds the TCB's own address. */
ONCPU_INLINE char *_oncpu_thread_pointer(void)
{
	char *tp;
	__asm__("movq %%fs:0, %0" : "=r"(tp));
	return tp;
}

/* Load 32 bits at thread pointer + off. */
ONCPU_INLINE int32_t _oncpu_tp_load32(ptrdiff_t off)
{
	int32_t v;
	__asm__ __volatile__("movl %%fs:(%1), %0" : "=r"(v) : "r"(off));
	return v;
}

/* Store 32 bits at thread pointer + off. */
ONCPU_INLINE void _oncpu_tp_store32(ptrdiff_t off, uint32_t v)
{
	__asm__ __volatile__("movl %1, %%fs:(%0)" : : "r"(off), "r"(v) : "memory");
}
#endif /* !ONCPU_NO_TP_LOAD */

#endif /* ONCPU_ARCH_X86_64_H */

/* ---- stage 2: the critical sections' assembly ---- */
#if defined(_ONCPU_ARCH_SECTIONS) && defined(ONCPU_HAVE_RSEQ_ASM) &&                               \
    !defined(_ONCPU_ARCH_X86_64_SECTIONS)
#define _ONCPU_ARCH_X86_64_SECTIONS 1

#define _ONCPU_RSEQ_SIG_ASM 0x53053053 /* ONCPU_RSEQ_SIG without the C suffix */

/* One assembly line per string, in columns: exempt from clang-format. */
/* clang-format off */

/* Race-window injection point n (see oncpu/arch/ops.h). */
#ifdef ONCPU_INJECT
#define _ONCPU_INJECT(n)                                               \
	"movl _oncpu_inject_loops+4*" #n "(%%rip), %%r11d\n\t"         \
	"testl %%r11d, %%r11d\n\t"                                     \
	"jz 333f\n\t"                                                  \
	"222:\n\t"                                                     \
	"decl %%r11d\n\t"                                              \
	"jnz 222b\n\t"                                                 \
	"333:\n\t"
#define _ONCPU_INJECT_CLOBBER , "r11"
#else
#define _ONCPU_INJECT(n) ""
#define _ONCPU_INJECT_CLOBBER
#endif

/* Descriptor 3 for the section [1, 2) with abort handler 4. */
#define _ONCPU_ASM_TABLE                                               \
	".pushsection __rseq_cs, \"aw\"\n\t"                           \
	".balign 32\n\t"                                               \
	"3:\n\t"                                                       \
	".long 0x0, 0x0\n\t"                                           \
	".quad 1f, 2f - 1f, 4f\n\t"                                    \
	".popsection\n\t"                                              \
	".pushsection __rseq_cs_ptr_array, \"aw\"\n\t"                 \
	".quad 3b\n\t"                                                 \
	".popsection\n\t"

/* An exit of section 1 that is neither the commit nor the abort. */
#define _ONCPU_ASM_EXIT_POINT(exit_label)                              \
	".pushsection __rseq_exit_point_array, \"aw\"\n\t"             \
	".quad 1f, " exit_label "\n\t"                                 \
	".popsection\n\t"

/* Arm the section: rseq_cs = &descriptor; label 1 starts it. */
#define _ONCPU_ASM_ENTER                                               \
	"leaq 3b(%%rip), %%rax\n\t"                                    \
	"movq %%rax, %%fs:" _ONCPU_XS(ONCPU_RSEQ_OFF_RSEQ_CS) "(%[off])\n\t" \
	"1:\n\t"

/* Disarm on exit: only for unloadable modules (see oncpu/cs.h). */
#ifdef ONCPU_UNLOADABLE
#define _ONCPU_ASM_CLEAR                                               \
	"movq $0, %%fs:" _ONCPU_XS(ONCPU_RSEQ_OFF_RSEQ_CS) "(%[off])\n\t"
#else
#define _ONCPU_ASM_CLEAR ""
#endif

/* Abort if the thread's id is no longer [id]. */
#define _ONCPU_ASM_CHECK_ID                                            \
	"cmpl %[id], %%fs:(%[idoff])\n\t"                              \
	"jnz 4f\n\t"

/* Signature, abort handler 4 and the compare-failed exit 5. */
#define _ONCPU_ASM_FAILURE(abort_label, cmpfail_label)                 \
	".pushsection __rseq_failure, \"ax\"\n\t"                      \
	/* ud1 <sig>(%rip), %edi: disassemblers stay in sync */        \
	".byte 0x0f, 0xb9, 0x3d\n\t"                                   \
	".long " _ONCPU_XS(_ONCPU_RSEQ_SIG_ASM) "\n\t"                 \
	"4:\n\t"                                                       \
	_ONCPU_ASM_CLEAR                                               \
	"jmp " abort_label "\n\t"                                      \
	"5:\n\t"                                                       \
	_ONCPU_ASM_CLEAR                                               \
	"jmp " cmpfail_label "\n\t"                                    \
	".popsection\n\t"

/* Exit 6: this thread is not registered (yet). */
#define _ONCPU_ASM_UNAVAILABLE_EXIT                                    \
	".pushsection __rseq_failure, \"ax\"\n\t"                      \
	"6:\n\t"                                                       \
	_ONCPU_ASM_CLEAR                                               \
	"jmp %l[unavailable]\n\t"                                      \
	".popsection\n\t"

/* rax = current cpu_id << stride shift, or exit 6 when unregistered. */
#define _ONCPU_ASM_CPU_INDEX                                           \
	"movslq %%fs:" _ONCPU_XS(ONCPU_RSEQ_OFF_CPU_ID) "(%[off]), %%rax\n\t" \
	"testq %%rax, %%rax\n\t"                                       \
	"js 6f\n\t"                                                    \
	"shlq $" _ONCPU_XS(ONCPU_PERCPU_STRIDE_SHIFT) ", %%rax\n\t"

/* The same for the virtual CPU: registered (cpu_id >= 0), then the id. */
#define _ONCPU_ASM_VCPU_INDEX                                          \
	"movl %%fs:" _ONCPU_XS(ONCPU_RSEQ_OFF_CPU_ID) "(%[off]), %%eax\n\t" \
	"testl %%eax, %%eax\n\t"                                       \
	"js 6f\n\t"                                                    \
	"movl %%fs:(%[idoff]), %%eax\n\t"                              \
	"shlq $" _ONCPU_XS(ONCPU_PERCPU_STRIDE_SHIFT) ", %%rax\n\t"

/* The inputs of a section that checks its id, and of the per-mode ones. */
#define _ONCPU_CS_INPUTS \
	[off] "r"(_oncpu_process.rseq_offset), [idoff] "r"(_oncpu_id_offset(mode))
#define _ONCPU_CPU_INPUTS  [off] "r"(_oncpu_process.rseq_offset)
#define _ONCPU_VCPU_INPUTS _ONCPU_CS_INPUTS
#define _ONCPU_CS_CLOBBERS "memory", "cc", "rax" _ONCPU_INJECT_CLOBBER

/* x86 is TSO: a release commit needs no fence, only the compiler barrier
 * that "memory" already gives; both orders share one section. */
#define _ONCPU_ARCH_ORDERED(mo) 0

#define _ONCPU_ARCH_ADD                                                \
	_ONCPU_ASM_ID_OP(                                              \
		_ONCPU_INJECT(2)                                       \
		"addq %[count], %[v]\n\t")                             \
	: /* no outputs */                                             \
	: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "m"(*v), [count] "er"(count) \
	: _ONCPU_CS_CLOBBERS

/* One store to arm, two loads, one add: the counter fast path. */
#define _ONCPU_ARCH_PERCPU_ADD(mode_token)                             \
	_ONCPU_ASM_TABLE                                               \
	_ONCPU_ASM_EXIT_POINT("6f")                                    \
	_ONCPU_ASM_ENTER                                               \
	_ONCPU_INJECT(1)                                               \
	_ONCPU_ASM_##mode_token##_INDEX                                \
	/* base+displacement, not (base, index): the core then forwards \
	 * the previous add's store to this load without latency */   \
	"addq %[base], %%rax\n\t"                                      \
	_ONCPU_INJECT(2)                                               \
	"addq %[count], (%%rax)\n\t"                                   \
	"2:\n\t"                                                       \
	_ONCPU_ASM_CLEAR                                               \
	_ONCPU_ASM_FAILURE("%l[abort]", "%l[abort]")                   \
	_ONCPU_ASM_UNAVAILABLE_EXIT                                    \
	:                                                              \
	: _ONCPU_##mode_token##_INPUTS, [base] "r"(base), [count] "er"(count) \
	: _ONCPU_CS_CLOBBERS

#define _ONCPU_ARCH_CMPEQ_STORE                                        \
	_ONCPU_ASM_ID_CMP_OP(                                          \
		_ONCPU_INJECT(2)                                       \
		"cmpq %[v], %[expect]\n\t"                             \
		"jnz 5f\n\t"                                           \
		_ONCPU_INJECT(3)                                       \
		"movq %[newv], %[v]\n\t")                              \
	:                                                              \
	: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "m"(*v), [expect] "r"(expect), \
	  [newv] "r"(newv)                                             \
	: _ONCPU_CS_CLOBBERS

/* The list pop after the compares: *load = *v; *v = *(*v + voff). */
#define _ONCPU_ASM_LIST_POP                                            \
	"movq %[v], %%rax\n\t"                                         \
	"cmpq %%rax, %[expectnot]\n\t"                                 \
	"je 5f\n\t"                                                    \
	_ONCPU_INJECT(2)                                               \
	"movq %%rax, %[load]\n\t"                                      \
	"addq %[voff], %%rax\n\t"                                      \
	"movq (%%rax), %%rax\n\t"                                      \
	_ONCPU_INJECT(3)                                               \
	"movq %%rax, %[v]\n\t"

#define _ONCPU_ARCH_CMPNE_LOAD_OFF_STORE                               \
	_ONCPU_ASM_ID_CMP_OP(_ONCPU_ASM_LIST_POP)                      \
	:                                                              \
	: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "m"(*v), [expectnot] "r"(expectnot), \
	  [voff] "er"(voff), [load] "m"(*load)                         \
	: _ONCPU_CS_CLOBBERS

/* if (*v != expect) exit 5; *v2 = newv2; commit *v = newv. */
#define _ONCPU_ASM_TRYSTORE_STORE                                      \
	"cmpq %[v], %[expect]\n\t"                                     \
	"jnz 5f\n\t"                                                   \
	_ONCPU_INJECT(2)                                               \
	"movq %[newv2], %[v2]\n\t"                                     \
	_ONCPU_INJECT(3)                                               \
	"movq %[newv], %[v]\n\t"

#define _ONCPU_ARCH_CMPEQ_TRYSTORE_STORE(order)                        \
	_ONCPU_ASM_ID_CMP_OP(_ONCPU_ASM_TRYSTORE_STORE)                \
	:                                                              \
	: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "m"(*v), [expect] "r"(expect), \
	  [v2] "m"(*v2), [newv2] "r"(newv2), [newv] "r"(newv)          \
	: _ONCPU_CS_CLOBBERS

/* The copy is `rep movsb`: interruptible at any byte, which only aborts. */
#define _ONCPU_ARCH_CMPEQ_MEMCPY_STORE(order)                          \
	_ONCPU_ASM_ID_CMP_OP(                                          \
		"cmpq %[v], %[expect]\n\t"                             \
		"jnz 5f\n\t"                                           \
		"movq %[src], %%rsi\n\t"                               \
		"movq %[dst], %%rdi\n\t"                               \
		"movq %[len], %%rcx\n\t"                               \
		"rep movsb\n\t"                                        \
		_ONCPU_INJECT(2)                                       \
		"movq %[newv], %[v]\n\t")                              \
	:                                                              \
	: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "m"(*v), [expect] "r"(expect), \
	  [dst] "r"(dst), [src] "r"(src), [len] "r"(len), [newv] "r"(newv) \
	: _ONCPU_CS_CLOBBERS, "rsi", "rdi", "rcx"

#define _ONCPU_ARCH_DEREF_OFF_ADD                                      \
	_ONCPU_ASM_ID_OP(                                              \
		"movq %[ptr], %%rax\n\t"                               \
		"addq %[off2], %%rax\n\t"                              \
		_ONCPU_INJECT(2)                                       \
		"addq %[inc], (%%rax)\n\t")                            \
	:                                                              \
	: _ONCPU_CS_INPUTS, [id] "r"(id), [ptr] "m"(*ptr), [off2] "er"(off), \
	  [inc] "er"(inc)                                              \
	: _ONCPU_CS_CLOBBERS

/*
 * Guarded operations: the guard (g, gexpect) is compared right after the id
 * check, before anything else of the section is read: a thread that holds
 * the guard (a lock word) and releases it after writing the data can then
 * never pair a stale data read with a free guard (see oncpu/cs.h). gexpect
 * may be an immediate ("er"), so the compare is written memory-versus-operand.
 * Injection point 4 widens the window between the guard and the data compare,
 * which the lock holder's exclusion step must cover.
 */
#define _ONCPU_ASM_CHECK_GUARD                                         \
	"cmpq %[gexpect], %[g]\n\t"                                    \
	"jnz 5f\n\t"                                                   \
	_ONCPU_INJECT(4)
#define _ONCPU_GUARD_INPUTS                                            \
	_ONCPU_CS_INPUTS, [id] "r"(id), [g] "m"(*g), [gexpect] "er"(gexpect)

#define _ONCPU_ARCH_CMPEQ_CMPEQ_STORE                                  \
	_ONCPU_ASM_ID_CMP_OP(                                          \
		_ONCPU_ASM_CHECK_GUARD                                 \
		"cmpq %[v], %[expect]\n\t"                             \
		"jnz 5f\n\t"                                           \
		_ONCPU_INJECT(2)                                       \
		"movq %[newv], %[v]\n\t")                              \
	:                                                              \
	: _ONCPU_GUARD_INPUTS, [v] "m"(*v), [expect] "r"(expect), [newv] "r"(newv) \
	: _ONCPU_CS_CLOBBERS

#define _ONCPU_ARCH_CMPEQ_CMPNE_LOAD_OFF_STORE                         \
	_ONCPU_ASM_ID_CMP_OP(_ONCPU_ASM_CHECK_GUARD _ONCPU_ASM_LIST_POP) \
	:                                                              \
	: _ONCPU_GUARD_INPUTS, [v] "m"(*v), [expectnot] "r"(expectnot), \
	  [voff] "er"(voff), [load] "m"(*load)                         \
	: _ONCPU_CS_CLOBBERS

#define _ONCPU_ARCH_CMPEQ_CMPEQ_TRYSTORE_STORE(order)                  \
	_ONCPU_ASM_ID_CMP_OP(_ONCPU_ASM_CHECK_GUARD _ONCPU_ASM_TRYSTORE_STORE) \
	:                                                              \
	: _ONCPU_GUARD_INPUTS, [v] "m"(*v), [expect] "r"(expect), [v2] "m"(*v2), \
	  [newv2] "r"(newv2), [newv] "r"(newv)                         \
	: _ONCPU_CS_CLOBBERS

/* *src is loaded after both compares: the value the commit pairs with. */
#define _ONCPU_ARCH_CMPEQ_CMPEQ_LOAD_STORE                             \
	_ONCPU_ASM_ID_CMP_OP(                                          \
		_ONCPU_ASM_CHECK_GUARD                                 \
		"cmpq %[v], %[expect]\n\t"                             \
		"jnz 5f\n\t"                                           \
		_ONCPU_INJECT(2)                                       \
		"movq %[src], %%rax\n\t"                               \
		"movq %%rax, %[load]\n\t"                              \
		_ONCPU_INJECT(3)                                       \
		"movq %[newv], %[v]\n\t")                              \
	:                                                              \
	: _ONCPU_GUARD_INPUTS, [v] "m"(*v), [expect] "r"(expect), [src] "m"(*src), \
	  [load] "m"(*load), [newv] "r"(newv)                          \
	: _ONCPU_CS_CLOBBERS

/*
 * `rep movsb` as in cmpeq_memcpy_store. dst, src and len travel in rdi, rsi
 * and rcx as in-out operands rather than clobbers: with the guard compare
 * too few registers would be left at -O0 with a frame pointer (sanitizer
 * builds).
 */
#define _ONCPU_ARCH_CMPEQ_CMPEQ_MEMCPY_STORE(order)                    \
	_ONCPU_ASM_ID_CMP_OP(                                          \
		_ONCPU_ASM_CHECK_GUARD                                 \
		"cmpq %[v], %[expect]\n\t"                             \
		"jnz 5f\n\t"                                           \
		"rep movsb\n\t"                                        \
		_ONCPU_INJECT(2)                                       \
		"movq %[newv], %[v]\n\t")                              \
	: "+D"(dst), "+S"(src), "+c"(len)                              \
	: _ONCPU_GUARD_INPUTS, [v] "m"(*v), [expect] "r"(expect), [newv] "r"(newv) \
	: _ONCPU_CS_CLOBBERS

/*
 * Per-CPU arrays: the section reads the id itself and addresses the array
 * from it (base + id * stride), as percpu_add does; word 0 is the count,
 * word 1 the guard (compared with 0 before the count is read), items from
 * word 2. Exits: 5 (guard taken, empty or full), 6 (not registered).
 */
#define _ONCPU_ASM_ARRAY_OP(index, body)                               \
	_ONCPU_ASM_TABLE                                               \
	_ONCPU_ASM_EXIT_POINT("5f")                                    \
	_ONCPU_ASM_EXIT_POINT("6f")                                    \
	_ONCPU_ASM_ENTER                                               \
	_ONCPU_INJECT(1)                                               \
	index                                                          \
	"addq %[base], %%rax\n\t"                                      \
	"cmpq $0, " _ONCPU_XS(ONCPU_CS_ARRAY_GUARD) "(%%rax)\n\t"      \
	"jnz 5f\n\t"                                                   \
	_ONCPU_INJECT(4)                                               \
	"movq " _ONCPU_XS(ONCPU_CS_ARRAY_COUNT) "(%%rax), %%rcx\n\t"   \
	body                                                           \
	"2:\n\t"                                                       \
	_ONCPU_ASM_CLEAR                                               \
	_ONCPU_ASM_FAILURE("%l[abort]", "%l[cmpfail]")                 \
	_ONCPU_ASM_UNAVAILABLE_EXIT

/*
 * The item is addressed through a register (lea, then base + displacement),
 * not as (base, index, 8): recent Intel cores (measured on a Sapphire Rapids
 * class Xeon) forward a store to a later load of the same address at almost
 * no latency ("memory renaming") when they use base + displacement, and at
 * ~5 cycles when they use an index register. A pop that takes the item the
 * previous push stored is on the critical path of an alloc/free loop.
 */
/* n = rcx: if 0, exit 5; load = items[n - 1] (a register); commit n - 1. */
#define _ONCPU_ASM_ARRAY_POP                                           \
	"testq %%rcx, %%rcx\n\t"                                       \
	"jz 5f\n\t"                                                    \
	_ONCPU_INJECT(2)                                               \
	"leaq " _ONCPU_XS(ONCPU_CS_ARRAY_ITEMS) "-8(%%rax, %%rcx, 8), %%rdx\n\t" \
	"movq (%%rdx), %[load]\n\t"                                    \
	"decq %%rcx\n\t"                                               \
	_ONCPU_INJECT(3)                                               \
	"movq %%rcx, " _ONCPU_XS(ONCPU_CS_ARRAY_COUNT) "(%%rax)\n\t"

/* n = rcx: if >= cap, exit 5; items[n] = v (try-store); commit n + 1. */
#define _ONCPU_ASM_ARRAY_PUSH                                          \
	"cmpq %[cap], %%rcx\n\t"                                       \
	"jae 5f\n\t"                                                   \
	_ONCPU_INJECT(2)                                               \
	"leaq " _ONCPU_XS(ONCPU_CS_ARRAY_ITEMS) "(%%rax, %%rcx, 8), %%rdx\n\t" \
	"movq %[v], (%%rdx)\n\t"                                       \
	"incq %%rcx\n\t"                                               \
	_ONCPU_INJECT(3)                                               \
	"movq %%rcx, " _ONCPU_XS(ONCPU_CS_ARRAY_COUNT) "(%%rax)\n\t"

#define _ONCPU_ARRAY_CLOBBERS _ONCPU_CS_CLOBBERS, "rcx", "rdx"

#define _ONCPU_ARCH_PERCPU_ARRAY_POP(mode_token)                       \
	_ONCPU_ASM_ARRAY_OP(_ONCPU_ASM_##mode_token##_INDEX, _ONCPU_ASM_ARRAY_POP) \
	: [load] "=&r"(item)                                           \
	: _ONCPU_##mode_token##_INPUTS, [base] "r"(base)               \
	: _ONCPU_ARRAY_CLOBBERS

#define _ONCPU_ARCH_PERCPU_ARRAY_PUSH(mode_token)                      \
	_ONCPU_ASM_ARRAY_OP(_ONCPU_ASM_##mode_token##_INDEX, _ONCPU_ASM_ARRAY_PUSH) \
	:                                                              \
	: _ONCPU_##mode_token##_INPUTS, [base] "r"(base), [cap] "erm"(cap), [v] "r"(v) \
	: _ONCPU_ARRAY_CLOBBERS

/* clang-format on */

#endif /* stage 2 */
