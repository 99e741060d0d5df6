/* SPDX-License-Identifier: MIT */
/*
 * oncpu/arch/ops.h - the critical-section operations: one C function each,
 * for every architecture with rseq assembly. Included by <oncpu/arch.h>
 * (from oncpu/cs.h) after the architecture header's stage 2, which
 * supplies each section's asm as a macro _ONCPU_ARCH_<OPERATION> (the
 * contract is at the top of oncpu/arch/generic.h). Here is all that is not
 * assembly: the id check, the labels a section leaves by and what each
 * answers, and the choice by indexing mode and by memory order.
 *
 * The macros' operands name this file's parameters (and `item`, the popped
 * value), so their names are part of the contract.
 */
#ifndef _ONCPU_ARCH_INCLUDE_OK
#error "do not include <oncpu/arch/ops.h> directly; include <oncpu/cs.h>"
#endif

#ifndef ONCPU_ARCH_OPS_H
#define ONCPU_ARCH_OPS_H

#include <stddef.h>
#include <stdint.h>

/*
 * Race-window injection for tests (compile the test with -DONCPU_INJECT and
 * ONCPU_INJECT_DEFINE() once): point n spins _oncpu_inject_loops[n] times.
 */
#ifdef ONCPU_INJECT
#define ONCPU_INJECT_DEFINE()                                                                      \
	__attribute__((visibility("hidden"))) volatile int _oncpu_inject_loops[8]
extern volatile int _oncpu_inject_loops[8];
#endif

/*
 * Id-taking operations: an id that fails _oncpu_cs_id_usable() gets
 * ONCPU_CS_UNAVAILABLE without a section; the abort handler answers
 * _oncpu_cs_aborted(), the compare-failed exit ONCPU_CS_CMPFAIL.
 */
ONCPU_INLINE int _oncpu_cs_add(int mode, intptr_t *v, intptr_t count, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	__asm__ goto(_ONCPU_ARCH_ADD : abort);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
}

/*
 * *(base + id * ONCPU_PERCPU_STRIDE) += count, the id read inside the
 * section, which answers ONCPU_CS_UNAVAILABLE itself when the thread is not
 * registered. The counter fast path.
 */
