/* SPDX-License-Identifier: MIT */
/*
 * oncpu/arch/aarch64.h - 64-bit Arm: the primitives and the rseq critical
 * sections in assembly. Selected by <oncpu/arch.h>; the contract is at the
 * top of oncpu/arch/generic.h, the operations are specified in oncpu/cs.h.
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
