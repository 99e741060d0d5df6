// SPDX-License-Identifier: MIT
//
// The public headers compile as C++ (the umbrella <oncpu.h> includes every
// module) and work there: a C++ program uses each module's inline fast
// paths, critical sections in both indexing modes included.
#include <oncpu.h>

#include <oncpu.h> // include guards: twice is harmless

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,      \
			             #cond);                                                       \
			std::exit(1);                                                              \
		}                                                                                  \
	} while (0)

static bool expect_rseq()
{
	const char *m = std::getenv("ONCPU_TEST_MODE");
	return !m || std::strncmp(m, "rseq", 4) == 0;
}

// Retry a section with a fresh id until it does not abort.
template <typename F> static int retry(int mode_id_for_cpu, F op)
{
	for (int tries = 0; tries < 100000; tries++) {
		int id = mode_id_for_cpu ? oncpu_cs_id(ONCPU_CPU) : oncpu_cs_id(ONCPU_VCPU);
		if (id < 0)
			return id;
		int r = op(id);
		if (r != ONCPU_CS_ABORTED)
			return r;
	}
	return ONCPU_CS_ABORTED;
}

int main()
{
	const bool rseq = expect_rseq();
	CHECK(std::strcmp(oncpu_version(), ONCPU_VERSION_STRING) == 0);
	CHECK(oncpu_thread_rseq_active() == rseq);
	CHECK((oncpu_thread_init() == 0) == rseq);
	CHECK((oncpu_thread_area() != nullptr) == rseq);
	CHECK((oncpu_thread_registration() != ONCPU_REG_NONE) == rseq);
	int ncpu = oncpu_cpu_count();
	CHECK(ncpu >= 1);
	CHECK(oncpu_cpu() >= 0 && oncpu_cpu() < ncpu);
	CHECK(oncpu_vcpu() >= 0 && oncpu_vcpu() < ncpu);
	CHECK(oncpu_node() >= 0);
	(void)oncpu_vcpu_dense();

	// per-CPU memory
	errno = 0;
	CHECK(oncpu_percpu_alloc(0, 0) == nullptr && errno == EINVAL);
	intptr_t *h = static_cast<intptr_t *>(oncpu_percpu_alloc(sizeof(intptr_t), 0));
	CHECK(h != nullptr);
	for (int c = 0; c < ncpu; c++)
		CHECK(*static_cast<intptr_t *>(oncpu_ptr(h, c)) == 0);

	// critical sections, both modes
	intptr_t v = 1, v2 = 0;
	int r = retry(1, [&](int id) { return oncpu_cs_add(ONCPU_CPU, &v, 4, id); });
	CHECK(rseq ? (r == ONCPU_CS_COMMITTED && v == 5) : r == ONCPU_CS_UNAVAILABLE);
	v = 5;
	r = retry(0, [&](int id) { return oncpu_cs_cmpeq_store(ONCPU_VCPU, &v, 5, 6, id); });
	CHECK(rseq ? (r == ONCPU_CS_COMMITTED && v == 6) : r == ONCPU_CS_UNAVAILABLE);
	v = 6;
	r = retry(1, [&](int id) {
		return oncpu_cs_cmpeq_trystore_store(ONCPU_CPU, ONCPU_RELEASE, &v, 6, &v2, 9, 7,
		                                     id);
	});
	CHECK(rseq ? (r == ONCPU_CS_COMMITTED && v == 7 && v2 == 9) : r == ONCPU_CS_UNAVAILABLE);
	char src[16] = "c++ sections", dst[16] = {0};
	v = 7;
	r = retry(0, [&](int id) {
		return oncpu_cs_cmpeq_memcpy_store(ONCPU_VCPU, ONCPU_RELAXED, &v, 7, dst, src,
		                                   sizeof(src), 8, id);
	});
	CHECK(rseq ? (r == ONCPU_CS_COMMITTED && std::strcmp(dst, src) == 0)
	           : r == ONCPU_CS_UNAVAILABLE);
	struct node {
		intptr_t next;
	} n2{0}, n1{reinterpret_cast<intptr_t>(&n2)};
	intptr_t head = reinterpret_cast<intptr_t>(&n1), load = 0;
	r = retry(1, [&](int id) {
		return oncpu_cs_cmpne_load_off_store(ONCPU_CPU, &head, 0, 0, &load, id);
	});
	CHECK(rseq ? (r == ONCPU_CS_COMMITTED && load == reinterpret_cast<intptr_t>(&n1))
	           : r == ONCPU_CS_UNAVAILABLE);
	intptr_t block[2] = {0, 0}, ptr = reinterpret_cast<intptr_t>(block);
	r = retry(0, [&](int id) {
		return oncpu_cs_deref_off_add(ONCPU_VCPU, &ptr, sizeof(intptr_t), 3, id);
	});
	CHECK(rseq ? (r == ONCPU_CS_COMMITTED && block[1] == 3) : r == ONCPU_CS_UNAVAILABLE);
	do
		r = oncpu_cs_percpu_add(ONCPU_CPU, h, 2);
	while (r == ONCPU_CS_ABORTED);
	CHECK(r == (rseq ? ONCPU_CS_COMMITTED : ONCPU_CS_UNAVAILABLE));
	oncpu_percpu_free(h);

	// counters from std::threads
	oncpu_counter *c = oncpu_counter_new();
	CHECK(c != nullptr);
	std::vector<std::thread> threads;
	for (int i = 0; i < 4; i++)
		threads.emplace_back([c] {
			for (int k = 0; k < 10000; k++)
				oncpu_counter_add(c, 1);
		});
	for (auto &t : threads)
		t.join();
	CHECK(oncpu_counter_sum(c) == 40000);
	oncpu_counter_destroy(c);
	std::printf("headers (C++): all checks passed\n");
	return 0;
}
