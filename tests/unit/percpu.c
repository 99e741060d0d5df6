/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of oncpu/percpu.h: bad input, alignment, zeroed items (also
 * after reuse of dirtied memory), instances a stride apart, many items
 * without overlap, concurrent alloc/free, corruption detection (double
 * free, foreign pointers: abort with a message), ENOMEM, and that memory of
 * CPUs that never touch an item is not committed (4096 possible CPUs).
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/resource.h>

#include "testutil.h"

static int ncpus;

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static bool zero_on_every_cpu(void *h, size_t size)
{
	for (int c = 0; c < ncpus; c++)
		if (!all_zero(oncpu_ptr(h, c), size))
			return false;
	return true;
}

static void fill_every_cpu(void *h, size_t size, unsigned char tag)
{
	for (int c = 0; c < ncpus; c++)
		memset(oncpu_ptr(h, c), tag + c, size);
}

static bool filled_every_cpu(void *h, size_t size, unsigned char tag)
{
	for (int c = 0; c < ncpus; c++) {
		const unsigned char *b = oncpu_ptr(h, c);
		for (size_t i = 0; i < size; i++)
			if (b[i] != (unsigned char)(tag + c))
				return false;
	}
	return true;
}

static void test_bad_input(void)
{
	CHECK_ERRNO(oncpu_percpu_alloc(0, 0), EINVAL);
	CHECK_ERRNO(oncpu_percpu_alloc(0, 64), EINVAL);
	CHECK_ERRNO(oncpu_percpu_alloc(ONCPU_PERCPU_STRIDE + 1, 0), EINVAL);
	CHECK_ERRNO(oncpu_percpu_alloc(SIZE_MAX, 0), EINVAL);
	CHECK_ERRNO(oncpu_percpu_alloc(SIZE_MAX / 2 + 1, 16), EINVAL);
	CHECK_ERRNO(oncpu_percpu_alloc(8, 3), EINVAL);
	CHECK_ERRNO(oncpu_percpu_alloc(8, 24), EINVAL);
	CHECK_ERRNO(oncpu_percpu_alloc(8, 8192), EINVAL);
	CHECK_ERRNO(oncpu_percpu_alloc(8, SIZE_MAX), EINVAL);
	CHECK_ERRNO(oncpu_percpu_alloc(8, (size_t)1 << 63), EINVAL);
	oncpu_percpu_free(NULL); /* ignored */
}

static void test_alignment_and_stride(void)
{
	for (size_t align = 1; align <= 4096; align *= 2) {
		for (size_t size = 1; size <= 4096; size = size * 3 + 1) {
			char *h = oncpu_percpu_alloc(size, align);
			CHECK_MSG(h, "alloc(%zu, %zu): %s", size, align, strerror(errno));
			CHECK(((uintptr_t)h & (align - 1)) == 0);
			CHECK(((uintptr_t)h & 15) == 0); /* at least the default alignment */
			for (int c = 0; c < ncpus; c++) {
				CHECK(oncpu_ptr(h, c) == h + (size_t)c * ONCPU_PERCPU_STRIDE);
				CHECK(all_zero(oncpu_ptr(h, c), size));
			}
			/* instances are distinct memory */
			fill_every_cpu(h, size, 0x10);
			CHECK(filled_every_cpu(h, size, 0x10));
			oncpu_percpu_free(h);
		}
	}
	/* the largest item: a whole stride */
	char *big = oncpu_percpu_alloc(ONCPU_PERCPU_STRIDE, 0);
	CHECK(big);
	for (int c = 0; c < ncpus; c++) {
		char *p = oncpu_ptr(big, c);
		CHECK(p[0] == 0 && p[ONCPU_PERCPU_STRIDE - 1] == 0);
		p[0] = 1;
		p[ONCPU_PERCPU_STRIDE - 1] = 2;
	}
	char *big4k = oncpu_percpu_alloc(ONCPU_PERCPU_STRIDE - 4096, 4096);
	CHECK(big4k);
	oncpu_percpu_free(big);
	oncpu_percpu_free(big4k);
}

