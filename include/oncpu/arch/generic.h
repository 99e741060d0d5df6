/* SPDX-License-Identifier: MIT */
/*
 * oncpu/arch/generic.h - the architecture contract, and what an
 * architecture without rseq assembly in oncpu gets.
 *
 * All assembly of oncpu lives in one header per architecture
 * (oncpu/arch/<arch>.h), selected by one line in oncpu/arch.h; no other
 * file holds any. A new architecture is that one file plus the line. The
 * header is read in two stages:
 *
 * Stage 1, the primitives (always; guarded by its own include guard):
 *   ONCPU_ARCH_NAME         a string naming the architecture.
 *   ONCPU_RSEQ_SIG          the kernel's rseq signature for it (unsigned).
 *   _oncpu_cpu_relax()      the spin-wait hint (pause, yield, ...).
 *   ONCPU_HAVE_TP_LOAD      defined (unless ONCPU_NO_TP_LOAD is) when it gives
 *     _oncpu_thread_pointer()      the thread pointer (char *),
 *     _oncpu_tp_load32(off)        a volatile 32-bit load at tp + off,
 *     _oncpu_tp_store32(off, v)    a volatile 32-bit store at tp + off;
 *     ids are then read inline from the thread's rseq area.
 *   ONCPU_HAVE_RSEQ_ASM     defined (unless ONCPU_NO_RSEQ_ASM is) when stage 2
 *                           has real sections; requires ONCPU_HAVE_TP_LOAD.
 *
 * Stage 2, the sections' assembly (when _ONCPU_ARCH_SECTIONS is defined,
 * from oncpu/cs.h; only with ONCPU_HAVE_RSEQ_ASM): for every operation that
 * oncpu/cs.h specifies in pseudo-code, a macro _ONCPU_ARCH_<OPERATION>
 * (ADD, PERCPU_ADD, CMPEQ_STORE, ... PERCPU_ARRAY_PUSH) that expands to
 * the inside of an asm goto up to its labels: "template" : outputs :
 * inputs : clobbers. oncpu/arch/ops.h holds the one C function of each
 * operation around it (id check, labels, answers, dispatch); the operands
 * name that function's parameters and `mode` (the id is at
 * _oncpu_id_offset(mode)). The operations that read their id inside the
 * section (PERCPU_ADD, PERCPU_ARRAY_POP, _PUSH) take the indexing mode as a
 * token, CPU or VCPU; those with a memory order take RELAXED or RELEASE
 * (release: every earlier store is visible before the commit), and
 * _ONCPU_ARCH_ORDERED(mo) says whether a release commit needs a section of
 * its own (0 where every store is a release store). The template jumps to
 * %l[abort] from the abort handler, %l[cmpfail] from a failed compare and
 * %l[unavailable] when a section that read its id finds the thread not
 * registered (cpu_id < 0). The fragments from which ops.h builds the
 * skeleton of every id-checking section (_ONCPU_ASM_ID_OP and _ID_CMP_OP):
 * _ONCPU_ASM_TABLE (descriptor 3 for [1, 2) with abort handler 4),
 * _ONCPU_ASM_EXIT_POINT(label), _ONCPU_ASM_ENTER (arm; label 1),
 * _ONCPU_ASM_CHECK_ID (to 4 unless the thread's id is [id]),
 * _ONCPU_ASM_CLEAR (the disarm of ONCPU_UNLOADABLE, else "") and
 * _ONCPU_ASM_FAILURE(abort, cmpfail) (signature, 4 and 5); and
 * _ONCPU_INJECT(n), the race-window injection (-DONCPU_INJECT: spin
 * _oncpu_inject_loops[n] times at point n; 1 after arming, 2 and 3 before
 * the stores, 4 between the guard and the data compare). Each section
 *   - stores its descriptor's address into rseq_cs (tp + rseq_offset + 8)
 *     before its first instruction and leaves it there on exit (the kernel
 *     clears it lazily; oncpu/cs.h keeps the module mapped), except with
 *     ONCPU_UNLOADABLE, where every exit (commit, compare failure, abort,
 *     not registered) clears rseq_cs;
 *   - emits the descriptor into __rseq_cs (32-byte aligned {version 0,
 *     flags 0, start_ip, post_commit_offset, abort_ip}), its address into
 *     __rseq_cs_ptr_array, and {start_ip, exit_ip} for every exit that is
 *     neither the commit nor the abort into __rseq_exit_point_array, as
 *     64-bit absolute addresses (relocated by the dynamic linker);
 *   - places the abort handler right after the 4 bytes of ONCPU_RSEQ_SIG,
 *     encoded as an instruction that traps (x86-64 keeps its exits in
 *     __rseq_failure; aarch64 inline, branched over, as its conditional
 *     branches have a short reach);
 *   - commits with a single final store, the last instruction of the
 *     section; guarded operations load the guard first (see oncpu/cs.h).
 * A new architecture is its header with both stages and its line in
 * oncpu/arch.h; oncpu/arch/ops.h serves it unchanged. The operations are
 * always inline; a program built for the architecture carries them in its
 * own text.
 *
 * This file completes the stage an architecture header left out: the
 * primitives for an unknown architecture (no thread-pointer loads, a
 * compiler barrier as the spin hint) and, without ONCPU_HAVE_RSEQ_ASM, in
 * place of oncpu/arch/ops.h, operations that all answer
 * ONCPU_CS_UNAVAILABLE, never ONCPU_CS_ABORTED, so a retry loop cannot
 * spin: callers take their atomic fallback, which is what every oncpu
 * structure does.
 */
