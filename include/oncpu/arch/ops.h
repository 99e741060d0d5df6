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
 * The skeleton every section that checks its id shares, from the
 * architecture's fragments (oncpu/arch/generic.h): descriptor, the exit
 * points, arming, injection point 1, the id check, the body (which ends
 * with the committing store), label 2, and the abort handler 4 and the
 * compare-failed exit 5. _ONCPU_ASM_ID_CMP_OP is the one for a body that
 * can fail a compare (exit 5), _ONCPU_ASM_ID_OP for one that cannot.
 */
/* clang-format off */
#define _ONCPU_ASM_ID_SECTION(exit_points, body, cmpfail_label)        \
	_ONCPU_ASM_TABLE                                               \
	exit_points                                                    \
	_ONCPU_ASM_ENTER                                               \
	_ONCPU_INJECT(1)                                               \
	_ONCPU_ASM_CHECK_ID                                            \
	body                                                           \
	"2:\n\t"                                                       \
	_ONCPU_ASM_CLEAR                                               \
	_ONCPU_ASM_FAILURE("%l[abort]", cmpfail_label)
#define _ONCPU_ASM_ID_OP(body)     _ONCPU_ASM_ID_SECTION("", body, "%l[abort]")
#define _ONCPU_ASM_ID_CMP_OP(body)                                     \
	_ONCPU_ASM_ID_SECTION(_ONCPU_ASM_EXIT_POINT("5f"), body, "%l[cmpfail]")
/* clang-format on */

/*
 * The C around the sections, as the functions below share it.
 *
 * _ONCPU_CS_ID_OP(run): an operation that takes an id; an id that fails
 * _oncpu_cs_id_usable() gets ONCPU_CS_UNAVAILABLE without a section, the
 * abort handler answers _oncpu_cs_aborted(). _ONCPU_CS_ID_CMP_OP(run) adds
 * the compare-failed exit, ONCPU_CS_CMPFAIL.
 */
#define _ONCPU_CS_ID_OP(run)                                                                       \
	if (ONCPU_UNLIKELY(!_oncpu_cs_id_usable(id)))                                              \
		return ONCPU_CS_UNAVAILABLE;                                                       \
	run;                                                                                       \
	return ONCPU_CS_COMMITTED;                                                                 \
	abort:                                                                                     \
	return _oncpu_cs_aborted()
#define _ONCPU_CS_ID_CMP_OP(run)                                                                   \
	_ONCPU_CS_ID_OP(run);                                                                      \
	cmpfail:                                                                                   \
	return ONCPU_CS_CMPFAIL

/*
 * The section of memory order mo: its own release section only where
 * _ONCPU_ARCH_ORDERED(mo) says the commit needs one (mo is a constant: the
 * other branch is not emitted). `volatile` is spelled out: a section may
 * have outputs (x86-64's cmpeq_cmpeq_memcpy_store), and GCC 12 deletes an
 * asm goto whose outputs are unused unless it is.
 */
#define _ONCPU_CS_BY_ORDER(section)                                                                \
	(void)mo;                                                                                  \
	if (_ONCPU_ARCH_ORDERED(mo))                                                               \
		__asm__ __volatile__ goto(section(RELEASE) : abort, cmpfail);                      \
	else                                                                                       \
		__asm__ __volatile__ goto(section(RELAXED) : abort, cmpfail)

/*
 * The sections that read their id inside (per-CPU operations): one per
 * indexing mode; each answers ONCPU_CS_UNAVAILABLE itself when the thread
 * is not registered.
 */
#define _ONCPU_CS_BY_MODE(section, ...)                                                            \
	if (mode == _oncpu_mode_ONCPU_CPU)                                                         \
		__asm__ __volatile__ goto(section(CPU) : __VA_ARGS__);                             \
	else                                                                                       \
		__asm__ __volatile__ goto(section(VCPU) : __VA_ARGS__)

/*
 * A per-CPU array operation: on_commit runs after the committed section
 * (the popped item is an output register, valid on the commit path only:
 * through memory it would cost the caller a store and a reload).
 */
#define _ONCPU_CS_ARRAY_OP(section, on_commit)                                                     \
	_ONCPU_CS_BY_MODE(section, abort, cmpfail, unavailable);                                   \
	on_commit;                                                                                 \
	return ONCPU_CS_COMMITTED;                                                                 \
	abort:                                                                                     \
	return ONCPU_CS_ABORTED;                                                                   \
	cmpfail:                                                                                   \
	return ONCPU_CS_CMPFAIL;                                                                   \
	unavailable:                                                                               \
	return ONCPU_CS_UNAVAILABLE

ONCPU_INLINE int _oncpu_cs_add(int mode, intptr_t *v, intptr_t count, int id)
{
	_ONCPU_CS_ID_OP(__asm__ goto(_ONCPU_ARCH_ADD : abort));
}

/* The counter fast path: the id read inside the section. */
ONCPU_INLINE int _oncpu_cs_percpu_add(int mode, void *base, intptr_t count)
{
	if (ONCPU_UNLIKELY(_oncpu_process.rseq_offset == 0))
		return ONCPU_CS_UNAVAILABLE;
	_ONCPU_CS_BY_MODE(_ONCPU_ARCH_PERCPU_ADD, abort, unavailable);
	return ONCPU_CS_COMMITTED;
abort:
	return ONCPU_CS_ABORTED;
unavailable:
	return ONCPU_CS_UNAVAILABLE;
}

