/* SPDX-License-Identifier: MIT */
/*
 * The retry loop of oncpu_cs(3) ("read the id, run the operation, retry on
 * ONCPU_CS_ABORTED") around every operation of oncpu/cs.h, with the id taken
 * from oncpu_cpu(), oncpu_vcpu() or a constant, in both indexing modes: it
 * must end, with a commit or a failed compare where the thread runs
 * sections, and with ONCPU_CS_UNAVAILABLE in the fallback modes, whatever
 * the id (issue 12, item 13: it used to answer ONCPU_CS_ABORTED forever).
 */
#define _GNU_SOURCE
#include <stddef.h>

#include "testutil.h"

/* Far more tries than a section needs to commit once on a pinned thread. */
#define MAX_TRIES 100000

enum id_source { FROM_CPU, FROM_VCPU, CONSTANT };
static const char *const source_name[] = {"oncpu_cpu()", "oncpu_vcpu()", "a constant"};

static bool rseq;
static int pinned_cpu;

static int next_id(enum id_source src, int mode_is_vcpu)
{
	switch (src) {
	case FROM_CPU:
		return oncpu_cpu();
	case FROM_VCPU:
		return oncpu_vcpu();
	default:
		/* The only thread of the process has vcpu 0; it runs on pinned_cpu. */
		return mode_is_vcpu ? 0 : pinned_cpu;
	}
}

/* Where the thread runs sections, an id of another mode may never match. */
static bool source_fits(enum id_source src, int mode_is_vcpu)
{
	return src == CONSTANT || (src == FROM_VCPU) == (mode_is_vcpu != 0);
}

/*
 * The man page's loop with `id` from src, bounded; returns its result. The
 * data words are reset before every try so that each try can commit.
 */
