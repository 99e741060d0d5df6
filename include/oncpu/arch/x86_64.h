/* SPDX-License-Identifier: MIT */
/*
 * oncpu/arch/x86_64.h - x86-64: the primitives and the rseq critical
 * sections in assembly. Selected by <oncpu/arch.h>; the contract is at the
 * top of oncpu/arch/generic.h, the operations are specified in oncpu/cs.h.
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

/* ---- stage 2: the critical sections ---- */
#if defined(_ONCPU_ARCH_SECTIONS) && defined(ONCPU_HAVE_RSEQ_ASM) &&                               \
    !defined(_ONCPU_ARCH_X86_64_SECTIONS)
#define _ONCPU_ARCH_X86_64_SECTIONS 1

#define _ONCPU_S(x)         #x
#define _ONCPU_XS(x)        _ONCPU_S(x)
#define _ONCPU_RSEQ_SIG_ASM 0x53053053 /* ONCPU_RSEQ_SIG without the C suffix */

/* One assembly line per string, in columns: exempt from clang-format. */
/* clang-format off */

/*
 * Race-window injection for tests (compile the test with -DONCPU_INJECT and
 * ONCPU_INJECT_DEFINE() once): point n spins _oncpu_inject_loops[n] times.
 */
#ifdef ONCPU_INJECT
#define ONCPU_INJECT_DEFINE() \
	__attribute__((visibility("hidden"))) volatile int _oncpu_inject_loops[8]
extern volatile int _oncpu_inject_loops[8];
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

#define _ONCPU_ASM_PERCPU_ADD(index)                                   \
	_ONCPU_ASM_TABLE                                               \
	_ONCPU_ASM_EXIT_POINT("6f")                                    \
	_ONCPU_ASM_ENTER                                               \
	_ONCPU_INJECT(1)                                               \
	index                                                          \
	/* base+displacement, not (base, index): the core then forwards \
	 * the previous add's store to this load without latency */   \
	"addq %[base], %%rax\n\t"                                      \
	_ONCPU_INJECT(2)                                               \
	"addq %[count], (%%rax)\n\t"                                   \
	"2:\n\t"                                                       \
	_ONCPU_ASM_CLEAR                                               \
	_ONCPU_ASM_FAILURE("%l[abort]", "%l[abort]")                   \
	_ONCPU_ASM_UNAVAILABLE_EXIT

#define _ONCPU_CS_INPUTS \
	[off] "r"(_oncpu_process.rseq_offset), [idoff] "r"(_oncpu_id_offset(mode))
#define _ONCPU_CS_CLOBBERS "memory", "cc", "rax" _ONCPU_INJECT_CLOBBER

ONCPU_INLINE int _oncpu_cs_add(int mode, intptr_t *v, intptr_t count, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	__asm__ goto(
		_ONCPU_ASM_TABLE
		_ONCPU_ASM_ENTER
		_ONCPU_INJECT(1)
		_ONCPU_ASM_CHECK_ID
		_ONCPU_INJECT(2)
		"addq %[count], %[v]\n\t"
		"2:\n\t"
		_ONCPU_ASM_CLEAR
		_ONCPU_ASM_FAILURE("%l[abort]", "%l[abort]")
		: /* no outputs */
		: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "m"(*v), [count] "er"(count)
		: _ONCPU_CS_CLOBBERS
		: abort);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
}

/*
 * *(base + id * ONCPU_PERCPU_STRIDE) += count, the id read inside the
 * section: one store to arm, two loads, one add. The counter fast path.
 */
ONCPU_INLINE int _oncpu_cs_percpu_add(int mode, void *base, intptr_t count)
{
	if (ONCPU_UNLIKELY(_oncpu_process.rseq_offset == 0))
		return ONCPU_CS_UNAVAILABLE;
	if (mode == _oncpu_mode_ONCPU_CPU)
		__asm__ goto(_ONCPU_ASM_PERCPU_ADD(_ONCPU_ASM_CPU_INDEX)
			     :
			     : [off] "r"(_oncpu_process.rseq_offset), [base] "r"(base),
			       [count] "er"(count)
			     : _ONCPU_CS_CLOBBERS
			     : abort, unavailable);
	else
		__asm__ goto(_ONCPU_ASM_PERCPU_ADD(_ONCPU_ASM_VCPU_INDEX)
			     :
			     : _ONCPU_CS_INPUTS, [base] "r"(base), [count] "er"(count)
			     : _ONCPU_CS_CLOBBERS
			     : abort, unavailable);
	return ONCPU_CS_COMMITTED;
abort:
	return ONCPU_CS_ABORTED;
unavailable:
	return ONCPU_CS_UNAVAILABLE;
}