#ifndef _ONCPU_ARCH_INCLUDE_OK
#error "do not include <oncpu/arch/generic.h> directly; include <oncpu/cs.h>"
#endif

#ifndef ONCPU_ARCH_GENERIC_H
#define ONCPU_ARCH_GENERIC_H

#include <stddef.h>
#include <stdint.h>

#if !defined(ONCPU_ARCH_NAME)
#define ONCPU_ARCH_NAME "generic"
/* The kernel's signatures of architectures without a header here
 * (glibc's sysdeps/unix/sysv/linux/<arch>/bits/rseq.h). */
#if defined(__i386__)
#define ONCPU_RSEQ_SIG 0x53053053U
#elif defined(__riscv)
#define ONCPU_RSEQ_SIG 0xf1401073U
#elif defined(__powerpc__)
#define ONCPU_RSEQ_SIG 0x0fe5000bU
#elif defined(__s390__)
#define ONCPU_RSEQ_SIG 0x0b0b0b0bU
#endif
ONCPU_INLINE void _oncpu_cpu_relax(void)
{
	__asm__ __volatile__("" ::: "memory");
}
#endif /* !ONCPU_ARCH_NAME */

#endif /* ONCPU_ARCH_GENERIC_H */

#if defined(_ONCPU_ARCH_SECTIONS) && !defined(ONCPU_HAVE_RSEQ_ASM) &&                              \
    !defined(_ONCPU_ARCH_GENERIC_SECTIONS)
#define _ONCPU_ARCH_GENERIC_SECTIONS 1

#ifdef ONCPU_INJECT
#define ONCPU_INJECT_DEFINE() extern int _oncpu_inject_unused
#endif

