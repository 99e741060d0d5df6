/* SPDX-License-Identifier: MIT */
/*
 * ONCPU_INLINE_FASTPATHS=0 (oncpu(7)): compile_check.cmake compiles this
 * file once per CASE_*. CASE_OK uses every operation that has an inline
 * fast path, as a call and as a function pointer; each other case must be
 * refused: what the stable setting hides (layouts, private symbols, the
 * inline-only critical sections) and a value other than 0 or 1.
 */
#if defined(CASE_BAD_VALUE)
#define ONCPU_INLINE_FASTPATHS 2
#else
#define ONCPU_INLINE_FASTPATHS 0
#endif
#include <oncpu.h>
#if defined(CASE_CS)
#include <oncpu/cs.h>
#endif

int compile_case(void);

int compile_case(void)
{
	int r = 0;
#if defined(CASE_OK)
	struct oncpu_resched_cache rc = ONCPU_RESCHED_CACHE_INIT;
	void *(*pop)(struct oncpu_ring *) = oncpu_ring_pop;
	r = oncpu_cpu() + oncpu_vcpu() + oncpu_resched_arm() + oncpu_resched_check();
	r += (int)oncpu_resched_epoch() + (oncpu_resched_cpu_ptr(&rc, NULL) != NULL);
	oncpu_counter_add(NULL, 1);
	oncpu_stack_push(NULL, NULL);
	r += oncpu_stack_pop(NULL) != NULL;
	r += oncpu_ring_push(NULL, NULL) + (pop(NULL) != NULL);
	oncpu_cache_free(NULL, oncpu_cache_alloc(NULL));
#elif defined(CASE_LAYOUT)
	r = (int)sizeof(struct oncpu_stack);
#elif defined(CASE_PRIVATE)
	r = (int)_oncpu_process.rseq_offset;
#endif
	return r;
}