ONCPU_INLINE int _oncpu_cs_cmpeq_store(int mode, intptr_t *v, intptr_t expect, intptr_t newv,
				       int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	__asm__ goto(
		_ONCPU_ASM_TABLE
		_ONCPU_ASM_EXIT_POINT("5f")
		_ONCPU_ASM_ENTER
		_ONCPU_INJECT(1)
		_ONCPU_ASM_CHECK_ID
		_ONCPU_INJECT(2)
		"cmpq %[v], %[expect]\n\t"
		"jnz 5f\n\t"
		_ONCPU_INJECT(3)
		"movq %[newv], %[v]\n\t"
		"2:\n\t"
		_ONCPU_ASM_CLEAR
		_ONCPU_ASM_FAILURE("%l[abort]", "%l[cmpfail]")
		:
		: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "m"(*v), [expect] "r"(expect),
		  [newv] "r"(newv)
		: _ONCPU_CS_CLOBBERS
		: abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

ONCPU_INLINE int _oncpu_cs_cmpne_load_off_store(int mode, intptr_t *v, intptr_t expectnot,
						ptrdiff_t voff, intptr_t *load, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	__asm__ goto(
		_ONCPU_ASM_TABLE
		_ONCPU_ASM_EXIT_POINT("5f")
		_ONCPU_ASM_ENTER
		_ONCPU_INJECT(1)
		_ONCPU_ASM_CHECK_ID
		"movq %[v], %%rax\n\t"
		"cmpq %%rax, %[expectnot]\n\t"
		"je 5f\n\t"
		_ONCPU_INJECT(2)
		"movq %%rax, %[load]\n\t"
		"addq %[voff], %%rax\n\t"
		"movq (%%rax), %%rax\n\t"
		_ONCPU_INJECT(3)
		"movq %%rax, %[v]\n\t"
		"2:\n\t"
		_ONCPU_ASM_CLEAR
		_ONCPU_ASM_FAILURE("%l[abort]", "%l[cmpfail]")
		:
		: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "m"(*v), [expectnot] "r"(expectnot),
		  [voff] "er"(voff), [load] "m"(*load)
		: _ONCPU_CS_CLOBBERS
		: abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

/* x86 is TSO: a release commit needs no fence, only the compiler barrier
 * that "memory" already gives; both orders share one implementation. */
ONCPU_INLINE int _oncpu_cs_cmpeq_trystore_store(int mode, int mo, intptr_t *v, intptr_t expect,
						intptr_t *v2, intptr_t newv2, intptr_t newv, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	(void)mo;
	__asm__ goto(
		_ONCPU_ASM_TABLE
		_ONCPU_ASM_EXIT_POINT("5f")
		_ONCPU_ASM_ENTER
		_ONCPU_INJECT(1)
		_ONCPU_ASM_CHECK_ID
		"cmpq %[v], %[expect]\n\t"
		"jnz 5f\n\t"
		_ONCPU_INJECT(2)
		"movq %[newv2], %[v2]\n\t"
		_ONCPU_INJECT(3)
		"movq %[newv], %[v]\n\t"
		"2:\n\t"
		_ONCPU_ASM_CLEAR
		_ONCPU_ASM_FAILURE("%l[abort]", "%l[cmpfail]")
		:
		: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "m"(*v), [expect] "r"(expect),
		  [v2] "m"(*v2), [newv2] "r"(newv2), [newv] "r"(newv)
		: _ONCPU_CS_CLOBBERS
		: abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

/* The copy is `rep movsb`: interruptible at any byte, which only aborts. */
ONCPU_INLINE int _oncpu_cs_cmpeq_memcpy_store(int mode, int mo, intptr_t *v, intptr_t expect,
					      void *dst, const void *src, size_t len,
					      intptr_t newv, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	(void)mo;
	__asm__ goto(
		_ONCPU_ASM_TABLE
		_ONCPU_ASM_EXIT_POINT("5f")
		_ONCPU_ASM_ENTER
		_ONCPU_INJECT(1)
		_ONCPU_ASM_CHECK_ID
		"cmpq %[v], %[expect]\n\t"
		"jnz 5f\n\t"
		"movq %[src], %%rsi\n\t"
		"movq %[dst], %%rdi\n\t"
		"movq %[len], %%rcx\n\t"
		"rep movsb\n\t"
		_ONCPU_INJECT(2)
		"movq %[newv], %[v]\n\t"
		"2:\n\t"
		_ONCPU_ASM_CLEAR
		_ONCPU_ASM_FAILURE("%l[abort]", "%l[cmpfail]")
		:
		: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "m"(*v), [expect] "r"(expect),
		  [dst] "r"(dst), [src] "r"(src), [len] "r"(len), [newv] "r"(newv)
		: _ONCPU_CS_CLOBBERS, "rsi", "rdi", "rcx"
		: abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

ONCPU_INLINE int _oncpu_cs_deref_off_add(int mode, intptr_t *ptr, ptrdiff_t off, intptr_t inc,
					 int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	__asm__ goto(
		_ONCPU_ASM_TABLE
		_ONCPU_ASM_ENTER
		_ONCPU_INJECT(1)
		_ONCPU_ASM_CHECK_ID
		"movq %[ptr], %%rax\n\t"
		"addq %[off2], %%rax\n\t"
		_ONCPU_INJECT(2)
		"addq %[inc], (%%rax)\n\t"
		"2:\n\t"
		_ONCPU_ASM_CLEAR
		_ONCPU_ASM_FAILURE("%l[abort]", "%l[abort]")
		:
		: _ONCPU_CS_INPUTS, [id] "r"(id), [ptr] "m"(*ptr), [off2] "er"(off),
		  [inc] "er"(inc)
		: _ONCPU_CS_CLOBBERS
		: abort);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
}

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

ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_store(int mode, intptr_t *g, intptr_t gexpect,
					     intptr_t *v, intptr_t expect, intptr_t newv, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	__asm__ goto(
		_ONCPU_ASM_TABLE
		_ONCPU_ASM_EXIT_POINT("5f")
		_ONCPU_ASM_ENTER
		_ONCPU_INJECT(1)
		_ONCPU_ASM_CHECK_ID
		_ONCPU_ASM_CHECK_GUARD
		"cmpq %[v], %[expect]\n\t"
		"jnz 5f\n\t"
		_ONCPU_INJECT(2)
		"movq %[newv], %[v]\n\t"
		"2:\n\t"
		_ONCPU_ASM_CLEAR
		_ONCPU_ASM_FAILURE("%l[abort]", "%l[cmpfail]")
		:
		: _ONCPU_CS_INPUTS, [id] "r"(id), [g] "m"(*g), [gexpect] "er"(gexpect),
		  [v] "m"(*v), [expect] "r"(expect), [newv] "r"(newv)
		: _ONCPU_CS_CLOBBERS
		: abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

ONCPU_INLINE int _oncpu_cs_cmpeq_cmpne_load_off_store(int mode, intptr_t *g, intptr_t gexpect,
						       intptr_t *v, intptr_t expectnot,
						       ptrdiff_t voff, intptr_t *load, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	__asm__ goto(
		_ONCPU_ASM_TABLE
		_ONCPU_ASM_EXIT_POINT("5f")
		_ONCPU_ASM_ENTER
		_ONCPU_INJECT(1)
		_ONCPU_ASM_CHECK_ID
		_ONCPU_ASM_CHECK_GUARD
		"movq %[v], %%rax\n\t"
		"cmpq %%rax, %[expectnot]\n\t"
		"je 5f\n\t"
		_ONCPU_INJECT(2)
		"movq %%rax, %[load]\n\t"
		"addq %[voff], %%rax\n\t"
		"movq (%%rax), %%rax\n\t"
		_ONCPU_INJECT(3)
		"movq %%rax, %[v]\n\t"
		"2:\n\t"
		_ONCPU_ASM_CLEAR
		_ONCPU_ASM_FAILURE("%l[abort]", "%l[cmpfail]")
		:
		: _ONCPU_CS_INPUTS, [id] "r"(id), [g] "m"(*g), [gexpect] "er"(gexpect),
		  [v] "m"(*v), [expectnot] "r"(expectnot), [voff] "er"(voff), [load] "m"(*load)
		: _ONCPU_CS_CLOBBERS
		: abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

/* TSO: both orders share one implementation (see cmpeq_trystore_store). */
ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_trystore_store(int mode, int mo, intptr_t *g,
						       intptr_t gexpect, intptr_t *v,
						       intptr_t expect, intptr_t *v2,
						       intptr_t newv2, intptr_t newv, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	(void)mo;
	__asm__ goto(
		_ONCPU_ASM_TABLE
		_ONCPU_ASM_EXIT_POINT("5f")
		_ONCPU_ASM_ENTER
		_ONCPU_INJECT(1)
		_ONCPU_ASM_CHECK_ID
		_ONCPU_ASM_CHECK_GUARD
		"cmpq %[v], %[expect]\n\t"
		"jnz 5f\n\t"
		_ONCPU_INJECT(2)
		"movq %[newv2], %[v2]\n\t"
		_ONCPU_INJECT(3)
		"movq %[newv], %[v]\n\t"
		"2:\n\t"
		_ONCPU_ASM_CLEAR
		_ONCPU_ASM_FAILURE("%l[abort]", "%l[cmpfail]")
		:
		: _ONCPU_CS_INPUTS, [id] "r"(id), [g] "m"(*g), [gexpect] "er"(gexpect),
		  [v] "m"(*v), [expect] "r"(expect), [v2] "m"(*v2), [newv2] "r"(newv2),
		  [newv] "r"(newv)
		: _ONCPU_CS_CLOBBERS
		: abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

/* *src is loaded after both compares: the value the commit pairs with. */
ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_load_store(int mode, intptr_t *g, intptr_t gexpect,
						  intptr_t *v, intptr_t expect, intptr_t *src,
						  intptr_t *load, intptr_t newv, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	__asm__ goto(
		_ONCPU_ASM_TABLE
		_ONCPU_ASM_EXIT_POINT("5f")
		_ONCPU_ASM_ENTER
		_ONCPU_INJECT(1)
		_ONCPU_ASM_CHECK_ID
		_ONCPU_ASM_CHECK_GUARD
		"cmpq %[v], %[expect]\n\t"
		"jnz 5f\n\t"
		_ONCPU_INJECT(2)
		"movq %[src], %%rax\n\t"
		"movq %%rax, %[load]\n\t"
		_ONCPU_INJECT(3)
		"movq %[newv], %[v]\n\t"
		"2:\n\t"
		_ONCPU_ASM_CLEAR
		_ONCPU_ASM_FAILURE("%l[abort]", "%l[cmpfail]")
		:
		: _ONCPU_CS_INPUTS, [id] "r"(id), [g] "m"(*g), [gexpect] "er"(gexpect),
		  [v] "m"(*v), [expect] "r"(expect), [src] "m"(*src), [load] "m"(*load),
		  [newv] "r"(newv)
		: _ONCPU_CS_CLOBBERS
		: abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

/*
 * `rep movsb` as in cmpeq_memcpy_store. dst, src and len travel in rdi, rsi
 * and rcx as in-out operands rather than clobbers: with the guard compare
 * too few registers would be left at -O0 with a frame pointer (sanitizer
 * builds). `volatile` is spelled out: GCC 12 deletes an asm goto whose
 * outputs are unused unless it is.
 */
ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_memcpy_store(int mode, int mo, intptr_t *g,
						     intptr_t gexpect, intptr_t *v,
						     intptr_t expect, void *dst, const void *src,
						     size_t len, intptr_t newv, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	void *d = dst;
	const void *s = src;
	size_t n = len;
	(void)mo;
	__asm__ __volatile__ goto(
		_ONCPU_ASM_TABLE
		_ONCPU_ASM_EXIT_POINT("5f")
		_ONCPU_ASM_ENTER
		_ONCPU_INJECT(1)
		_ONCPU_ASM_CHECK_ID
		_ONCPU_ASM_CHECK_GUARD
		"cmpq %[v], %[expect]\n\t"
		"jnz 5f\n\t"
		"rep movsb\n\t"
		_ONCPU_INJECT(2)
		"movq %[newv], %[v]\n\t"
		"2:\n\t"
		_ONCPU_ASM_CLEAR
		_ONCPU_ASM_FAILURE("%l[abort]", "%l[cmpfail]")
		: "+D"(d), "+S"(s), "+c"(n)
		: _ONCPU_CS_INPUTS, [id] "r"(id), [g] "m"(*g), [gexpect] "er"(gexpect),
		  [v] "m"(*v), [expect] "r"(expect), [newv] "r"(newv)
		: _ONCPU_CS_CLOBBERS
		: abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

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

/*
 * The popped item is an output register, valid on the commit path (the only
 * one that stores it): through memory it would cost the caller a store and
 * a reload. `volatile` as in cmpeq_cmpeq_memcpy_store.
 *
 * The _init variants leave out the check that the process is initialized
 * (_oncpu_process.rseq_offset != 0): only for callers that know it is, e.g.
 * because a section already ran on their structure (oncpu/cache.h).
 */
ONCPU_INLINE int _oncpu_cs_percpu_array_pop_init(int mode, void *base, intptr_t *load)
{
	intptr_t item;
	if (mode == _oncpu_mode_ONCPU_CPU)
		__asm__ __volatile__ goto(
			     _ONCPU_ASM_ARRAY_OP(_ONCPU_ASM_CPU_INDEX, _ONCPU_ASM_ARRAY_POP)
			     : [load] "=&r"(item)
			     : [off] "r"(_oncpu_process.rseq_offset), [base] "r"(base)
			     : _ONCPU_ARRAY_CLOBBERS
			     : abort, cmpfail, unavailable);
	else
		__asm__ __volatile__ goto(
			     _ONCPU_ASM_ARRAY_OP(_ONCPU_ASM_VCPU_INDEX, _ONCPU_ASM_ARRAY_POP)
			     : [load] "=&r"(item)
			     : _ONCPU_CS_INPUTS, [base] "r"(base)
			     : _ONCPU_ARRAY_CLOBBERS
			     : abort, cmpfail, unavailable);
	*load = item;
	return ONCPU_CS_COMMITTED;
abort:
	return ONCPU_CS_ABORTED;
cmpfail:
	return ONCPU_CS_CMPFAIL;
unavailable:
	return ONCPU_CS_UNAVAILABLE;
}

ONCPU_INLINE int _oncpu_cs_percpu_array_push_init(int mode, void *base, intptr_t cap, intptr_t v)
{
	if (mode == _oncpu_mode_ONCPU_CPU)
		__asm__ goto(_ONCPU_ASM_ARRAY_OP(_ONCPU_ASM_CPU_INDEX, _ONCPU_ASM_ARRAY_PUSH)
			     :
			     : [off] "r"(_oncpu_process.rseq_offset), [base] "r"(base),
			       [cap] "erm"(cap), [v] "r"(v)
			     : _ONCPU_ARRAY_CLOBBERS
			     : abort, cmpfail, unavailable);
	else
		__asm__ goto(_ONCPU_ASM_ARRAY_OP(_ONCPU_ASM_VCPU_INDEX, _ONCPU_ASM_ARRAY_PUSH)
			     :
			     : _ONCPU_CS_INPUTS, [base] "r"(base), [cap] "erm"(cap), [v] "r"(v)
			     : _ONCPU_ARRAY_CLOBBERS
			     : abort, cmpfail, unavailable);
	return ONCPU_CS_COMMITTED;
abort:
	return ONCPU_CS_ABORTED;
cmpfail:
	return ONCPU_CS_CMPFAIL;
unavailable:
	return ONCPU_CS_UNAVAILABLE;
}

/* clang-format on */

#endif /* stage 2 */
