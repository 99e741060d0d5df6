/* SPDX-License-Identifier: MIT */
/*
 * The basics of every module through the stable ABI: built with
 * ONCPU_INLINE_FASTPATHS=0, so every operation is a call of liboncpu's
 * exported function (tests/special/CMakeLists.txt also checks that the
 * object references no private _oncpu_ symbol: no inline code leaked). Exact results: every
 * counted add, every node, pointer and object found once, mutual exclusion.
 */
#define _GNU_SOURCE
#include "testutil.h"

/* STABLE_ABI_CONTROL: the same source in the default (inline) setting,
 * compiled only, for the control of the symbol check. */
#if ONCPU_INLINE_FASTPATHS && !defined(STABLE_ABI_CONTROL)
#error "build this program with -DONCPU_INLINE_FASTPATHS=0"
#endif

#define THREADS 4
#define ITERS   20000
#define ITEMS   256

static struct oncpu_counter *counter;
static oncpu_mutex_t mutex = ONCPU_MUTEX_INIT;
static long guarded;

static void *worker(void *arg)
{
	(void)arg;
	for (int i = 0; i < ITERS; i++) {
		oncpu_counter_add(counter, 3);
		oncpu_mutex_lock(&mutex);
		long v = guarded;
		if (i % 1024 == 0)
			sched_yield(); /* let the others wait on it */
		guarded = v + 1;
		oncpu_mutex_unlock(&mutex);
	}
	return NULL;
}

static void test_ids(void)
{
	int n = oncpu_cpu_count();
	CHECK(n > 0);
	int cpu = oncpu_cpu();
	int vcpu = oncpu_vcpu();
	CHECK(cpu >= 0 && cpu < n);
	CHECK(vcpu >= 0 && vcpu < n);
	CHECK(oncpu_thread_registration() == test_expected_registration());
}

static void test_counter_and_mutex(void)
{
	counter = oncpu_counter_new();
	CHECK(counter);
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, worker, NULL) == 0);
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	CHECK(oncpu_counter_sum(counter) == 3L * THREADS * ITERS);
	CHECK(guarded == (long)THREADS * ITERS);
	CHECK(oncpu_mutex_trylock(&mutex) == 0);
	CHECK(oncpu_mutex_destroy(&mutex) == EBUSY);
	oncpu_mutex_unlock(&mutex);
	CHECK(oncpu_mutex_destroy(&mutex) == 0);
	oncpu_counter_destroy(counter);
}

static struct item {
	struct oncpu_stack_node node;
	int seen;
} items[ITEMS];

static void test_stack(void)
{
	struct oncpu_stack *s = oncpu_stack_new_flags(ONCPU_F_VCPU);
	CHECK(s);
	for (int i = 0; i < ITEMS; i++)
		oncpu_stack_push(s, &items[i].node);
	/* pop takes from the current CPU's list; drain takes the rest. */
	struct oncpu_stack_node *n;
	while ((n = oncpu_stack_pop(s)) != NULL)
		((struct item *)n)->seen++;
	for (n = oncpu_stack_drain(s); n; n = n->next)
		((struct item *)n)->seen++;
	for (int i = 0; i < ITEMS; i++)
		CHECK(items[i].seen == 1);
	CHECK(oncpu_stack_pop(s) == NULL);
	oncpu_stack_destroy(s);
}

static void test_ring(void)
{
	struct oncpu_ring *r = oncpu_ring_new(ITEMS);
	CHECK(r);
	int seen[ITEMS] = {0};
	for (int i = 0; i < ITEMS; i++)
		CHECK(oncpu_ring_push(r, &seen[i]) == 0);
	void *p;
	while ((p = oncpu_ring_pop(r)) != NULL)
		(*(int *)p)++;
	for (int cpu = 0; cpu < oncpu_cpu_count(); cpu++)
		while ((p = oncpu_ring_pop_cpu(r, cpu)) != NULL)
			(*(int *)p)++;
	for (int i = 0; i < ITEMS; i++)
		CHECK(seen[i] == 1);
	CHECK_ERRNO(oncpu_ring_push(r, NULL), EINVAL);
	oncpu_ring_destroy(r);
}

static void test_cache(void)
{
	struct oncpu_cache *c = oncpu_cache_new(sizeof(long), 0);
	CHECK(c);
	long *objs[ITEMS];
	for (int i = 0; i < ITEMS; i++) {
		objs[i] = oncpu_cache_alloc(c);
		CHECK(objs[i]);
		*objs[i] = i;
	}
	for (int i = 0; i < ITEMS; i++)
		CHECK(*objs[i] == i); /* distinct objects */
	for (int i = 0; i < ITEMS; i++)
		oncpu_cache_free(c, objs[i]);
	struct oncpu_cache_stats st;
	CHECK(oncpu_cache_get_stats(c, &st) == 0);
	CHECK(st.cached_cpu + st.cached_depot == st.objects);
	oncpu_cache_destroy(c);
}

static void test_resched(void)
{
	uint64_t e = oncpu_resched_epoch();
	CHECK(e != 0);
	if (oncpu_resched_init() != 0) {
		CHECK(errno == ENOTSUP);
		CHECK(oncpu_resched_check()); /* always true where it does not work */
	} else {
		CHECK(oncpu_resched_arm());
	}
	void *h = oncpu_percpu_alloc(64, 0);
	CHECK(h);
	struct oncpu_resched_cache rc = ONCPU_RESCHED_CACHE_INIT;
	void *p = oncpu_resched_cpu_ptr(&rc, h);
	CHECK(rc.cpu >= 0 && rc.cpu < oncpu_cpu_count());
	CHECK(p == oncpu_ptr(h, rc.cpu));
	oncpu_percpu_free(h);
}

int main(void)
{
	test_ids();
	test_counter_and_mutex();
	test_stack();
	test_ring();
	test_cache();
	test_resched();
	printf("PASS (%s)\n", getenv("ONCPU_TEST_MODE") ? getenv("ONCPU_TEST_MODE") : "");
	return 0;
}