/* Freed memory that was dirtied on every CPU comes back zero. */
static void test_zero_after_reuse(void)
{
	static const size_t sizes[] = {8, 16, 24, 100, 4096};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t size = sizes[k];
		void *keep = oncpu_percpu_alloc(16, 0); /* a neighbour that stays dirty */
		void *h = oncpu_percpu_alloc(size, 0);
		CHECK(keep && h);
		fill_every_cpu(keep, 16, 0x55);
		fill_every_cpu(h, size, 0xa0);
		oncpu_percpu_free(h);
		/* reallocate until we get the same memory back (first fit: at once) */
		void *again[64];
		int n = 0;
		bool reused = false;
		while (n < 64) {
			again[n] = oncpu_percpu_alloc(size, 0);
			CHECK(again[n]);
			CHECK_MSG(zero_on_every_cpu(again[n], size), "reused item of %zu not zero",
			          size);
			if (again[n++] == h) {
				reused = true;
				break;
			}
		}
		CHECK_MSG(reused, "freed memory of size %zu never reused", size);
		CHECK(filled_every_cpu(keep, 16, 0x55)); /* freeing did not clear a neighbour */
		for (int i = 0; i < n; i++)
			oncpu_percpu_free(again[i]);
		oncpu_percpu_free(keep);
	}
}

struct range {
	uintptr_t lo, hi;
};

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Many items (several chunks): no two overlap on any CPU. */
static void test_many_items(void)
{
	enum { N = 6000 };
	static void *items[N];
	static size_t sizes[N];
	static struct range ranges[N];
	uint64_t rng = 42;
	for (int i = 0; i < N; i++) {
		sizes[i] = 1 + test_rand(&rng) % 200;
		size_t align = (size_t)1 << (test_rand(&rng) % 7);
		items[i] = oncpu_percpu_alloc(sizes[i], align);
		CHECK(items[i]);
		CHECK(((uintptr_t)items[i] & (align - 1)) == 0);
		CHECK(zero_on_every_cpu(items[i], sizes[i]));
		ranges[i].lo = (uintptr_t)items[i];
		ranges[i].hi = ranges[i].lo + sizes[i];
		fill_every_cpu(items[i], sizes[i], (unsigned char)i);
	}
	qsort(ranges, N, sizeof(ranges[0]), cmp_range);
	for (int i = 1; i < N; i++)
		CHECK(ranges[i - 1].hi <= ranges[i].lo);
	/* CPU 0's instances of distinct items never reach into another CPU's block */
	for (int i = 0; i < N; i++)
		CHECK(filled_every_cpu(items[i], sizes[i], (unsigned char)i));
	/* free every other, reallocate, check again */
	for (int i = 0; i < N; i += 2)
		oncpu_percpu_free(items[i]);
	for (int i = 1; i < N; i += 2)
		CHECK(filled_every_cpu(items[i], sizes[i], (unsigned char)i));
	for (int i = 0; i < N; i += 2) {
		items[i] = oncpu_percpu_alloc(sizes[i], 0);
		CHECK(items[i] && zero_on_every_cpu(items[i], sizes[i]));
		fill_every_cpu(items[i], sizes[i], (unsigned char)i);
	}
	for (int i = 0; i < N; i++)
		CHECK(filled_every_cpu(items[i], sizes[i], (unsigned char)i));
	for (int i = 0; i < N; i++)
		oncpu_percpu_free(items[i]);
}

/* ---- concurrency: alloc/fill/check/free from many threads ---- */

#define CONC_THREADS 8
#define CONC_ROUNDS  3000

static void *conc_thread(void *arg)
{
	uintptr_t tid = (uintptr_t)arg;
	uint64_t rng = tid * 7919 + 1;
	enum { HOLD = 32 };
	void *held[HOLD] = {0};
	size_t held_size[HOLD] = {0};
	unsigned char tag = (unsigned char)(tid * 31 + 1);
	for (int i = 0; i < CONC_ROUNDS; i++) {
		int k = (int)(test_rand(&rng) % HOLD);
		if (held[k]) {
			/* nobody else got this memory while we held it */
			CHECK_MSG(filled_every_cpu(held[k], held_size[k], tag),
			          "item overwritten: allocated twice?");
			oncpu_percpu_free(held[k]);
			held[k] = NULL;
		} else {
			size_t size = 1 + test_rand(&rng) % 300;
			size_t align = (size_t)1 << (test_rand(&rng) % 8);
			void *h = oncpu_percpu_alloc(size, align);
			CHECK(h && ((uintptr_t)h & (align - 1)) == 0);
			CHECK_MSG(zero_on_every_cpu(h, size), "new item not zero");
			fill_every_cpu(h, size, tag);
			held[k] = h;
			held_size[k] = size;
		}
	}
	for (int k = 0; k < HOLD; k++) {
		if (held[k]) {
			CHECK(filled_every_cpu(held[k], held_size[k], tag));
			oncpu_percpu_free(held[k]);
		}
	}
	return NULL;
}

static void test_concurrent(void)
{
	pthread_t t[CONC_THREADS];
	for (uintptr_t i = 0; i < CONC_THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, conc_thread, (void *)i) == 0);
	for (int i = 0; i < CONC_THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
}

/*
 * fork() while other threads allocate and free: the child must find the
 * allocator usable (not locked by a thread that does not exist there).
 */
