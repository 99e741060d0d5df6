/* SPDX-License-Identifier: MIT */
/*
 * oncpu/arch/aarch64.h - 64-bit Arm: the primitives and the rseq critical
 * sections' assembly, one macro per operation (_ONCPU_ARCH_*), which
 * oncpu/arch/ops.h wraps in the C that all architectures share. Selected
 * by <oncpu/arch.h>; the contract is at the top of oncpu/arch/generic.h,
 * the operations are specified in oncpu/cs.h.
 */
#ifndef _ONCPU_ARCH_INCLUDE_OK
#error "do not include <oncpu/arch/aarch64.h> directly; include <oncpu/cs.h>"
#endif

/* ---- stage 1: the primitives ---- */
#ifndef ONCPU_ARCH_AARCH64_H
#define ONCPU_ARCH_AARCH64_H

#include <stddef.h>
#include <stdint.h>

#define ONCPU_ARCH_NAME "aarch64"
/* The kernel's arm64 signature: the encoding of BRK #0x45e0, so that a
 * stray jump into the word before an abort handler traps. */
#define ONCPU_RSEQ_SIG 0xd428bc00U

ONCPU_INLINE void _oncpu_cpu_relax(void)
{
	__asm__ __volatile__("yield" ::: "memory");
}

#if !defined(ONCPU_NO_TP_LOAD)
#define ONCPU_HAVE_TP_LOAD 1
#if !defined(ONCPU_NO_RSEQ_ASM)
#define ONCPU_HAVE_RSEQ_ASM 1
#endif

/* The thread pointer: TPIDR_EL0. */
ONCPU_INLINE char *_oncpu_thread_pointer(void)
{
	char *tp;
	__asm__("mrs %0, tpidr_el0" : "=r"(tp));
	return tp;
}

/* Load 32 bits at thread pointer + off. */
ONCPU_INLINE int32_t _oncpu_tp_load32(ptrdiff_t off)
{
	return *(volatile int32_t *)(_oncpu_thread_pointer() + off);
}

/* Store 32 bits at thread pointer + off. */
ONCPU_INLINE void _oncpu_tp_store32(ptrdiff_t off, uint32_t v)
{
	*(volatile uint32_t *)(_oncpu_thread_pointer() + off) = v;
}
#endif /* !ONCPU_NO_TP_LOAD */

#endif /* ONCPU_ARCH_AARCH64_H */

/* ---- stage 2: the critical sections' assembly ---- */
#if defined(_ONCPU_ARCH_SECTIONS) && defined(ONCPU_HAVE_RSEQ_ASM) &&                               \
    !defined(_ONCPU_ARCH_AARCH64_SECTIONS)
#define _ONCPU_ARCH_AARCH64_SECTIONS 1

/*
 * Every section has the skeleton of the x86-64 header (labels as in the
 * kernel selftests):
 *   3:  descriptor in __rseq_cs, its address in __rseq_cs_ptr_array
 *   1:  start, after rseq_cs = &3 (adrp/add, str through the area pointer)
 *   2:  post-commit: the instruction after the single committing store
 *   4:  abort handler, preceded by the signature as an instruction word
 *       (.inst), so that a stray jump there traps; inline after the
 *       commit, which branches over the exits (see _ONCPU_ASM_STUBS)
 *   5:  compare-failed exit, 6: not-registered exit; both recorded in
 *       __rseq_exit_point_array.
 * rseq_cs stays armed after an exit unless the module is built with
 * ONCPU_UNLOADABLE (oncpu/cs.h). The area and the id are addressed through
 * registers the compiler computes from TPIDR_EL0 (no TLS addressing mode).
 * Scratch registers: x9, x10, x12-x14; x11 for race-window injection.
 *
 * Ordering (the architecture is weakly ordered): a guard word is loaded
 * with ldar, so every later load of the section is ordered after it (the
 * guard-first rule of oncpu/cs.h); a release commit is stlr; everything
 * else is plain loads and stores, ordered on one CPU by program order.
 */
#define _ONCPU_RSEQ_SIG_ASM 0xd428bc00 /* ONCPU_RSEQ_SIG without the C suffix */

