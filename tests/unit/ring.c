/* SPDX-License-Identifier: MIT */
/*
 * unit/ring.c - every function of oncpu/ring.h, in both indexings: FIFO
 * order, exact capacity (ENOBUFS), wrap-around, empty pops, pop_cpu from
 * another CPU, bad input, arrays allocated only for CPUs that push, and a
 * thread without rseq sharing a ring with an rseq thread.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <oncpu.h>

#include "testutil.h"

#define POSSIBLE 64

static int ncpus;

static int my_index(struct oncpu_ring *r)
{
	return r->_mode == _oncpu_mode_ONCPU_VCPU ? oncpu_vcpu() : oncpu_cpu();
}

static void *tok(long i)
{
	return (void *)(uintptr_t)(0x1000 + 16 * i);
}

static void test_bad_input(void)
{
	CHECK_ERRNO(oncpu_ring_new(0), EINVAL);
	CHECK_ERRNO(oncpu_ring_new(ONCPU_RING_MAX_CAPACITY + 1), EINVAL);
	CHECK_ERRNO(oncpu_ring_new((size_t)-1), EINVAL);
	CHECK_ERRNO(oncpu_ring_new_flags(4, 2), EINVAL);
	CHECK_ERRNO(oncpu_ring_push(NULL, tok(1)), EINVAL);
	CHECK_ERRNO(oncpu_ring_pop(NULL), EINVAL);
	CHECK_ERRNO(oncpu_ring_pop_cpu(NULL, 0), EINVAL);
	struct oncpu_ring *r = oncpu_ring_new(1);
	CHECK(r);
	CHECK_ERRNO(oncpu_ring_push(r, NULL), EINVAL);
	CHECK_ERRNO(oncpu_ring_pop_cpu(r, -1), EINVAL);
	CHECK_ERRNO(oncpu_ring_pop_cpu(r, oncpu_cpu_count()), EINVAL);
	errno = 777;
	CHECK(oncpu_ring_pop(r) == NULL && errno == 777);
	CHECK(oncpu_ring_pop_cpu(r, 0) == NULL && errno == 777);
	oncpu_ring_destroy(r);
	oncpu_ring_destroy(NULL);
	/* The largest capacity is accepted (arrays come later, per CPU). */
	CHECK(r = oncpu_ring_new(ONCPU_RING_MAX_CAPACITY));
	oncpu_ring_destroy(r);
}

/* Capacity is exact, order is FIFO, and the counters wrap the array. */
static void test_fifo(size_t cap, unsigned flags)
{
	struct oncpu_ring *r = oncpu_ring_new_flags(cap, flags);
	CHECK(r);
	CHECK(test_pinned(0));
	long next_in = 0, next_out = 0;
	for (int round = 0; round < 5; round++) {
		for (size_t i = 0; i < cap; i++)
			CHECK(oncpu_ring_push(r, tok(next_in++)) == 0);
		CHECK_ERRNO(oncpu_ring_push(r, tok(999999)), ENOBUFS);
		CHECK_ERRNO(oncpu_ring_push(r, tok(999999)), ENOBUFS);
		/* Pop part, push part: the window moves around the array. */
		for (size_t i = 0; i < cap / 2 + 1 && i < cap; i++)
			CHECK(oncpu_ring_pop(r) == tok(next_out++));
		while (next_in - next_out < (long)cap)
			CHECK(oncpu_ring_push(r, tok(next_in++)) == 0);
		CHECK_ERRNO(oncpu_ring_push(r, tok(999999)), ENOBUFS);
		while (next_out < next_in) {
			void *p = oncpu_ring_pop(r);
			CHECK_MSG(p == tok(next_out), "cap %zu: got %p, expected %p", cap, p,
			          tok(next_out));
			next_out++;
		}
		CHECK(oncpu_ring_pop(r) == NULL);
	}
	test_unpin();
	oncpu_ring_destroy(r);
}