static volatile int churning;

static void *churn_thread(void *arg)
{
	(void)arg;
	while (__atomic_load_n(&churning, __ATOMIC_ACQUIRE)) {
		void *h = oncpu_percpu_alloc(48, 0);
		CHECK(h);
		oncpu_percpu_free(h);
	}
	return NULL;
}

static void fork_child_allocates(void *arg)
{
	(void)arg;
	alarm(10); /* a deadlock fails the test instead of hanging it */
	for (int i = 0; i < 100; i++) {
		void *h = oncpu_percpu_alloc(64, 0);
		CHECK(h && zero_on_every_cpu(h, 64));
		oncpu_percpu_free(h);
	}
}

static void test_fork_while_allocating(void)
{
	enum { CHURNERS = 3, FORKS = 50 };
	pthread_t t[CHURNERS];
	churning = 1;
	for (int i = 0; i < CHURNERS; i++)
		CHECK(pthread_create(&t[i], NULL, churn_thread, NULL) == 0);
	for (int i = 0; i < FORKS; i++) {
		char err[1024];
		int st = test_run_child(fork_child_allocates, NULL, err, sizeof(err));
		CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork %d: child %s: %s", i,
		          test_status_str(st), err);
	}
	__atomic_store_n(&churning, 0, __ATOMIC_RELEASE);
	for (int i = 0; i < CHURNERS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
}

/* ---- corruption: must abort with a message naming the problem ---- */

static void double_free(void *arg)
{
	(void)arg;
	void *h = oncpu_percpu_alloc(32, 0);
	oncpu_percpu_free(h);
	oncpu_percpu_free(h);
}

static void free_foreign_heap(void *arg)
{
	(void)arg;
	void *p = malloc(64);
	oncpu_percpu_free(p);
}

static void free_inside_item(void *arg)
{
	(void)arg;
	char *h = oncpu_percpu_alloc(64, 0);
	oncpu_percpu_free(h + 16);
}

static void free_misaligned(void *arg)
{
	(void)arg;
	char *h = oncpu_percpu_alloc(64, 0);
	oncpu_percpu_free(h + 8);
}

static void free_other_cpu_instance(void *arg)
{
	(void)arg;
	char *h = oncpu_percpu_alloc(64, 0);
	oncpu_percpu_free(oncpu_ptr(h, 1));
}

static void free_stack(void *arg)
{
	(void)arg;
	int x;
	oncpu_percpu_free(&x);
}

static void expect_abort(const char *what, void (*fn)(void *))
{
	char err[2048];
	int st = test_run_child(fn, NULL, err, sizeof(err));
	CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: %s, stderr: %s", what,
	          test_status_str(st), err);
	CHECK_MSG(strstr(err, "oncpu: ") && strstr(err, "percpu.c:") &&
	              strstr(err, "oncpu_percpu_free") &&
	              strstr(err, "double free or foreign pointer"),
	          "%s: unclear message: %s", what, err);
}

static void test_corruption_aborts(void)
{
	expect_abort("double free", double_free);
	expect_abort("heap pointer", free_foreign_heap);
	expect_abort("pointer inside an item", free_inside_item);
	expect_abort("misaligned pointer", free_misaligned);
	expect_abort("stack pointer", free_stack);
	if (ncpus > 1)
		expect_abort("another CPU's instance", free_other_cpu_instance);
}

/* ---- ENOMEM: no address space left for a new chunk ---- */

static TEST_UNUSED void enomem_rlimit_child(void *arg)
{
	(void)arg;
	/* address space: what we use now, plus less than one chunk */
	FILE *f = fopen("/proc/self/statm", "re");
	CHECK(f);
	unsigned long pages;
	CHECK(fscanf(f, "%lu", &pages) == 1);
	fclose(f);
	struct rlimit rl = {.rlim_cur = pages * 4096 + 16384, .rlim_max = RLIM_INFINITY};
	CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
	void *h;
	int n = 0;
	do {
		errno = 0;
		h = oncpu_percpu_alloc(ONCPU_PERCPU_STRIDE, 0);
		CHECK(++n < 1000);
	} while (h);
	CHECK_MSG(errno == ENOMEM, "errno %d", errno);
	errno = 0;
	CHECK(oncpu_counter_new() == NULL && errno == ENOMEM);
	/* smaller items still fit nowhere, and nothing crashed */
	CHECK_ERRNO(oncpu_percpu_alloc(ONCPU_PERCPU_STRIDE, 64), ENOMEM);
}

static void test_enomem(void)
{
#ifndef TEST_ASAN /* ASan reserves terabytes of address space: no RLIMIT_AS games */
	char err[2048];
	int st = test_run_child(enomem_rlimit_child, NULL, err, sizeof(err));
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ENOMEM child: %s: %s",
	          test_status_str(st), err);