ONCPU_INLINE int _oncpu_cs_percpu_add(int mode, void *base, intptr_t count)
{
	if (ONCPU_UNLIKELY(_oncpu_process.rseq_offset == 0))
		return ONCPU_CS_UNAVAILABLE;
	if (mode == _oncpu_mode_ONCPU_CPU)
		__asm__ goto(_ONCPU_ARCH_PERCPU_ADD(CPU) : abort, unavailable);
	else
		__asm__ goto(_ONCPU_ARCH_PERCPU_ADD(VCPU) : abort, unavailable);
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
	__asm__ goto(_ONCPU_ARCH_CMPEQ_STORE : abort, cmpfail);
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
	__asm__ goto(_ONCPU_ARCH_CMPNE_LOAD_OFF_STORE : abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

/*
 * Operations with a memory order: the release section only where
 * _ONCPU_ARCH_ORDERED(mo) says the commit needs one (mo is a constant: the
 * other branch is not emitted).
 */
ONCPU_INLINE int _oncpu_cs_cmpeq_trystore_store(int mode, int mo, intptr_t *v, intptr_t expect,
                                                intptr_t *v2, intptr_t newv2, intptr_t newv, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	(void)mo;
	if (_ONCPU_ARCH_ORDERED(mo))
		__asm__ goto(_ONCPU_ARCH_CMPEQ_TRYSTORE_STORE(RELEASE) : abort, cmpfail);
	else
		__asm__ goto(_ONCPU_ARCH_CMPEQ_TRYSTORE_STORE(RELAXED) : abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

ONCPU_INLINE int _oncpu_cs_cmpeq_memcpy_store(int mode, int mo, intptr_t *v, intptr_t expect,
                                              void *dst, const void *src, size_t len, intptr_t newv,
                                              int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	(void)mo;
	if (_ONCPU_ARCH_ORDERED(mo))
		__asm__ goto(_ONCPU_ARCH_CMPEQ_MEMCPY_STORE(RELEASE) : abort, cmpfail);
	else
		__asm__ goto(_ONCPU_ARCH_CMPEQ_MEMCPY_STORE(RELAXED) : abort, cmpfail);
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
	__asm__ goto(_ONCPU_ARCH_DEREF_OFF_ADD : abort);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
}

/* Guarded operations (the guard first: see oncpu/cs.h). */
ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_store(int mode, intptr_t *g, intptr_t gexpect, intptr_t *v,
                                             intptr_t expect, intptr_t newv, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	__asm__ goto(_ONCPU_ARCH_CMPEQ_CMPEQ_STORE : abort, cmpfail);
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
	__asm__ goto(_ONCPU_ARCH_CMPEQ_CMPNE_LOAD_OFF_STORE : abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_trystore_store(int mode, int mo, intptr_t *g,
                                                      intptr_t gexpect, intptr_t *v,
                                                      intptr_t expect, intptr_t *v2, intptr_t newv2,
                                                      intptr_t newv, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	(void)mo;
	if (_ONCPU_ARCH_ORDERED(mo))
		__asm__ goto(_ONCPU_ARCH_CMPEQ_CMPEQ_TRYSTORE_STORE(RELEASE) : abort, cmpfail);
	else
		__asm__ goto(_ONCPU_ARCH_CMPEQ_CMPEQ_TRYSTORE_STORE(RELAXED) : abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_load_store(int mode, intptr_t *g, intptr_t gexpect,
                                                  intptr_t *v, intptr_t expect, intptr_t *src,
                                                  intptr_t *load, intptr_t newv, int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	__asm__ goto(_ONCPU_ARCH_CMPEQ_CMPEQ_LOAD_STORE : abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

/*
 * The section may take dst, src and len as in-out operands (x86-64 does):
 * hence `volatile`, spelled out because GCC 12 deletes an asm goto whose
 * outputs are unused unless it is.
 */
ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_memcpy_store(int mode, int mo, intptr_t *g, intptr_t gexpect,
                                                    intptr_t *v, intptr_t expect, void *dst,
                                                    const void *src, size_t len, intptr_t newv,
                                                    int id)
{
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))
		return ONCPU_CS_UNAVAILABLE;
	(void)mo;
	if (_ONCPU_ARCH_ORDERED(mo))
		__asm__ __volatile__ goto(_ONCPU_ARCH_CMPEQ_CMPEQ_MEMCPY_STORE(RELEASE)
		                          : abort, cmpfail);
	else
		__asm__ __volatile__ goto(_ONCPU_ARCH_CMPEQ_CMPEQ_MEMCPY_STORE(RELAXED)
		                          : abort, cmpfail);
	return ONCPU_CS_COMMITTED;
abort:
	return _oncpu_cs_aborted();
cmpfail:
	return ONCPU_CS_CMPFAIL;
}

/*
 * Per-CPU arrays: the section reads the id itself, as percpu_add does. The
 * popped item is an output register, valid on the commit path (the only
 * one that stores it): through memory it would cost the caller a store and
 * a reload; `volatile` as in cmpeq_cmpeq_memcpy_store.
 *
 * The _init variants leave out the check that the process is initialized
 * (_oncpu_process.rseq_offset != 0): only for callers that know it is, e.g.
 * because a section already ran on their structure (oncpu/cache.h).
 */
ONCPU_INLINE int _oncpu_cs_percpu_array_pop_init(int mode, void *base, intptr_t *load)
{
	intptr_t item;
	if (mode == _oncpu_mode_ONCPU_CPU)
		__asm__ __volatile__ goto(_ONCPU_ARCH_PERCPU_ARRAY_POP(CPU)
		                          : abort, cmpfail, unavailable);
	else
		__asm__ __volatile__ goto(_ONCPU_ARCH_PERCPU_ARRAY_POP(VCPU)
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
		__asm__ goto(_ONCPU_ARCH_PERCPU_ARRAY_PUSH(CPU) : abort, cmpfail, unavailable);
	else
		__asm__ goto(_ONCPU_ARCH_PERCPU_ARRAY_PUSH(VCPU) : abort, cmpfail, unavailable);
	return ONCPU_CS_COMMITTED;
abort:
	return ONCPU_CS_ABORTED;
cmpfail:
	return ONCPU_CS_CMPFAIL;
unavailable:
	return ONCPU_CS_UNAVAILABLE;
}

#endif /* ONCPU_ARCH_OPS_H */
