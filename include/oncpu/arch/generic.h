/* SPDX-License-Identifier: MIT */
/*
 * oncpu/arch/generic.h - architectures without rseq assembly in oncpu.
 * Included by <oncpu/cs.h>. Every operation answers ONCPU_CS_UNAVAILABLE,
 * never ONCPU_CS_ABORTED, so a retry loop cannot spin: callers take their
 * atomic fallback, which is what every oncpu structure does.
 */
#ifndef ONCPU_ARCH_GENERIC_H
#define ONCPU_ARCH_GENERIC_H

#ifndef _ONCPU_ARCH_INCLUDE_OK
#error "do not include <oncpu/arch/generic.h> directly; include <oncpu/cs.h>"
#endif

#include <stddef.h>
#include <stdint.h>

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

ONCPU_INLINE int _oncpu_cs_percpu_array_pop(int mode, void *base, intptr_t *load)
{
	(void)mode, (void)base, (void)load;
	return ONCPU_CS_UNAVAILABLE;
}
ONCPU_INLINE int _oncpu_cs_percpu_array_push(int mode, void *base, intptr_t cap, intptr_t v)
{
	(void)mode, (void)base, (void)cap, (void)v;
	return ONCPU_CS_UNAVAILABLE;
}
ONCPU_INLINE int _oncpu_cs_percpu_array_pop_init(int mode, void *base, intptr_t *load)
{
	return _oncpu_cs_percpu_array_pop(mode, base, load);
}
ONCPU_INLINE int _oncpu_cs_percpu_array_push_init(int mode, void *base, intptr_t cap, intptr_t v)
{
	return _oncpu_cs_percpu_array_push(mode, base, cap, v);
}

#endif /* ONCPU_ARCH_GENERIC_H */