ONCPU_INLINE int _oncpu_cs_cmpeq_store(int mode, intptr_t *v, intptr_t expect, intptr_t newv,
                                       int id)
{
	_ONCPU_CS_ID_CMP_OP(__asm__ goto(_ONCPU_ARCH_CMPEQ_STORE : abort, cmpfail));
}

ONCPU_INLINE int _oncpu_cs_cmpne_load_off_store(int mode, intptr_t *v, intptr_t expectnot,
                                                ptrdiff_t voff, intptr_t *load, int id)
{
	_ONCPU_CS_ID_CMP_OP(__asm__ goto(_ONCPU_ARCH_CMPNE_LOAD_OFF_STORE : abort, cmpfail));
}

ONCPU_INLINE int _oncpu_cs_cmpeq_trystore_store(int mode, int mo, intptr_t *v, intptr_t expect,
                                                intptr_t *v2, intptr_t newv2, intptr_t newv, int id)
{
	_ONCPU_CS_ID_CMP_OP(_ONCPU_CS_BY_ORDER(_ONCPU_ARCH_CMPEQ_TRYSTORE_STORE));
}

ONCPU_INLINE int _oncpu_cs_cmpeq_memcpy_store(int mode, int mo, intptr_t *v, intptr_t expect,
                                              void *dst, const void *src, size_t len, intptr_t newv,
                                              int id)
{
	_ONCPU_CS_ID_CMP_OP(_ONCPU_CS_BY_ORDER(_ONCPU_ARCH_CMPEQ_MEMCPY_STORE));
}

ONCPU_INLINE int _oncpu_cs_deref_off_add(int mode, intptr_t *ptr, ptrdiff_t off, intptr_t inc,
                                         int id)
{
	_ONCPU_CS_ID_OP(__asm__ goto(_ONCPU_ARCH_DEREF_OFF_ADD : abort));
}

/* Guarded operations (the guard first: see oncpu/cs.h). */
ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_store(int mode, intptr_t *g, intptr_t gexpect, intptr_t *v,
                                             intptr_t expect, intptr_t newv, int id)
{
	_ONCPU_CS_ID_CMP_OP(__asm__ goto(_ONCPU_ARCH_CMPEQ_CMPEQ_STORE : abort, cmpfail));
}

ONCPU_INLINE int _oncpu_cs_cmpeq_cmpne_load_off_store(int mode, intptr_t *g, intptr_t gexpect,
                                                      intptr_t *v, intptr_t expectnot,
                                                      ptrdiff_t voff, intptr_t *load, int id)
{
	_ONCPU_CS_ID_CMP_OP(__asm__ goto(_ONCPU_ARCH_CMPEQ_CMPNE_LOAD_OFF_STORE : abort, cmpfail));
}

ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_trystore_store(int mode, int mo, intptr_t *g,
                                                      intptr_t gexpect, intptr_t *v,
                                                      intptr_t expect, intptr_t *v2, intptr_t newv2,
                                                      intptr_t newv, int id)
{
	_ONCPU_CS_ID_CMP_OP(_ONCPU_CS_BY_ORDER(_ONCPU_ARCH_CMPEQ_CMPEQ_TRYSTORE_STORE));
}

ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_load_store(int mode, intptr_t *g, intptr_t gexpect,
                                                  intptr_t *v, intptr_t expect, intptr_t *src,
                                                  intptr_t *load, intptr_t newv, int id)
{
	_ONCPU_CS_ID_CMP_OP(__asm__ goto(_ONCPU_ARCH_CMPEQ_CMPEQ_LOAD_STORE : abort, cmpfail));
}

ONCPU_INLINE int _oncpu_cs_cmpeq_cmpeq_memcpy_store(int mode, int mo, intptr_t *g, intptr_t gexpect,
                                                    intptr_t *v, intptr_t expect, void *dst,
                                                    const void *src, size_t len, intptr_t newv,
                                                    int id)
{
	_ONCPU_CS_ID_CMP_OP(_ONCPU_CS_BY_ORDER(_ONCPU_ARCH_CMPEQ_CMPEQ_MEMCPY_STORE));
}

/*
 * Per-CPU arrays (layout in oncpu/cs.h). The _init variants leave out the
 * check that the process is initialized (_oncpu_process.rseq_offset != 0):
 * only for callers that know it is, e.g. because a section already ran on
 * their structure (oncpu/cache.h).
 */
ONCPU_INLINE int _oncpu_cs_percpu_array_pop_init(int mode, void *base, intptr_t *load)
{
	intptr_t item;
	_ONCPU_CS_ARRAY_OP(_ONCPU_ARCH_PERCPU_ARRAY_POP, *load = item);
}

ONCPU_INLINE int _oncpu_cs_percpu_array_push_init(int mode, void *base, intptr_t cap, intptr_t v)
{
	_ONCPU_CS_ARRAY_OP(_ONCPU_ARCH_PERCPU_ARRAY_PUSH, (void)0);
}

#endif /* ONCPU_ARCH_OPS_H */