/* One assembly line per string, in columns: exempt from clang-format. */
/* clang-format off */

/* Race-window injection point n (see oncpu/arch/ops.h). */
#ifdef ONCPU_INJECT
#define _ONCPU_INJECT(n)                                               \
	"adrp x11, _oncpu_inject_loops\n\t"                            \
	"add x11, x11, :lo12:_oncpu_inject_loops\n\t"                  \
	"ldr w11, [x11, #4*" #n "]\n\t"                                \
	"cbz w11, 333f\n\t"                                            \
	"222:\n\t"                                                     \
	"subs w11, w11, #1\n\t"                                        \
	"b.ne 222b\n\t"                                                \
	"333:\n\t"
#define _ONCPU_INJECT_CLOBBER , "x11"
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
	".balign 8\n\t"                                                \
	".quad 3b\n\t"                                                 \
	".popsection\n\t"

/* An exit of section 1 that is neither the commit nor the abort. */
#define _ONCPU_ASM_EXIT_POINT(exit_label)                              \
	".pushsection __rseq_exit_point_array, \"aw\"\n\t"             \
	".balign 8\n\t"                                                \
	".quad 1f, " exit_label "\n\t"                                 \
	".popsection\n\t"

/* Arm the section: rseq_cs = &descriptor; label 1 starts it. */
#define _ONCPU_ASM_ENTER                                               \
	"adrp x9, 3b\n\t"                                              \
	"add x9, x9, :lo12:3b\n\t"                                     \
	"str x9, [%[area], #" _ONCPU_XS(ONCPU_RSEQ_OFF_RSEQ_CS) "]\n\t" \
	"1:\n\t"

/* Disarm on exit: only for unloadable modules (see oncpu/cs.h). */
#ifdef ONCPU_UNLOADABLE
#define _ONCPU_ASM_CLEAR                                               \
	"str xzr, [%[area], #" _ONCPU_XS(ONCPU_RSEQ_OFF_RSEQ_CS) "]\n\t"
#else
#define _ONCPU_ASM_CLEAR ""
#endif

/* Abort if the thread's id is no longer [id]. */
#define _ONCPU_ASM_CHECK_ID                                            \
	"ldr w9, [%[idp]]\n\t"                                         \
	"cmp w9, %w[id]\n\t"                                           \
	"b.ne 4f\n\t"

/*
 * The exits, inline after the commit and branched over: signature, abort
 * handler 4, compare-failed exit 5 and (extra) exit 6. Not in a section of
 * their own as on x86-64: a conditional branch reaches only +-1 MiB (tbnz
 * +-32 KiB) and the linker inserts no veneer for one.
 */
#define _ONCPU_ASM_STUBS(abort_label, cmpfail_label, extra)            \
	"b 99f\n\t"                                                    \
	".inst " _ONCPU_XS(_ONCPU_RSEQ_SIG_ASM) "\n\t"                 \
	"4:\n\t"                                                       \
	_ONCPU_ASM_CLEAR                                               \
	"b " abort_label "\n\t"                                        \
	"5:\n\t"                                                       \
	_ONCPU_ASM_CLEAR                                               \
	"b " cmpfail_label "\n\t"                                      \
	extra                                                          \
	"99:\n\t"
#define _ONCPU_ASM_FAILURE(abort_label, cmpfail_label)                 \
	_ONCPU_ASM_STUBS(abort_label, cmpfail_label, "")

/* The same with exit 6: this thread is not registered (yet). */
#define _ONCPU_ASM_FAILURE_UNAVAILABLE(abort_label, cmpfail_label)     \
	_ONCPU_ASM_STUBS(abort_label, cmpfail_label,                   \
	                 "6:\n\t" _ONCPU_ASM_CLEAR "b %l[unavailable]\n\t")

/* x9 = current cpu_id << stride shift, or exit 6 when unregistered. */
#define _ONCPU_ASM_CPU_INDEX                                           \
	"ldr w9, [%[area], #" _ONCPU_XS(ONCPU_RSEQ_OFF_CPU_ID) "]\n\t" \
	"tbnz w9, #31, 6f\n\t"                                         \
	"lsl x9, x9, #" _ONCPU_XS(ONCPU_PERCPU_STRIDE_SHIFT) "\n\t"