#define RETRY_LOOP(MODE, src, result, setup, call)                                                 \
	do {                                                                                       \
		int _tries = 0;                                                                    \
		for (;;) {                                                                         \
			int id = next_id(src, _oncpu_mode_##MODE);                                 \
			setup;                                                                     \
			int _r = (call);                                                           \
			if (_r != ONCPU_CS_ABORTED) {                                              \
				(result) = _r;                                                     \
				break;                                                             \
			}                                                                          \
			CHECK_MSG(++_tries < MAX_TRIES,                                            \
			          "%s: %d tries with the id from %s all aborted", #call, _tries,   \
			          source_name[src]);                                               \
		}                                                                                  \
	} while (0)

static void check_result(const char *op, enum id_source src, int mode_is_vcpu, int r)
{
	if (!rseq)
		CHECK_MSG(r == ONCPU_CS_UNAVAILABLE, "%s (id from %s) gave %d in fallback mode", op,
		          source_name[src], r);
	else if (source_fits(src, mode_is_vcpu))
		CHECK_MSG(r == ONCPU_CS_COMMITTED || r == ONCPU_CS_CMPFAIL,
		          "%s (id from %s) gave %d", op, source_name[src], r);
}

/* Every operation that takes an id, for one indexing mode and id source. */
#define DEFINE_ID_OPS(MODE)                                                                        \
	static void id_ops_##MODE(enum id_source src)                                              \
	{                                                                                          \
		const int vm = _oncpu_mode_##MODE;                                                 \
		if (rseq && !source_fits(src, vm))                                                 \
			return; /* such a loop may legitimately abort forever */                   \
		intptr_t v, v2, g, load, node[2], ptr, block[4];                                   \
		char dst[8], src_buf[8] = "abcdefg";                                               \
		int r = 0;                                                                         \
		RETRY_LOOP(MODE, src, r, v = 1, oncpu_cs_add(MODE, &v, 2, id));                    \
		check_result("add", src, vm, r);                                                   \
		RETRY_LOOP(MODE, src, r, v = 1, oncpu_cs_cmpeq_store(MODE, &v, 1, 2, id));         \
		check_result("cmpeq_store", src, vm, r);                                           \
		RETRY_LOOP(MODE, src, r, (v = (intptr_t)node, node[0] = 0),                        \
		           oncpu_cs_cmpne_load_off_store(MODE, &v, 0, 0, &load, id));              \
		check_result("cmpne_load_off_store", src, vm, r);                                  \
		RETRY_LOOP(                                                                        \
		    MODE, src, r, v = 1,                                                           \
		    oncpu_cs_cmpeq_trystore_store(MODE, ONCPU_RELEASE, &v, 1, &v2, 5, 2, id));     \
		check_result("cmpeq_trystore_store", src, vm, r);                                  \
		RETRY_LOOP(MODE, src, r, v = 1,                                                    \
		           oncpu_cs_cmpeq_memcpy_store(MODE, ONCPU_RELAXED, &v, 1, dst, src_buf,   \
		                                       sizeof(dst), 2, id));                       \
		check_result("cmpeq_memcpy_store", src, vm, r);                                    \
		RETRY_LOOP(MODE, src, r, (ptr = (intptr_t)block, block[1] = 0),                    \
		           oncpu_cs_deref_off_add(MODE, &ptr, 8, 3, id));                          \
		check_result("deref_off_add", src, vm, r);                                         \
		RETRY_LOOP(MODE, src, r, (g = 0, v = 1),                                           \
		           oncpu_cs_cmpeq_cmpeq_store(MODE, &g, 0, &v, 1, 2, id));                 \
		check_result("cmpeq_cmpeq_store", src, vm, r);                                     \
		RETRY_LOOP(MODE, src, r, (g = 0, v = (intptr_t)node, node[0] = 0),                 \
		           oncpu_cs_cmpeq_cmpne_load_off_store(MODE, &g, 0, &v, 0, 0, &load, id)); \
		check_result("cmpeq_cmpne_load_off_store", src, vm, r);                            \
		RETRY_LOOP(MODE, src, r, (g = 0, v = 1),                                           \
		           oncpu_cs_cmpeq_cmpeq_trystore_store(MODE, ONCPU_RELAXED, &g, 0, &v, 1,  \
		                                               &v2, 5, 2, id));                    \
		check_result("cmpeq_cmpeq_trystore_store", src, vm, r);                            \
		RETRY_LOOP(                                                                        \
		    MODE, src, r, (g = 0, v = 1, v2 = 9),                                          \
		    oncpu_cs_cmpeq_cmpeq_load_store(MODE, &g, 0, &v, 1, &v2, &load, 2, id));       \
		check_result("cmpeq_cmpeq_load_store", src, vm, r);                                \
		RETRY_LOOP(MODE, src, r, (g = 0, v = 1),                                           \
		           oncpu_cs_cmpeq_cmpeq_memcpy_store(MODE, ONCPU_RELEASE, &g, 0, &v, 1,    \
		                                             dst, src_buf, sizeof(dst), 2, id));   \
		check_result("cmpeq_cmpeq_memcpy_store", src, vm, r);                              \
		/* the same with a compare that fails: never "aborted" forever either */           \
		RETRY_LOOP(MODE, src, r, v = 1, oncpu_cs_cmpeq_store(MODE, &v, 7, 2, id));         \
		check_result("cmpeq_store (compare fails)", src, vm, r);                           \
		if (rseq)                                                                          \
			CHECK(r == ONCPU_CS_CMPFAIL);                                              \
	}
DEFINE_ID_OPS(ONCPU_CPU)
DEFINE_ID_OPS(ONCPU_VCPU)

/* The operations that read the id inside the section. */
#define DEFINE_SELF_ID_OPS(MODE)                                                                   \
	static void self_id_ops_##MODE(void *base)                                                 \
	{                                                                                          \
		const int vm = _oncpu_mode_##MODE;                                                 \
		intptr_t load = 0;                                                                 \
		int r = 0;                                                                         \
		RETRY_LOOP(MODE, CONSTANT, r, (void)id, oncpu_cs_percpu_add(MODE, base, 1));       \
		check_result("percpu_add", CONSTANT, vm, r);                                       \
		RETRY_LOOP(MODE, CONSTANT, r, (void)id,                                            \
		           oncpu_cs_percpu_array_push(MODE, base, 4, 11));                         \
		check_result("percpu_array_push", CONSTANT, vm, r);                                \
		RETRY_LOOP(MODE, CONSTANT, r, (void)id,                                            \
		           oncpu_cs_percpu_array_pop(MODE, base, &load));                          \
		check_result("percpu_array_pop", CONSTANT, vm, r);                                 \
	}
DEFINE_SELF_ID_OPS(ONCPU_CPU)
DEFINE_SELF_ID_OPS(ONCPU_VCPU)

int main(void)
{
	test_allowed_cpus();
	rseq = test_expect_rseq();
	/* One thread, on one CPU: a constant id is current where sections run. */
	pinned_cpu = test_allowed_nth(0);
	CHECK(test_pin(pinned_cpu) == 0);
	CHECK(oncpu_thread_rseq_active() == rseq); /* registers this thread */
	if (rseq)
		CHECK(oncpu_vcpu() == 0);
	for (enum id_source src = FROM_CPU; src <= CONSTANT; src++) {
		id_ops_ONCPU_CPU(src);
		id_ops_ONCPU_VCPU(src);
	}
	void *base = oncpu_percpu_alloc(ONCPU_CS_ARRAY_ITEMS + 4 * sizeof(intptr_t), 0);
	CHECK(base);
	self_id_ops_ONCPU_CPU(base);
	self_id_ops_ONCPU_VCPU(base);
	oncpu_percpu_free(base);
	test_unpin();
	printf("cs_retry: all checks passed (%s)\n", test_mode());
	return 0;
}
