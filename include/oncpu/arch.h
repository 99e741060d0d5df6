/* SPDX-License-Identifier: MIT */
/*
 * oncpu/arch.h - the architecture dispatcher: one line per architecture
 * with rseq assembly; oncpu/arch/generic.h (which states the contract every
 * architecture header fulfils) supplies whatever a header does not.
 *
 * Included twice: by oncpu/abi.h and oncpu/thread.h for the primitives,
 * and by oncpu/cs.h, with _ONCPU_ARCH_SECTIONS defined, for the critical
 * sections, which need the declarations of cs.h: the architecture's asm
 * and oncpu/arch/ops.h's functions around it.
 */
#include <oncpu/config.h>

#define _ONCPU_ARCH_INCLUDE_OK 1
#define _ONCPU_S(x)            #x
#define _ONCPU_XS(x)           _ONCPU_S(x) /* x, macro-expanded, as a string for asm */
#if defined(__x86_64__)
#include <oncpu/arch/x86_64.h>
#elif defined(__aarch64__)
#include <oncpu/arch/aarch64.h>
#endif
#include <oncpu/arch/generic.h>
#if defined(_ONCPU_ARCH_SECTIONS) && defined(ONCPU_HAVE_RSEQ_ASM)
#include <oncpu/arch/ops.h>
#endif
#undef _ONCPU_ARCH_INCLUDE_OK