/* The same for the virtual CPU: registered (cpu_id >= 0), then the id. */
#define _ONCPU_ASM_VCPU_INDEX                                          \
	"ldr w9, [%[area], #" _ONCPU_XS(ONCPU_RSEQ_OFF_CPU_ID) "]\n\t" \
	"tbnz w9, #31, 6f\n\t"                                         \
	"ldr w9, [%[idp]]\n\t"                                         \
	"lsl x9, x9, #" _ONCPU_XS(ONCPU_PERCPU_STRIDE_SHIFT) "\n\t"

/* The committing store of a try-store operation, by memory order. */
#define _ONCPU_ASM_COMMIT_RELAXED "str %[newv], [%[v]]\n\t"
#define _ONCPU_ASM_COMMIT_RELEASE "stlr %[newv], [%[v]]\n\t"
/* Weakly ordered: a release commit is a section of its own (stlr). */
#define _ONCPU_ARCH_ORDERED(mo) ((mo) == _oncpu_mo_ONCPU_RELEASE)

/* Compare *v with expect (x10 = *v); exit 5 when they differ. */
#define _ONCPU_ASM_CMPEQ_V                                             \
	"ldr x10, [%[v]]\n\t"                                          \
	"cmp x10, %[expect]\n\t"                                       \
	"b.ne 5f\n\t"

/* The guard, loaded with acquire before anything else of the slot. */
#define _ONCPU_ASM_CHECK_GUARD                                         \
	"ldar x10, [%[g]]\n\t"                                         \
	"cmp x10, %[gexpect]\n\t"                                      \
	"b.ne 5f\n\t"                                                  \
	_ONCPU_INJECT(4)

/* memcpy(dst, src, len): 8 bytes at a time, then bytes; x10, x12-x14. */
#define _ONCPU_ASM_MEMCPY                                              \
	"mov x12, %[dst]\n\t"                                          \
	"mov x13, %[src]\n\t"                                          \
	"mov x14, %[len]\n\t"                                          \
	"7:\n\t"                                                       \
	"cmp x14, #8\n\t"                                              \
	"b.lo 8f\n\t"                                                  \
	"ldr x10, [x13], #8\n\t"                                       \
	"str x10, [x12], #8\n\t"                                       \
	"sub x14, x14, #8\n\t"                                         \
	"b 7b\n\t"                                                     \
	"8:\n\t"                                                       \
	"cbz x14, 9f\n\t"                                              \
	"ldrb w10, [x13], #1\n\t"                                      \
	"strb w10, [x12], #1\n\t"                                      \
	"sub x14, x14, #1\n\t"                                         \
	"b 8b\n\t"                                                     \
	"9:\n\t"

#define _ONCPU_AREA          (_oncpu_thread_pointer() + _oncpu_process.rseq_offset)
#define _ONCPU_CS_INPUTS     [area] "r"(_ONCPU_AREA), [idp] "r"(_oncpu_thread_pointer() + _oncpu_id_offset(mode))
#define _ONCPU_CPU_INPUTS    [area] "r"(_ONCPU_AREA)
#define _ONCPU_VCPU_INPUTS   _ONCPU_CS_INPUTS
#define _ONCPU_GUARD_INPUTS  _ONCPU_CS_INPUTS, [id] "r"(id), [g] "r"(g), [gexpect] "r"(gexpect)
#define _ONCPU_CS_CLOBBERS   "memory", "cc", "x9", "x10" _ONCPU_INJECT_CLOBBER
#define _ONCPU_COPY_CLOBBERS _ONCPU_CS_CLOBBERS, "x12", "x13", "x14"

#define _ONCPU_ARCH_ADD                                                \
	_ONCPU_ASM_ID_OP(                                              \
		_ONCPU_INJECT(2)                                       \
		"ldr x10, [%[v]]\n\t"                                  \
		"add x10, x10, %[count]\n\t"                           \
		"str x10, [%[v]]\n\t")                                 \
	:                                                              \
	: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "r"(v), [count] "r"(count) \
	: _ONCPU_CS_CLOBBERS

