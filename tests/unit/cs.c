/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of oncpu/cs.h: every critical-section operation (the guarded
 * ones included) through the public macros, in both indexing modes (ONCPU_CPU, ONCPU_VCPU) and both
 * commit orders where there is one: committed, compare-failed (nothing
 * written), wrong id (ONCPU_CS_ABORTED, nothing committed) and, in the
 * fallback modes, ONCPU_CS_UNAVAILABLE. Also checks the descriptor
 * sections this program carries (the kernel selftests' layout).
 */
#define _GNU_SOURCE
#include <stddef.h>

#include "testutil.h"

/* An id that no thread can have: the check inside the section fails. */
#define WRONG_ID (oncpu_cpu_count() + 7)

static bool rseq;

/*
 * r = call, with `id` fresh from oncpu_cs_id(mode), retried while the
 * section aborts (preemption or migration may abort any attempt).
 */
#define CS_RETRY(mode, r, call)                                                                    \
	do {                                                                                       \
		int _tries = 0;                                                                    \
		for (;;) {                                                                         \
			int id = oncpu_cs_id(mode);                                                \
			CHECK(id >= 0 && id < oncpu_cpu_count());                                  \
			(r) = (call);                                                              \
			if ((r) != ONCPU_CS_ABORTED)                                               \
				break;                                                             \
			CHECK_MSG(++_tries < 100000, "section never commits");                     \
		}                                                                                  \
	} while (0)

/* Expected result of a section called with a wrong id: never a commit;
 * a thread without sections learns that it has none (retrying cannot help). */
static void check_wrong_id_result(int r)
{
	if (rseq)
		CHECK_MSG(r == ONCPU_CS_ABORTED, "wrong id gave %d", r);
	else
		CHECK_MSG(r == ONCPU_CS_UNAVAILABLE, "wrong id gave %d", r);
}

static void test_cs_id(void)
{
	if (!rseq) {
		CHECK(oncpu_cs_id(ONCPU_CPU) == ONCPU_CS_UNAVAILABLE);
		CHECK(oncpu_cs_id(ONCPU_VCPU) == ONCPU_CS_UNAVAILABLE);
		return;
	}
	for (int i = 0; i < test_allowed_count(); i++) {
		int cpu = test_allowed_nth(i);
		CHECK(test_pin(cpu) == 0);
		CHECK(oncpu_cs_id(ONCPU_CPU) == cpu);
		int v = oncpu_cs_id(ONCPU_VCPU);
		CHECK(v >= 0 && v < oncpu_cpu_count());
		CHECK(v == oncpu_vcpu());
		if (!oncpu_vcpu_dense())
			CHECK(v == cpu);
	}
	test_unpin();
}

/* The tests of every operation, for one indexing mode. */
#define DEFINE_MODE_TESTS(MODE)                                                                    \
	static void test_add_##MODE(void)                                                          \
	{                                                                                          \
		intptr_t v = 40;                                                                   \
		int r;                                                                             \
		if (rseq) {                                                                        \
			CS_RETRY(MODE, r, oncpu_cs_add(MODE, &v, 2, id));                          \
			CHECK(r == ONCPU_CS_COMMITTED && v == 42);                                 \
			CS_RETRY(MODE, r, oncpu_cs_add(MODE, &v, -50, id));                        \
			CHECK(r == ONCPU_CS_COMMITTED && v == -8);                                 \
			CS_RETRY(MODE, r, oncpu_cs_add(MODE, &v, (intptr_t)1 << 40, id));          \
			CHECK(r == ONCPU_CS_COMMITTED && v == ((intptr_t)1 << 40) - 8);            \
			v = 40;                                                                    \
		}                                                                                  \
		check_wrong_id_result(oncpu_cs_add(MODE, &v, 2, WRONG_ID));                        \
		/* ids that cannot be current never reach a section */                             \
		CHECK(oncpu_cs_add(MODE, &v, 2, -1) == ONCPU_CS_UNAVAILABLE);                      \
		CHECK(oncpu_cs_add(MODE, &v, 2, ONCPU_CS_UNAVAILABLE) == ONCPU_CS_UNAVAILABLE);    \
		CHECK(v == 40);                                                                    \
	}                                                                                          \
                                                                                                   \
	static void test_percpu_add_##MODE(void)                                                   \
	{                                                                                          \
		intptr_t *h = oncpu_percpu_alloc(sizeof(intptr_t), 0);                             \
		CHECK(h);                                                                          \
		int n = oncpu_cpu_count();                                                         \
		if (!rseq) {                                                                       \
			CHECK(oncpu_cs_percpu_add(MODE, h, 1) == ONCPU_CS_UNAVAILABLE);            \
			for (int c = 0; c < n; c++)                                                \
				CHECK(*(intptr_t *)oncpu_ptr(h, c) == 0);                          \
			oncpu_percpu_free(h);                                                      \
			return;                                                                    \
		}                                                                                  \
		intptr_t total = 0;                                                                \
		for (int i = 0; i < test_allowed_count(); i++) {                                   \
			int cpu = test_allowed_nth(i);                                             \
			CHECK(test_pin(cpu) == 0);                                                 \
			for (int k = 1; k <= 3; k++) {                                             \
				int id = oncpu_cs_id(MODE), r;                                     \
				intptr_t before = *(intptr_t *)oncpu_ptr(h, id);                   \
				do                                                                 \
					r = oncpu_cs_percpu_add(MODE, h, 10 * k + cpu);            \
				while (r == ONCPU_CS_ABORTED);                                     \
				CHECK(r == ONCPU_CS_COMMITTED);                                    \
				total += 10 * k + cpu;                                             \
				/* one thread: its id stays put while pinned */                    \
				if (oncpu_cs_id(MODE) == id)                                       \
					CHECK(*(intptr_t *)oncpu_ptr(h, id) ==                     \
					      before + 10 * k + cpu);                              \
			}                                                                          \
			if (_ONCPU_MODE(MODE) == _ONCPU_MODE(ONCPU_CPU))                           \
				CHECK(*(intptr_t *)oncpu_ptr(h, cpu) == 60 + 3 * cpu);             \
		}                                                                                  \
		test_unpin();                                                                      \
		intptr_t sum = 0;                                                                  \
		for (int c = 0; c < n; c++)                                                        \
			sum += *(intptr_t *)oncpu_ptr(h, c);                                       \
		CHECK(sum == total);                                                               \
		oncpu_percpu_free(h);                                                              \
	}                                                                                          \
                                                                                                   \
	static void test_cmpeq_store_##MODE(void)                                                  \
	{                                                                                          \
		intptr_t v = 10;                                                                   \
		int r;                                                                             \
		if (rseq) {                                                                        \
			CS_RETRY(MODE, r, oncpu_cs_cmpeq_store(MODE, &v, 10, 20, id));             \
			CHECK(r == ONCPU_CS_COMMITTED && v == 20);                                 \
			CS_RETRY(MODE, r, oncpu_cs_cmpeq_store(MODE, &v, 10, 30, id));             \
			CHECK(r == ONCPU_CS_CMPFAIL && v == 20);                                   \
			CS_RETRY(MODE, r, oncpu_cs_cmpeq_store(MODE, &v, 20, -1, id));             \
			CHECK(r == ONCPU_CS_COMMITTED && v == -1);                                 \
		}                                                                                  \
		v = 20;                                                                            \
		check_wrong_id_result(oncpu_cs_cmpeq_store(MODE, &v, 20, 30, WRONG_ID));           \
		CHECK(v == 20);                                                                    \
	}                                                                                          \
                                                                                                   \
	static void test_cmpne_load_off_store_##MODE(void)                                         \
	{                                                                                          \
		struct node {                                                                      \
			intptr_t payload;                                                          \
			intptr_t next;                                                             \
		} n2 = {2, 0}, n1 = {1, (intptr_t)&n2};                                            \
		const ptrdiff_t off = offsetof(struct node, next);                                 \
		intptr_t head = (intptr_t)&n1, load = 12345;                                       \
		int r;                                                                             \
		check_wrong_id_result(                                                             \
		    oncpu_cs_cmpne_load_off_store(MODE, &head, 0, off, &load, WRONG_ID));          \
		CHECK(head == (intptr_t)&n1);                                                      \
		if (!rseq)                                                                         \
			return;                                                                    \
		CS_RETRY(MODE, r, oncpu_cs_cmpne_load_off_store(MODE, &head, 0, off, &load, id));  \
		CHECK(r == ONCPU_CS_COMMITTED && load == (intptr_t)&n1 && head == (intptr_t)&n2);  \
		CS_RETRY(MODE, r, oncpu_cs_cmpne_load_off_store(MODE, &head, 0, off, &load, id));  \
		CHECK(r == ONCPU_CS_COMMITTED && load == (intptr_t)&n2 && head == 0);              \
		load = 777;                                                                        \
		CS_RETRY(MODE, r, oncpu_cs_cmpne_load_off_store(MODE, &head, 0, off, &load, id));  \
		CHECK(r == ONCPU_CS_CMPFAIL && load == 777 && head == 0);                          \
		/* expectnot is any value, not only NULL */                                        \
		head = (intptr_t)&n1;                                                              \
		CS_RETRY(                                                                          \
		    MODE, r,                                                                       \
		    oncpu_cs_cmpne_load_off_store(MODE, &head, (intptr_t)&n1, off, &load, id));    \
		CHECK(r == ONCPU_CS_CMPFAIL && load == 777 && head == (intptr_t)&n1);              \
		/* voff 0: the list link is the first word */                                      \
		intptr_t a[2] = {(intptr_t)&a[1], 99};                                             \
		head = (intptr_t)&a[0];                                                            \
		CS_RETRY(MODE, r, oncpu_cs_cmpne_load_off_store(MODE, &head, 0, 0, &load, id));    \
		CHECK(r == ONCPU_CS_COMMITTED && load == (intptr_t)&a[0] &&                        \
		      head == (intptr_t)&a[1]);                                                    \
	}                                                                                          \
                                                                                                   \
	static void test_deref_off_add_##MODE(void)                                                \
	{                                                                                          \
		intptr_t block[4] = {1, 2, 3, 4};                                                  \
		intptr_t ptr = (intptr_t)block;                                                    \
		int r;                                                                             \
		check_wrong_id_result(oncpu_cs_deref_off_add(MODE, &ptr, 16, 5, WRONG_ID));        \
		CHECK(block[2] == 3 && ptr == (intptr_t)block);                                    \
		if (!rseq)                                                                         \
			return;                                                                    \
		CS_RETRY(MODE, r, oncpu_cs_deref_off_add(MODE, &ptr, 16, 5, id));                  \
		CHECK(r == ONCPU_CS_COMMITTED && block[2] == 8 && ptr == (intptr_t)block);         \
		CS_RETRY(MODE, r, oncpu_cs_deref_off_add(MODE, &ptr, 0, -11, id));                 \
		CHECK(r == ONCPU_CS_COMMITTED && block[0] == -10);                                 \
		CHECK(block[1] == 2 && block[3] == 4);                                             \
	}                                                                                          \
                                                                                                   \
	static void test_guarded_store_##MODE(void)                                                \
	{                                                                                          \
		intptr_t g = 0, v = 10;                                                            \
		int r;                                                                             \
		check_wrong_id_result(                                                             \
		    oncpu_cs_cmpeq_cmpeq_store(MODE, &g, 0, &v, 10, 20, WRONG_ID));                \
		CHECK(v == 10);                                                                    \
		if (!rseq)                                                                         \
			return;                                                                    \
		CS_RETRY(MODE, r, oncpu_cs_cmpeq_cmpeq_store(MODE, &g, 0, &v, 10, 20, id));        \
		CHECK(r == ONCPU_CS_COMMITTED && v == 20);                                         \
		g = 1; /* guard taken: nothing written even though v matches */                    \
		CS_RETRY(MODE, r, oncpu_cs_cmpeq_cmpeq_store(MODE, &g, 0, &v, 20, 30, id));        \
		CHECK(r == ONCPU_CS_CMPFAIL && v == 20);                                           \
		CS_RETRY(MODE, r, oncpu_cs_cmpeq_cmpeq_store(MODE, &g, 1, &v, 10, 30, id));        \
		CHECK(r == ONCPU_CS_CMPFAIL && v == 20);                                           \
		CS_RETRY(MODE, r, oncpu_cs_cmpeq_cmpeq_store(MODE, &g, 1, &v, 20, 30, id));        \
		CHECK(r == ONCPU_CS_COMMITTED && v == 30 && g == 1);                               \
	}                                                                                          \
                                                                                                   \
	static void test_guarded_pop_##MODE(void)                                                  \
	{                                                                                          \
		intptr_t n2[2] = {0, 0}, n1[2] = {0, (intptr_t)n2};                                \
		intptr_t g = 5, head = (intptr_t)n1, load = 111;                                   \
		const ptrdiff_t off = sizeof(intptr_t);                                            \
		int r;                                                                             \
		check_wrong_id_result(oncpu_cs_cmpeq_cmpne_load_off_store(MODE, &g, 5, &head, 0,   \
		                                                          off, &load, WRONG_ID));  \
		CHECK(head == (intptr_t)n1);                                                       \
		if (!rseq)                                                                         \
			return;                                                                    \
		CS_RETRY(                                                                          \
		    MODE, r,                                                                       \
		    oncpu_cs_cmpeq_cmpne_load_off_store(MODE, &g, 4, &head, 0, off, &load, id));   \
		CHECK(r == ONCPU_CS_CMPFAIL && head == (intptr_t)n1 && load == 111);               \
		CS_RETRY(                                                                          \
		    MODE, r,                                                                       \
		    oncpu_cs_cmpeq_cmpne_load_off_store(MODE, &g, 5, &head, 0, off, &load, id));   \
		CHECK(r == ONCPU_CS_COMMITTED && load == (intptr_t)n1 && head == (intptr_t)n2);    \
		CS_RETRY(                                                                          \
		    MODE, r,                                                                       \
		    oncpu_cs_cmpeq_cmpne_load_off_store(MODE, &g, 5, &head, 0, off, &load, id));   \
		CHECK(r == ONCPU_CS_COMMITTED && load == (intptr_t)n2 && head == 0);               \
		load = 222;                                                                        \
		CS_RETRY(                                                                          \
		    MODE, r,                                                                       \
		    oncpu_cs_cmpeq_cmpne_load_off_store(MODE, &g, 5, &head, 0, off, &load, id));   \
		CHECK(r == ONCPU_CS_CMPFAIL && head == 0 && load == 222);                          \
	}                                                                                          \
                                                                                                   \
	static void test_guarded_load_store_##MODE(void)                                           \
	{                                                                                          \
		intptr_t g = 0, v = 3, src = 77, load = 0;                                         \
		int r;                                                                             \
		check_wrong_id_result(oncpu_cs_cmpeq_cmpeq_load_store(MODE, &g, 0, &v, 3, &src,    \
		                                                      &load, 2, WRONG_ID));        \
		CHECK(v == 3);                                                                     \
		if (!rseq)                                                                         \
			return;                                                                    \
		CS_RETRY(MODE, r,                                                                  \
		         oncpu_cs_cmpeq_cmpeq_load_store(MODE, &g, 1, &v, 3, &src, &load, 2, id)); \
		CHECK(r == ONCPU_CS_CMPFAIL && v == 3 && load == 0);                               \
		CS_RETRY(MODE, r,                                                                  \
		         oncpu_cs_cmpeq_cmpeq_load_store(MODE, &g, 0, &v, 4, &src, &load, 2, id)); \
		CHECK(r == ONCPU_CS_CMPFAIL && v == 3 && load == 0);                               \
		CS_RETRY(MODE, r,                                                                  \
		         oncpu_cs_cmpeq_cmpeq_load_store(MODE, &g, 0, &v, 3, &src, &load, 2, id)); \
		CHECK(r == ONCPU_CS_COMMITTED && v == 2 && load == 77 && src == 77);               \
	}                                                                                          \
                                                                                                   \
	DEFINE_ORDER_TESTS(MODE, ONCPU_RELAXED)                                                    \
	DEFINE_ORDER_TESTS(MODE, ONCPU_RELEASE)

/* The operations with a commit order, for one mode and one order. */
#define DEFINE_ORDER_TESTS(MODE, MO)                                                               \
	static void test_trystore_##MODE##_##MO(void)                                              \
	{                                                                                          \
		intptr_t v = 1, v2 = 0;                                                            \
		int r;                                                                             \
		check_wrong_id_result(                                                             \
		    oncpu_cs_cmpeq_trystore_store(MODE, MO, &v, 1, &v2, 7, 2, WRONG_ID));          \
		CHECK(v == 1);                                                                     \
		if (!rseq)                                                                         \
			return;                                                                    \
		CS_RETRY(MODE, r, oncpu_cs_cmpeq_trystore_store(MODE, MO, &v, 1, &v2, 7, 2, id));  \
		CHECK(r == ONCPU_CS_COMMITTED && v == 2 && v2 == 7);                               \
		v2 = 99;                                                                           \
		CS_RETRY(MODE, r, oncpu_cs_cmpeq_trystore_store(MODE, MO, &v, 1, &v2, 8, 3, id));  \
		CHECK(r == ONCPU_CS_CMPFAIL && v == 2 && v2 == 99);                                \
	}                                                                                          \
                                                                                                   \
	static void test_memcpy_##MODE##_##MO(void)                                                \
	{                                                                                          \
		unsigned char src[100], dst[101];                                                  \
		for (int i = 0; i < 100; i++)                                                      \
			src[i] = (unsigned char)(i * 7 + 1);                                       \
		static const size_t lens[] = {0, 1, 7, 8, 63, 64, 100};                            \
		for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {                      \
			size_t len = lens[k];                                                      \
			intptr_t v = 5;                                                            \
			int r;                                                                     \
			memset(dst, 0xee, sizeof(dst));                                            \
			check_wrong_id_result(oncpu_cs_cmpeq_memcpy_store(MODE, MO, &v, 5, dst,    \
			                                                  src, len, 6, WRONG_ID)); \
			CHECK(v == 5);                                                             \
			if (!rseq)                                                                 \
				continue;                                                          \
			/* compare fails: nothing copied, nothing stored */                        \
			CS_RETRY(                                                                  \
			    MODE, r,                                                               \
			    oncpu_cs_cmpeq_memcpy_store(MODE, MO, &v, 4, dst, src, len, 6, id));   \
			CHECK(r == ONCPU_CS_CMPFAIL && v == 5);                                    \
			for (size_t i = 0; i < sizeof(dst); i++)                                   \
				CHECK(dst[i] == 0xee);                                             \
			CS_RETRY(                                                                  \
			    MODE, r,                                                               \
			    oncpu_cs_cmpeq_memcpy_store(MODE, MO, &v, 5, dst, src, len, 6, id));   \
			CHECK(r == ONCPU_CS_COMMITTED && v == 6);                                  \
			CHECK(memcmp(dst, src, len) == 0);                                         \
			for (size_t i = len; i < sizeof(dst); i++)                                 \
				CHECK(dst[i] == 0xee);                                             \
		}                                                                                  \
	}                                                                                          \
                                                                                                   \
	static void test_guarded_trystore_##MODE##_##MO(void)                                      \
	{                                                                                          \
		intptr_t g = 9, v = 1, v2 = 0;                                                     \
		int r;                                                                             \
		check_wrong_id_result(oncpu_cs_cmpeq_cmpeq_trystore_store(MODE, MO, &g, 9, &v, 1,  \
		                                                          &v2, 7, 2, WRONG_ID));   \
		CHECK(v == 1);                                                                     \
		if (!rseq)                                                                         \
			return;                                                                    \
		CS_RETRY(                                                                          \
		    MODE, r,                                                                       \
		    oncpu_cs_cmpeq_cmpeq_trystore_store(MODE, MO, &g, 8, &v, 1, &v2, 7, 2, id));   \
		CHECK(r == ONCPU_CS_CMPFAIL && v == 1 && v2 == 0);                                 \
		CS_RETRY(                                                                          \
		    MODE, r,                                                                       \
		    oncpu_cs_cmpeq_cmpeq_trystore_store(MODE, MO, &g, 9, &v, 0, &v2, 7, 2, id));   \
		CHECK(r == ONCPU_CS_CMPFAIL && v == 1 && v2 == 0);                                 \
		CS_RETRY(                                                                          \
		    MODE, r,                                                                       \
		    oncpu_cs_cmpeq_cmpeq_trystore_store(MODE, MO, &g, 9, &v, 1, &v2, 7, 2, id));   \
		CHECK(r == ONCPU_CS_COMMITTED && v == 2 && v2 == 7 && g == 9);                     \
	}                                                                                          \
                                                                                                   \
	static void test_guarded_memcpy_##MODE##_##MO(void)                                        \
	{                                                                                          \
		char src[24] = "guarded memcpy section", dst[24];                                  \
		intptr_t g = 0, v = 5;                                                             \
		int r;                                                                             \
		memset(dst, 'x', sizeof(dst));                                                     \
		check_wrong_id_result(oncpu_cs_cmpeq_cmpeq_memcpy_store(                           \
		    MODE, MO, &g, 0, &v, 5, dst, src, sizeof(src), 6, WRONG_ID));                  \
		CHECK(v == 5);                                                                     \
		if (!rseq)                                                                         \
			return;                                                                    \
		CS_RETRY(MODE, r,                                                                  \
		         oncpu_cs_cmpeq_cmpeq_memcpy_store(MODE, MO, &g, 1, &v, 5, dst, src,       \
		                                           sizeof(src), 6, id));                   \
		CHECK(r == ONCPU_CS_CMPFAIL && v == 5);                                            \
		for (size_t i = 0; i < sizeof(dst); i++)                                           \
			CHECK(dst[i] == 'x');                                                      \
		CS_RETRY(MODE, r,                                                                  \
		         oncpu_cs_cmpeq_cmpeq_memcpy_store(MODE, MO, &g, 0, &v, 5, dst, src,       \
		                                           sizeof(src), 6, id));                   \
		CHECK(r == ONCPU_CS_COMMITTED && v == 6 && memcmp(dst, src, sizeof(src)) == 0);    \
	}

DEFINE_MODE_TESTS(ONCPU_CPU)
DEFINE_MODE_TESTS(ONCPU_VCPU)

/* A thread that never called oncpu: the first section registers it. */
static void *first_call_thread(void *arg)
{
	(void)arg;
	intptr_t v = 0;
	int r;
	if (rseq) {
		CS_RETRY(ONCPU_VCPU, r, oncpu_cs_add(ONCPU_VCPU, &v, 1, id));
		CHECK(r == ONCPU_CS_COMMITTED && v == 1);
	} else {
		CHECK(oncpu_cs_id(ONCPU_VCPU) == ONCPU_CS_UNAVAILABLE);
	}
	return NULL;
}

static void *percpu_add_first_thread(void *arg)
{
	intptr_t *h = arg;
	int r;
	do
		r = oncpu_cs_percpu_add(ONCPU_CPU, h, 1);
	while (r == ONCPU_CS_ABORTED);
	/*
	 * In rseq-own mode nothing registered this thread yet: the section
	 * finds it unregistered and answers UNAVAILABLE (the caller then
	 * takes its slow path, which registers); otherwise it commits.
	 */
	if (rseq && !test_mode_is("rseq-own"))
		CHECK(r == ONCPU_CS_COMMITTED);
	else
		CHECK(r == ONCPU_CS_UNAVAILABLE);
	if (rseq) {
		CHECK(oncpu_thread_init() == 0);
		do
			r = oncpu_cs_percpu_add(ONCPU_CPU, h, 1);
		while (r == ONCPU_CS_ABORTED);
		CHECK(r == ONCPU_CS_COMMITTED);
	}
	return NULL;
}

static void test_first_calls_in_thread(void)
{
	pthread_t t;
	CHECK(pthread_create(&t, NULL, first_call_thread, NULL) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	intptr_t *h = oncpu_percpu_alloc(sizeof(*h), 0);
	CHECK(h);
	CHECK(pthread_create(&t, NULL, percpu_add_first_thread, h) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	intptr_t sum = 0;
	for (int c = 0; c < oncpu_cpu_count(); c++)
		sum += *(intptr_t *)oncpu_ptr(h, c);
	CHECK(sum == (!rseq ? 0 : test_mode_is("rseq-own") ? 1 : 2));
	oncpu_percpu_free(h);
}

/* ---- descriptor sections (kernel selftests' layout) ---- */

#if defined(ONCPU_HAVE_RSEQ_ASM)
extern const struct oncpu_rseq_cs __start___rseq_cs[], __stop___rseq_cs[];
extern const uint64_t __start___rseq_cs_ptr_array[], __stop___rseq_cs_ptr_array[];
extern const struct oncpu_rseq_exit_point __start___rseq_exit_point_array[],
    __stop___rseq_exit_point_array[];

static const struct oncpu_rseq_cs *find_cs(uint64_t start_ip)
{
	for (const struct oncpu_rseq_cs *d = __start___rseq_cs; d < __stop___rseq_cs; d++)
		if (d->start_ip == start_ip)
			return d;
	return NULL;
}

static void test_sections(void)
{
	size_t ndesc = (size_t)(__stop___rseq_cs - __start___rseq_cs);
	size_t nptr = (size_t)(__stop___rseq_cs_ptr_array - __start___rseq_cs_ptr_array);
	CHECK(ndesc > 20); /* every inlined section of this program */
	CHECK(nptr == ndesc);
	for (const struct oncpu_rseq_cs *d = __start___rseq_cs; d < __stop___rseq_cs; d++) {
		CHECK(((uintptr_t)d & 31) == 0);
		CHECK(d->version == 0 && d->flags == 0);
		CHECK(d->start_ip != 0 && d->post_commit_offset > 0);
		CHECK(d->post_commit_offset < 4096);
		/* the abort handler lies outside the section, after the signature */
		CHECK(d->abort_ip < d->start_ip ||
		      d->abort_ip >= d->start_ip + d->post_commit_offset);
		uint32_t sig;
		memcpy(&sig, (const void *)(uintptr_t)(d->abort_ip - 4), 4);
		CHECK_MSG(sig == ONCPU_RSEQ_SIG, "signature 0x%x", sig);
	}
	for (size_t i = 0; i < nptr; i++) {
		const struct oncpu_rseq_cs *d =
		    (const void *)(uintptr_t)__start___rseq_cs_ptr_array[i];
		CHECK(d >= __start___rseq_cs && d < __stop___rseq_cs);
		/* each descriptor listed once */
		for (size_t j = 0; j < i; j++)
			CHECK(__start___rseq_cs_ptr_array[j] != __start___rseq_cs_ptr_array[i]);
	}
	size_t nexit = (size_t)(__stop___rseq_exit_point_array - __start___rseq_exit_point_array);
	CHECK(nexit > 0);
	for (const struct oncpu_rseq_exit_point *e = __start___rseq_exit_point_array;
	     e < __stop___rseq_exit_point_array; e++) {
		const struct oncpu_rseq_cs *d = find_cs(e->start_ip);
		CHECK_MSG(d, "exit point of an unknown section");
		CHECK(e->exit_ip < d->start_ip ||
		      e->exit_ip >= d->start_ip + d->post_commit_offset);
	}
}
#else
static void test_sections(void) {}
#endif

int main(void)
{
	test_allowed_cpus();
	rseq = test_expect_rseq();
	CHECK(oncpu_thread_rseq_active() == rseq);
	test_cs_id();

	test_add_ONCPU_CPU();
	test_add_ONCPU_VCPU();
	test_percpu_add_ONCPU_CPU();
	test_percpu_add_ONCPU_VCPU();
	test_cmpeq_store_ONCPU_CPU();
	test_cmpeq_store_ONCPU_VCPU();
	test_cmpne_load_off_store_ONCPU_CPU();
	test_cmpne_load_off_store_ONCPU_VCPU();
	test_deref_off_add_ONCPU_CPU();
	test_deref_off_add_ONCPU_VCPU();
	test_trystore_ONCPU_CPU_ONCPU_RELAXED();
	test_trystore_ONCPU_CPU_ONCPU_RELEASE();
	test_trystore_ONCPU_VCPU_ONCPU_RELAXED();
	test_trystore_ONCPU_VCPU_ONCPU_RELEASE();
	test_memcpy_ONCPU_CPU_ONCPU_RELAXED();
	test_memcpy_ONCPU_CPU_ONCPU_RELEASE();
	test_memcpy_ONCPU_VCPU_ONCPU_RELAXED();
	test_memcpy_ONCPU_VCPU_ONCPU_RELEASE();
	test_guarded_store_ONCPU_CPU();
	test_guarded_store_ONCPU_VCPU();
	test_guarded_pop_ONCPU_CPU();
	test_guarded_pop_ONCPU_VCPU();
	test_guarded_load_store_ONCPU_CPU();
	test_guarded_load_store_ONCPU_VCPU();
	test_guarded_trystore_ONCPU_CPU_ONCPU_RELAXED();
	test_guarded_trystore_ONCPU_CPU_ONCPU_RELEASE();
	test_guarded_trystore_ONCPU_VCPU_ONCPU_RELAXED();
	test_guarded_trystore_ONCPU_VCPU_ONCPU_RELEASE();
	test_guarded_memcpy_ONCPU_CPU_ONCPU_RELAXED();
	test_guarded_memcpy_ONCPU_CPU_ONCPU_RELEASE();
	test_guarded_memcpy_ONCPU_VCPU_ONCPU_RELAXED();
	test_guarded_memcpy_ONCPU_VCPU_ONCPU_RELEASE();
	test_first_calls_in_thread();
	test_sections();
	printf("cs: all checks passed (%s)\n", test_mode());
	return 0;
}