/* Rings are per CPU; pop_cpu reaches another CPU's ring. */
static void test_per_cpu(unsigned flags)
{
	struct oncpu_ring *r = oncpu_ring_new_flags(8, flags);
	CHECK(r);
	CHECK(test_pinned(0));
	int idx0 = my_index(r);
	for (int i = 0; i < 4; i++)
		CHECK(oncpu_ring_push(r, tok(i)) == 0);
	CHECK(oncpu_ring_pop_cpu(r, idx0) == tok(0)); /* on that CPU: a section */
	if (ncpus > 1) {
		CHECK(test_pinned(1));
		if (my_index(r) != idx0) {
			CHECK(oncpu_ring_pop(r) == NULL);
			CHECK(oncpu_ring_push(r, tok(10)) == 0);
			CHECK(oncpu_ring_pop_cpu(r, idx0) == tok(1)); /* locked path */
			CHECK(oncpu_ring_pop(r) == tok(10));
			CHECK(oncpu_ring_pop_cpu(r, idx0) == tok(2));
			CHECK(oncpu_ring_pop_cpu(r, idx0) == tok(3));
			CHECK(oncpu_ring_pop_cpu(r, idx0) == NULL);
			/* Slot arrays exist only where something was pushed. */
			int with_array = 0;
			for (int c = 0; c < oncpu_cpu_count(); c++)
				with_array +=
				    ((struct _oncpu_ring_slot *)oncpu_ptr(r->_pcpu, c))->array !=
				    NULL;
			CHECK_MSG(with_array == 2, "%d CPUs have arrays, 2 pushed", with_array);
		}
	}
	for (int c = 0; c < oncpu_cpu_count(); c++)
		while (oncpu_ring_pop_cpu(r, c))
			;
	test_unpin();
	oncpu_ring_destroy(r);
}

/* Unused CPUs: no array, and the per-CPU slot page is never written. */
static void test_memory(void)
{
	struct oncpu_ring *r = oncpu_ring_new(100000); /* 800 KB per CPU that pushes */
	CHECK(r);
	CHECK(oncpu_cpu_count() == POSSIBLE);
	CHECK(oncpu_ring_push(r, tok(1)) == 0);
	int with_array = 0;
	for (int c = 0; c < POSSIBLE; c++) {
		with_array += ((struct _oncpu_ring_slot *)oncpu_ptr(r->_pcpu, c))->array != NULL;
		void *p = oncpu_ring_pop_cpu(r, c);
		CHECK(p == NULL || p == tok(1));
	}
	CHECK(with_array == 1);
	oncpu_ring_destroy(r);
}

/* ---- mixed process ---- */

struct mixed {
	struct oncpu_ring *r;
	int list;
	bool ok;
};

static void *fallback_thread(void *arg)
{
	struct mixed *m = arg;
	m->ok = test_leave_rseq() && test_pinned(0);
	if (!m->ok)
		return NULL;
	for (long i = 0; i < 8; i++) {
		void *p = m->r->_mode == _oncpu_mode_ONCPU_CPU ? oncpu_ring_pop(m->r)
		                                               : oncpu_ring_pop_cpu(m->r, m->list);
		m->ok &= p == tok(i);
	}
	for (long i = 8; i < 16; i++)
		m->ok &= oncpu_ring_push(m->r, tok(i)) == 0;
	m->ok &= oncpu_ring_push(m->r, tok(99)) == -1 && errno == ENOBUFS;
	return NULL;
}

static void test_mixed(unsigned flags)
{
	struct mixed m = {oncpu_ring_new_flags(8, flags), 0, false};
	CHECK(m.r);
	CHECK(test_pinned(0));
	m.list = my_index(m.r);
	for (long i = 0; i < 8; i++)
		CHECK(oncpu_ring_push(m.r, tok(i)) == 0);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, fallback_thread, &m) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_MSG(m.ok, "the thread without rseq did not share the ring correctly");
	long got = 0;
	for (int c = 0; c < oncpu_cpu_count(); c++) {
		void *p;
		while ((p = oncpu_ring_pop_cpu(m.r, c)))
			CHECK(p == tok(8 + got++));
	}
	CHECK(got == 8);
	test_unpin();
	oncpu_ring_destroy(m.r);
}

int main(void)
{
	char buf[16];
	snprintf(buf, sizeof(buf), "%d", POSSIBLE);
	setenv("ONCPU_POSSIBLE_CPUS", buf, 1);
	cpu_set_t set;
	CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
	ncpus = CPU_COUNT(&set);
	CHECK(CPU_ISSET(0, &set) && (ncpus == 1 || CPU_ISSET(1, &set)));
	CHECK(oncpu_thread_rseq_active() == test_expect_rseq());

	test_bad_input();
	static const size_t caps[] = {1, 2, 3, 5, 8, 100};
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		test_fifo(caps[i], 0);
		test_fifo(caps[i], ONCPU_F_VCPU);
	}
	test_per_cpu(0);
	test_per_cpu(ONCPU_F_VCPU);
	test_memory();
	if (test_expect_rseq()) {
		test_mixed(0);
		test_mixed(ONCPU_F_VCPU);
	}
	printf("unit.ring [%s]: ok\n", test_mode());
	return 0;
}