#define _ONCPU_ARCH_PERCPU_ADD(mode_token)                             \
	_ONCPU_ASM_TABLE                                               \
	_ONCPU_ASM_EXIT_POINT("6f")                                    \
	_ONCPU_ASM_ENTER                                               \
	_ONCPU_INJECT(1)                                               \
	_ONCPU_ASM_##mode_token##_INDEX                                \
	"add x9, %[base], x9\n\t"                                      \
	_ONCPU_INJECT(2)                                               \
	"ldr x10, [x9]\n\t"                                            \
	"add x10, x10, %[count]\n\t"                                   \
	"str x10, [x9]\n\t"                                            \
	"2:\n\t"                                                       \
	_ONCPU_ASM_CLEAR                                               \
	_ONCPU_ASM_FAILURE_UNAVAILABLE("%l[abort]", "%l[abort]")       \
	:                                                              \
	: _ONCPU_##mode_token##_INPUTS, [base] "r"(base), [count] "r"(count) \
	: _ONCPU_CS_CLOBBERS

#define _ONCPU_ARCH_CMPEQ_STORE                                        \
	_ONCPU_ASM_ID_CMP_OP(                                          \
		_ONCPU_INJECT(2)                                       \
		_ONCPU_ASM_CMPEQ_V                                     \
		_ONCPU_INJECT(3)                                       \
		_ONCPU_ASM_COMMIT_RELAXED)                             \
	:                                                              \
	: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "r"(v), [expect] "r"(expect), \
	  [newv] "r"(newv)                                             \
	: _ONCPU_CS_CLOBBERS

/* The list pop: the load of *(*v + voff) depends on *v (address order). */
#define _ONCPU_ASM_LIST_POP                                            \
	"ldr x10, [%[v]]\n\t"                                          \
	"cmp x10, %[expectnot]\n\t"                                    \
	"b.eq 5f\n\t"                                                  \
	_ONCPU_INJECT(2)                                               \
	"str x10, [%[load]]\n\t"                                       \
	"ldr x10, [x10, %[voff]]\n\t"                                  \
	_ONCPU_INJECT(3)                                               \
	"str x10, [%[v]]\n\t"

#define _ONCPU_ARCH_CMPNE_LOAD_OFF_STORE                               \
	_ONCPU_ASM_ID_CMP_OP(_ONCPU_ASM_LIST_POP)                      \
	:                                                              \
	: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "r"(v), [expectnot] "r"(expectnot), \
	  [voff] "r"(voff), [load] "r"(load)                           \
	: _ONCPU_CS_CLOBBERS

/* if (*v != expect) exit 5; *v2 = newv2; commit *v = newv. */
#define _ONCPU_ASM_TRYSTORE_STORE(commit)                              \
	_ONCPU_ASM_CMPEQ_V                                             \
	_ONCPU_INJECT(2)                                               \
	"str %[newv2], [%[v2]]\n\t"                                    \
	_ONCPU_INJECT(3)                                               \
	commit

