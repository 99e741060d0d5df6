/* SPDX-License-Identifier: MIT */
/*
 * Compile-time contract of oncpu/cs.h: an indexing mode or a memory order
 * that does not exist is a compile error, never a section that "aborts"
 * forever at run time. compile_check.cmake compiles this file once per
 * CASE_*: CASE_OK (every valid combination) must compile, each other case
 * must fail, naming the offending token.
 */
#include <oncpu.h>

int compile_case(intptr_t *v, intptr_t *v2, void *dst, const void *src, void *base, int id);

int compile_case(intptr_t *v, intptr_t *v2, void *dst, const void *src, void *base, int id)
{
	int r = 0;
#if defined(CASE_OK)
	r |= oncpu_cs_id(ONCPU_CPU) + oncpu_cs_id(ONCPU_VCPU);
	r |= oncpu_cs_add(ONCPU_CPU, v, 1, id) | oncpu_cs_add(ONCPU_VCPU, v, 1, id);
	r |= oncpu_cs_percpu_add(ONCPU_CPU, base, 1) | oncpu_cs_percpu_add(ONCPU_VCPU, base, 1);
	r |= oncpu_cs_cmpeq_store(ONCPU_CPU, v, 0, 1, id);
	r |= oncpu_cs_cmpeq_store(ONCPU_VCPU, v, 0, 1, id);
	r |= oncpu_cs_cmpne_load_off_store(ONCPU_CPU, v, 0, 8, v2, id);
	r |= oncpu_cs_cmpne_load_off_store(ONCPU_VCPU, v, 0, 8, v2, id);
	r |= oncpu_cs_cmpeq_trystore_store(ONCPU_CPU, ONCPU_RELAXED, v, 0, v2, 1, 2, id);
	r |= oncpu_cs_cmpeq_trystore_store(ONCPU_VCPU, ONCPU_RELEASE, v, 0, v2, 1, 2, id);
	r |= oncpu_cs_cmpeq_memcpy_store(ONCPU_CPU, ONCPU_RELEASE, v, 0, dst, src, 8, 1, id);
	r |= oncpu_cs_cmpeq_memcpy_store(ONCPU_VCPU, ONCPU_RELAXED, v, 0, dst, src, 8, 1, id);
	r |= oncpu_cs_deref_off_add(ONCPU_CPU, v, 8, 1, id);
	r |= oncpu_cs_deref_off_add(ONCPU_VCPU, v, 8, 1, id);
	r |= oncpu_cs_cmpeq_cmpeq_store(ONCPU_CPU, v2, 0, v, 0, 1, id);
	r |= oncpu_cs_cmpeq_cmpne_load_off_store(ONCPU_VCPU, v2, 0, v, 0, 8, v2, id);
	r |= oncpu_cs_cmpeq_cmpeq_trystore_store(ONCPU_CPU, ONCPU_RELEASE, v2, 0, v, 0, v2, 1, 2,
	                                         id);
	r |= oncpu_cs_cmpeq_cmpeq_load_store(ONCPU_VCPU, v2, 0, v, 0, v2, v2, 1, id);
	r |= oncpu_cs_cmpeq_cmpeq_memcpy_store(ONCPU_CPU, ONCPU_RELAXED, v2, 0, v, 0, dst, src, 8,
	                                       1, id);
#elif defined(CASE_BOGUS_MODE)
	r = oncpu_cs_add(ONCPU_BOGUS, v, 1, id);
#elif defined(CASE_BOGUS_MODE_ID)
	r = oncpu_cs_id(ONCPU_NODE);
#elif defined(CASE_BOGUS_MODE_PERCPU_ADD)
	r = oncpu_cs_percpu_add(ONCPU_NODE, base, 1);
#elif defined(CASE_ORDER_AS_MODE)
	r = oncpu_cs_cmpeq_store(ONCPU_RELAXED, v, 0, 1, id);
#elif defined(CASE_RUNTIME_MODE)
	int mode = id & 1; /* a mode must be a token, not a value */
	r = oncpu_cs_cmpeq_store(mode, v, 0, 1, id);
#elif defined(CASE_NUMERIC_MODE)
	r = oncpu_cs_cmpeq_store(0, v, 0, 1, id);
#elif defined(CASE_ACQUIRE)
	r = oncpu_cs_cmpeq_trystore_store(ONCPU_CPU, ONCPU_ACQUIRE, v, 0, v2, 1, 2, id);
#elif defined(CASE_SEQ_CST_MEMCPY)
	r = oncpu_cs_cmpeq_memcpy_store(ONCPU_VCPU, ONCPU_SEQ_CST, v, 0, dst, src, 8, 1, id);
#elif defined(CASE_GUARDED_BOGUS_MODE)
	r = oncpu_cs_cmpeq_cmpeq_store(ONCPU_BOGUS, v2, 0, v, 0, 1, id);
#elif defined(CASE_GUARDED_ACQUIRE)
	r = oncpu_cs_cmpeq_cmpeq_memcpy_store(ONCPU_VCPU, ONCPU_ACQUIRE, v2, 0, v, 0, dst, src, 8,
	                                      1, id);
#elif defined(CASE_MODE_AS_ORDER)
	r = oncpu_cs_cmpeq_trystore_store(ONCPU_CPU, ONCPU_CPU, v, 0, v2, 1, 2, id);
#else
#error "no CASE_* defined"
#endif
	(void)v, (void)v2, (void)dst, (void)src, (void)base, (void)id;
	return r;
}