#endif
}

/* ---- 4096 possible CPUs: untouched instances cost no memory ---- */

#define SPARSE_COUNTERS 64

/*
 * Runs as `percpu sparse` with ONCPU_POSSIBLE_CPUS=4096: 64 counters, each
 * with 4096 instances, added to on every CPU we may run on, summed (which
 * reads all 4096 instances of each).
 *
 * The bound: the 64 counters (16 bytes each) pack into one page of each
 * CPU's block. Committed eagerly they would cost 4096 pages = 16 MiB (and
 * unpacked, 4096 cache lines = 256 KiB per counter). A CPU that writes
 * commits at most 2 pages (if the items straddle a page boundary); reading
 * untouched memory maps the shared zero page, which Rss does not count. We
 * allow 16 pages per online CPU plus 64 KiB for anything else that shares
 * the mapping: 192 KiB on 2 CPUs, i.e. 3 KiB per counter, 1/85 of the eager
 * cost, yet well above what a correct implementation uses (8 KiB here).
 */
static int sparse_child_main(void)
{
	ncpus = oncpu_cpu_count();
	CHECK_MSG(ncpus == 4096, "ONCPU_POSSIBLE_CPUS=4096 gave %d", ncpus);
	struct oncpu_counter *c[SPARSE_COUNTERS];
	for (int i = 0; i < SPARSE_COUNTERS; i++) {
		c[i] = oncpu_counter_new();
		CHECK(c[i]);
	}
	long long expect = 0;
	for (int k = 0; k < test_allowed_count(); k++) {
		CHECK(test_pin(test_allowed_nth(k)) == 0);
		for (int i = 0; i < SPARSE_COUNTERS; i++) {
			oncpu_counter_add(c[i], i + 1);
			expect += i + 1;
		}
	}
	test_unpin();
	long long sum = 0;
	for (int i = 0; i < SPARSE_COUNTERS; i++)
		sum += oncpu_counter_sum(c[i]);
	CHECK(sum == expect);

	/* the distinct mappings holding the counters (adjacent chunks may merge) */
	long rss_kb = 0, reserved_kb = 0;
	uintptr_t starts[SPARSE_COUNTERS];
	int nmaps = 0;
	for (int i = 0; i < SPARSE_COUNTERS; i++) {
		uintptr_t start;
		long size_kb, rss = test_mapping_rss_kb(c[i], &start, &size_kb);
		CHECK(rss >= 0);
		bool seen = false;
		for (int j = 0; j < nmaps; j++)
			seen |= starts[j] == start;
		if (!seen) {
			starts[nmaps++] = start;
			rss_kb += rss;
			reserved_kb += size_kb;
		}
	}
	CHECK(reserved_kb >= 4096L * 64); /* 4096 CPUs x 64 KiB reserved */
	long bound_kb = 16 * 4 * test_online_cpus() + 64;
	printf("sparse: %d counters x 4096 CPUs: %ld kB resident of %ld kB reserved (bound %ld "
	       "kB; eager commit: %d kB)\n",
	       SPARSE_COUNTERS, rss_kb, reserved_kb, bound_kb, 4096 * 4);
	CHECK_MSG(rss_kb < bound_kb, "resident %ld kB >= %ld kB", rss_kb, bound_kb);

	/* the measurement does see a page that is really written: it can fail */
	long before = test_mapping_rss_kb(c[0], NULL, NULL);
	*(volatile long *)oncpu_ptr(c[0], 4000) = 0;
	long after = test_mapping_rss_kb(c[0], NULL, NULL);
	CHECK_MSG(after >= before + 4, "Rss did not see a written page (%ld -> %ld kB)", before,
	          after);
	for (int i = 0; i < SPARSE_COUNTERS; i++)
		oncpu_counter_destroy(c[i]);
	return 0;
}

static void test_sparse_4096(void)
{
	int st = test_reexec("ONCPU_POSSIBLE_CPUS=4096", "sparse", NULL);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sparse child: %s", test_status_str(st));
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "sparse") == 0)
		return sparse_child_main();
	test_allowed_cpus();
	/* ENOMEM first: the child then starts without any chunk */
	test_enomem();
	ncpus = oncpu_cpu_count();
	CHECK(ncpus >= 1);
	test_bad_input();
	test_alignment_and_stride();
	test_zero_after_reuse();
	test_many_items();
	test_concurrent();
	test_fork_while_allocating();
	test_corruption_aborts();
	test_sparse_4096();
	printf("percpu: all checks passed (%s)\n", test_mode());
	return 0;
}