#define _ONCPU_ARCH_CMPEQ_TRYSTORE_STORE(order)                        \
	_ONCPU_ASM_ID_CMP_OP(_ONCPU_ASM_TRYSTORE_STORE(_ONCPU_ASM_COMMIT_##order)) \
	:                                                              \
	: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "r"(v), [expect] "r"(expect), \
	  [v2] "r"(v2), [newv2] "r"(newv2), [newv] "r"(newv)           \
	: _ONCPU_CS_CLOBBERS

/* The copy is a loop of loads and stores: interruptible anywhere, which
 * only aborts. */
#define _ONCPU_ASM_MEMCPY_STORE(commit)                                \
	_ONCPU_ASM_CMPEQ_V                                             \
	_ONCPU_ASM_MEMCPY                                              \
	_ONCPU_INJECT(2)                                               \
	commit

#define _ONCPU_ARCH_CMPEQ_MEMCPY_STORE(order)                          \
	_ONCPU_ASM_ID_CMP_OP(_ONCPU_ASM_MEMCPY_STORE(_ONCPU_ASM_COMMIT_##order)) \
	:                                                              \
	: _ONCPU_CS_INPUTS, [id] "r"(id), [v] "r"(v), [expect] "r"(expect), \
	  [dst] "r"(dst), [src] "r"(src), [len] "r"(len), [newv] "r"(newv) \
	: _ONCPU_COPY_CLOBBERS

#define _ONCPU_ARCH_DEREF_OFF_ADD                                      \
	_ONCPU_ASM_ID_OP(                                              \
		"ldr x9, [%[ptr]]\n\t"                                 \
		"add x9, x9, %[off]\n\t"                               \
		_ONCPU_INJECT(2)                                       \
		"ldr x10, [x9]\n\t"                                    \
		"add x10, x10, %[inc]\n\t"                             \
		"str x10, [x9]\n\t")                                   \
	:                                                              \
	: _ONCPU_CS_INPUTS, [id] "r"(id), [ptr] "r"(ptr), [off] "r"(off), [inc] "r"(inc) \
	: _ONCPU_CS_CLOBBERS

/* Guarded operations: the guard (ldar) right after the id check. */
#define _ONCPU_ARCH_CMPEQ_CMPEQ_STORE                                  \
	_ONCPU_ASM_ID_CMP_OP(                                          \
		_ONCPU_ASM_CHECK_GUARD                                 \
		_ONCPU_ASM_CMPEQ_V                                     \
		_ONCPU_INJECT(2)                                       \
		_ONCPU_ASM_COMMIT_RELAXED)                             \
	:                                                              \
	: _ONCPU_GUARD_INPUTS, [v] "r"(v), [expect] "r"(expect), [newv] "r"(newv) \
	: _ONCPU_CS_CLOBBERS

#define _ONCPU_ARCH_CMPEQ_CMPNE_LOAD_OFF_STORE                         \
	_ONCPU_ASM_ID_CMP_OP(_ONCPU_ASM_CHECK_GUARD _ONCPU_ASM_LIST_POP) \
	:                                                              \
	: _ONCPU_GUARD_INPUTS, [v] "r"(v), [expectnot] "r"(expectnot), \
	  [voff] "r"(voff), [load] "r"(load)                           \
	: _ONCPU_CS_CLOBBERS

#define _ONCPU_ARCH_CMPEQ_CMPEQ_TRYSTORE_STORE(order)                  \
	_ONCPU_ASM_ID_CMP_OP(_ONCPU_ASM_CHECK_GUARD _ONCPU_ASM_TRYSTORE_STORE(_ONCPU_ASM_COMMIT_##order)) \
	:                                                              \
	: _ONCPU_GUARD_INPUTS, [v] "r"(v), [expect] "r"(expect), [v2] "r"(v2), \
	  [newv2] "r"(newv2), [newv] "r"(newv)                         \
	: _ONCPU_CS_CLOBBERS

/* *src is loaded after both compares: the value the commit pairs with. */
#define _ONCPU_ARCH_CMPEQ_CMPEQ_LOAD_STORE                             \
	_ONCPU_ASM_ID_CMP_OP(                                          \
		_ONCPU_ASM_CHECK_GUARD                                 \
		_ONCPU_ASM_CMPEQ_V                                     \
		_ONCPU_INJECT(2)                                       \
		"ldr x10, [%[src]]\n\t"                                \
		"str x10, [%[load]]\n\t"                               \
		_ONCPU_INJECT(3)                                       \
		_ONCPU_ASM_COMMIT_RELAXED)                             \
	:                                                              \
	: _ONCPU_GUARD_INPUTS, [v] "r"(v), [expect] "r"(expect), [src] "r"(src), \
	  [load] "r"(load), [newv] "r"(newv)                           \
	: _ONCPU_CS_CLOBBERS

#define _ONCPU_ARCH_CMPEQ_CMPEQ_MEMCPY_STORE(order)                    \
	_ONCPU_ASM_ID_CMP_OP(_ONCPU_ASM_CHECK_GUARD _ONCPU_ASM_MEMCPY_STORE(_ONCPU_ASM_COMMIT_##order)) \
	:                                                              \
	: _ONCPU_GUARD_INPUTS, [v] "r"(v), [expect] "r"(expect), [dst] "r"(dst), \
	  [src] "r"(src), [len] "r"(len), [newv] "r"(newv)             \
	: _ONCPU_COPY_CLOBBERS

/*
 * Per-CPU arrays (layout in oncpu/cs.h): x9 = the slot, from the id read
 * inside the section; its guard word (ldar) is compared with 0 before the
 * count is read into x10. Exits: 5 (guard taken, empty or full), 6 (not
 * registered).
 */
#define _ONCPU_ASM_ARRAY_OP(index, body)                               \
	_ONCPU_ASM_TABLE                                               \
	_ONCPU_ASM_EXIT_POINT("5f")                                    \
	_ONCPU_ASM_EXIT_POINT("6f")                                    \
	_ONCPU_ASM_ENTER                                               \
	_ONCPU_INJECT(1)                                               \
	index                                                          \
	"add x9, %[base], x9\n\t"                                      \
	"add x12, x9, #" _ONCPU_XS(ONCPU_CS_ARRAY_GUARD) "\n\t"        \
	"ldar x10, [x12]\n\t"                                          \
	"cbnz x10, 5f\n\t"                                             \
	_ONCPU_INJECT(4)                                               \
	"ldr x10, [x9, #" _ONCPU_XS(ONCPU_CS_ARRAY_COUNT) "]\n\t"      \
	body                                                           \
	"2:\n\t"                                                       \
	_ONCPU_ASM_CLEAR                                               \
	_ONCPU_ASM_FAILURE_UNAVAILABLE("%l[abort]", "%l[cmpfail]")

/* n = x10: if 0, exit 5; load = items[n - 1] (a register); commit n - 1. */
#define _ONCPU_ASM_ARRAY_POP                                           \
	"cbz x10, 5f\n\t"                                              \
	_ONCPU_INJECT(2)                                               \
	"add x12, x9, x10, lsl #3\n\t"                                 \
	"ldr %[load], [x12, #" _ONCPU_XS(ONCPU_CS_ARRAY_ITEMS) " - 8]\n\t" \
	"sub x10, x10, #1\n\t"                                         \
	_ONCPU_INJECT(3)                                               \
	"str x10, [x9, #" _ONCPU_XS(ONCPU_CS_ARRAY_COUNT) "]\n\t"

/* n = x10: if >= cap, exit 5; items[n] = v (try-store); commit n + 1. */
#define _ONCPU_ASM_ARRAY_PUSH                                          \
	"cmp x10, %[cap]\n\t"                                          \
	"b.hs 5f\n\t"                                                  \
	_ONCPU_INJECT(2)                                               \
	"add x12, x9, x10, lsl #3\n\t"                                 \
	"str %[v], [x12, #" _ONCPU_XS(ONCPU_CS_ARRAY_ITEMS) "]\n\t"    \
	"add x10, x10, #1\n\t"                                         \
	_ONCPU_INJECT(3)                                               \
	"str x10, [x9, #" _ONCPU_XS(ONCPU_CS_ARRAY_COUNT) "]\n\t"

#define _ONCPU_ARRAY_CLOBBERS _ONCPU_CS_CLOBBERS, "x12"

#define _ONCPU_ARCH_PERCPU_ARRAY_POP(mode_token)                       \
	_ONCPU_ASM_ARRAY_OP(_ONCPU_ASM_##mode_token##_INDEX, _ONCPU_ASM_ARRAY_POP) \
	: [load] "=&r"(item)                                           \
	: _ONCPU_##mode_token##_INPUTS, [base] "r"(base)               \
	: _ONCPU_ARRAY_CLOBBERS

#define _ONCPU_ARCH_PERCPU_ARRAY_PUSH(mode_token)                      \
	_ONCPU_ASM_ARRAY_OP(_ONCPU_ASM_##mode_token##_INDEX, _ONCPU_ASM_ARRAY_PUSH) \
	:                                                              \
	: _ONCPU_##mode_token##_INPUTS, [base] "r"(base), [cap] "r"(cap), [v] "r"(v) \
	: _ONCPU_ARRAY_CLOBBERS

/* clang-format on */

#endif /* stage 2 */