ONCPU_INLINE int _oncpu_cs_add(int mode, intptr_t *v, intptr_t count, int id)
{
	(void)mode, (void)v, (void)count, (void)id;
	return ONCPU_CS_UNAVAILABLE;
}
ONCPU_INLINE int _oncpu_cs_percpu_add(int mode, void *base, intptr_t count)
{
	(void)mode, (void)base, (void)count;
	return ONCPU_CS_UNAVAILABLE;
}
ONCPU_INLINE int _oncpu_cs_cmpeq_store(int mode, intptr_t *v, intptr_t expect, intptr_t newv,
                                       int id)
{
	(void)mode, (void)v, (void)expect, (void)newv, (void)id;
	return ONCPU_CS_UNAVAILABLE;
}
ONCPU_INLINE int _oncpu_cs_cmpne_load_off_store(int mode, intptr_t *v, intptr_t expectnot,
                                                ptrdiff_t voff, intptr_t *load, int id)
{
	(void)mode, (void)v, (void)expectnot, (void)voff, (void)load, (void)id;
	return ONCPU_CS_UNAVAILABLE;
}
ONCPU_INLINE int _oncpu_cs_cmpeq_trystore_store(int mode, int mo, intptr_t *v, intptr_t expect,
                                                intptr_t *v2, intptr_t newv2, intptr_t newv, int id)
{
	(void)mode, (void)mo, (void)v, (void)expect, (void)v2, (void)newv2, (void)newv, (void)id;
	return ONCPU_CS_UNAVAILABLE;
}
ONCPU_INLINE int _oncpu_cs_cmpeq_memcpy_store(int mode, int mo, intptr_t *v, intptr_t expect,
                                              void *dst, const void *src, size_t len, intptr_t newv,
                                              int id)
{
	(void)mode, (void)mo, (void)v, (void)expect, (void)dst, (void)src, (void)len, (void)newv,
	    (void)id;
	return ONCPU_CS_UNAVAILABLE;
}
ONCPU_INLINE int _oncpu_cs_deref_off_add(int mode, intptr_t *ptr, ptrdiff_t off, intptr_t inc,
                                         int id)
{
	(void)mode, (void)ptr, (void)off, (void)inc, (void)id;
	return ONCPU_CS_UNAVAILABLE;
}

ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_store(int mode, intptr_t *g, intptr_t gexpect, intptr_t *v,
                                             intptr_t expect, intptr_t newv, int id)
{
	(void)mode, (void)g, (void)gexpect, (void)v, (void)expect, (void)newv, (void)id;
	return ONCPU_CS_UNAVAILABLE;
}
ONCPU_INLINE int _oncpu_cs_cmpeq_cmpne_load_off_store(int mode, intptr_t *g, intptr_t gexpect,
                                                      intptr_t *v, intptr_t expectnot,
                                                      ptrdiff_t voff, intptr_t *load, int id)
{
	(void)mode, (void)g, (void)gexpect, (void)v, (void)expectnot, (void)voff, (void)load,
	    (void)id;
	return ONCPU_CS_UNAVAILABLE;
}
ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_trystore_store(int mode, int mo, intptr_t *g,
                                                      intptr_t gexpect, intptr_t *v,
                                                      intptr_t expect, intptr_t *v2, intptr_t newv2,
                                                      intptr_t newv, int id)
{
	(void)mode, (void)mo, (void)g, (void)gexpect, (void)v, (void)expect, (void)v2, (void)newv2,
	    (void)newv, (void)id;
	return ONCPU_CS_UNAVAILABLE;
}
ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_load_store(int mode, intptr_t *g, intptr_t gexpect,
                                                  intptr_t *v, intptr_t expect, intptr_t *src,
                                                  intptr_t *load, intptr_t newv, int id)
{
	(void)mode, (void)g, (void)gexpect, (void)v, (void)expect, (void)src, (void)load,
	    (void)newv, (void)id;
	return ONCPU_CS_UNAVAILABLE;
}
ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_memcpy_store(int mode, int mo, intptr_t *g, intptr_t gexpect,
                                                    intptr_t *v, intptr_t expect, void *dst,
                                                    const void *src, size_t len, intptr_t newv,
                                                    int id)
{
	(void)mode, (void)mo, (void)g, (void)gexpect, (void)v, (void)expect, (void)dst, (void)src,
	    (void)len, (void)newv, (void)id;
	return ONCPU_CS_UNAVAILABLE;
}

ONCPU_INLINE int _oncpu_cs_percpu_array_pop_init(int mode, void *base, intptr_t *load)
{
	(void)mode, (void)base, (void)load;
	return ONCPU_CS_UNAVAILABLE;
}
ONCPU_INLINE int _oncpu_cs_percpu_array_push_init(int mode, void *base, intptr_t cap, intptr_t v)
{
	(void)mode, (void)base, (void)cap, (void)v;
	return ONCPU_CS_UNAVAILABLE;
}

#endif /* stage 2 */
