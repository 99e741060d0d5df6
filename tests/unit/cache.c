/* SPDX-License-Identifier: MIT */
/*
 * unit/cache.c - every function of oncpu/cache.h, in both indexings:
 * argument validation, alignment, distinct non-overlapping objects, reuse
 * with bounded memory (also across CPUs and threads), the accounting of
 * oncpu_cache_get_stats, ENOMEM under an address-space limit, destroy unmapping
 * everything, the debug mode's reports (double free, foreign and interior
 * pointers, write after free: forked children that must abort with the
 * caller's file:line), and a thread without rseq in an rseq process.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <oncpu.h>

#include "testutil.h"

static int ncpus;

static struct oncpu_cache_stats stats(struct oncpu_cache *c)
{
	struct oncpu_cache_stats st;
	CHECK(oncpu_cache_get_stats(c, &st) == 0);
	return st;
}

/* Run fn in a child; it must die of SIGABRT after printing every string
 * of expect (NULL-terminated). */
static void expect_abort(void (*fn)(void *), void *arg, const char *const *expect)
{
	int fds[2];
	CHECK(pipe(fds) == 0);
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 2);
		fn(arg);
		_exit(0);
	}
	close(fds[1]);
	char buf[4096] = {0};
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(buf) - 1 && (r = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	close(fds[0]);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "child status %#x, said: %s",
	          status, buf);
	for (; *expect; expect++)
		CHECK_MSG(strstr(buf, *expect), "child said \"%s\", expected \"%s\"", buf, *expect);
	/* A child that announced "... at FILE:LINE:" must be reported there. */
	const char *at = strstr(buf, " at cache.c:");
	if (at) {
		char where[64];
		int line = atoi(at + strlen(" at cache.c:"));
		snprintf(where, sizeof(where), "unit/cache.c:%d: oncpu_cache_free(", line);
		CHECK_MSG(line > 0 && strstr(buf, where), "report \"%s\" does not name %s", buf,
		          where);
	}
}

static void free_null_cache(void *obj)
{
	oncpu_cache_free(NULL, obj);
}

static void test_bad_input(void)
{
	CHECK_ERRNO(oncpu_cache_new(0, 0), EINVAL);
	CHECK_ERRNO(oncpu_cache_new(0, 16), EINVAL);
	CHECK_ERRNO(oncpu_cache_new(ONCPU_CACHE_MAX_OBJECT_SIZE + 1, 0), EINVAL);
	CHECK_ERRNO(oncpu_cache_new((size_t)-1, 0), EINVAL);
	CHECK_ERRNO(oncpu_cache_new(48, 3), EINVAL);
	CHECK_ERRNO(oncpu_cache_new(48, 48), EINVAL);
	CHECK_ERRNO(oncpu_cache_new(48, ONCPU_CACHE_MAX_ALIGN * 2), EINVAL);
	CHECK_ERRNO(oncpu_cache_new(48, (size_t)1 << 63), EINVAL);
	CHECK_ERRNO(oncpu_cache_new_flags(48, 0, 4), EINVAL);
	CHECK_ERRNO(oncpu_cache_alloc(NULL), EINVAL);
	struct oncpu_cache_stats st;
	CHECK_ERRNO(oncpu_cache_get_stats(NULL, &st), EINVAL);
	struct oncpu_cache *c = oncpu_cache_new(ONCPU_CACHE_MAX_OBJECT_SIZE, ONCPU_CACHE_MAX_ALIGN);
	CHECK(c);
	CHECK_ERRNO(oncpu_cache_get_stats(c, NULL), EINVAL);
	void *p = oncpu_cache_alloc(c);
	CHECK(p && ((uintptr_t)p & (ONCPU_CACHE_MAX_ALIGN - 1)) == 0);
	memset(p, 1, ONCPU_CACHE_MAX_OBJECT_SIZE);
	oncpu_cache_free(c, p);
	oncpu_cache_free(c, NULL);   /* ignored, as free(NULL) */
	(oncpu_cache_free)(c, NULL); /* the function, not the macro */
	static const char *const null_cache[] = {"NULL cache", NULL};
	expect_abort(free_null_cache, p, null_cache);
	oncpu_cache_destroy(c);
	oncpu_cache_destroy(NULL);
}

/* Every object aligned, distinct, non-overlapping and writable in full. */
static void test_objects(size_t size, size_t align, unsigned flags)
{
	enum { N = 3000 };
	static void *objs[N];
	struct oncpu_cache *c = oncpu_cache_new_flags(size, align, flags);
	CHECK(c);
	CHECK(test_pinned(0)); /* one CPU's array: the counts below are exact */
	struct oncpu_cache_stats st = stats(c);
	size_t want = align ? align : size >= 16 ? 16 : 1;
	CHECK(st.object_size == size && st.stride >= size && st.stride % want == 0);
	CHECK(st.cpu_capacity >= 2 && st.batch == st.cpu_capacity / 2);
	CHECK(st.flags == flags);
	for (int i = 0; i < N; i++) {
		objs[i] = oncpu_cache_alloc(c);
		CHECK(objs[i]);
		CHECK_MSG((uintptr_t)objs[i] % want == 0, "%p not aligned to %zu", objs[i], want);
		memset(objs[i], (unsigned char)i, size);
	}
	for (int i = 0; i < N; i++) {
		const unsigned char *b = objs[i];
		CHECK_MSG(b[0] == (unsigned char)i && b[size - 1] == (unsigned char)i,
		          "object %d overwritten by a neighbour", i);
	}
	/* Sorted addresses at least a stride apart: distinct, no overlap. */
	for (int i = 1; i < N; i++)
		for (int j = i; j > 0 && (uintptr_t)objs[j - 1] > (uintptr_t)objs[j]; j--) {
			void *t = objs[j];
			objs[j] = objs[j - 1];
			objs[j - 1] = t;
		}
	for (int i = 1; i < N; i++)
		CHECK((uintptr_t)objs[i] - (uintptr_t)objs[i - 1] >= st.stride);
	for (int i = 0; i < N; i++)
		oncpu_cache_free(c, objs[i]);
	st = stats(c);
	CHECK_MSG(st.objects == st.cached_cpu + st.cached_depot,
	          "%zu objects, %zu cached per CPU, %zu in the depot", st.objects, st.cached_cpu,
	          st.cached_depot);
	CHECK(st.objects >= N && st.objects <= N + st.batch);
	test_unpin();
	oncpu_cache_destroy(c);
}

/* Alloc and free many times: memory stops growing; the accounting holds. */
static void test_reuse(unsigned flags)
{
	enum { N = 2000 };
	static void *objs[N];
	struct oncpu_cache *c = oncpu_cache_new_flags(48, 0, flags);
	CHECK(c);
	CHECK(test_pinned(0));
	size_t first = 0;
	for (int round = 0; round < 20; round++) {
		int n = round % 2 ? N : N / 3;
		for (int i = 0; i < n; i++)
			CHECK(objs[i] = oncpu_cache_alloc(c));
		struct oncpu_cache_stats st = stats(c);
		CHECK(st.objects == (size_t)n + st.cached_cpu + st.cached_depot);
		for (int i = n - 1; i >= 0; i -= 2)
			oncpu_cache_free(c, objs[i]);
		for (int i = n - 2; i >= 0; i -= 2)
			oncpu_cache_free(c, objs[i]);
		st = stats(c);
		if (round == 1)
			first = st.objects;
		if (round > 1)
			CHECK_MSG(st.objects == first, "round %d: %zu objects, %zu after round 1",
			          round, st.objects, first);
	}
	test_unpin();
	oncpu_cache_destroy(c);
}

/* Objects allocated on CPU 0 and freed on CPU 1 by another thread come
 * back through the depot: memory stays bounded. */
struct cross {
	struct oncpu_cache *c;
	void **objs;
	int n, rounds;
	pthread_barrier_t bar;
};

static void *cross_freer(void *arg)
{
	struct cross *x = arg;
	test_pinned(ncpus > 1 ? 1 : 0);
	for (int r = 0; r < x->rounds; r++) {
		pthread_barrier_wait(&x->bar);
		for (int i = 0; i < x->n; i++)
			oncpu_cache_free(x->c, x->objs[i]);
		pthread_barrier_wait(&x->bar);
	}
	return NULL;
}

static void test_cross_cpu(unsigned flags)
{
	enum { N = 1000 };
	static void *objs[N];
	struct cross x = {
	    .c = oncpu_cache_new_flags(48, 0, flags), .objs = objs, .n = N, .rounds = 30};
	CHECK(x.c);
	pthread_barrier_init(&x.bar, NULL, 2);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, cross_freer, &x) == 0);
	CHECK(test_pinned(0));
	for (int r = 0; r < x.rounds; r++) {
		for (int i = 0; i < N; i++) {
			CHECK(objs[i] = oncpu_cache_alloc(x.c));
			*(int *)objs[i] = i;
		}
		pthread_barrier_wait(&x.bar);
		pthread_barrier_wait(&x.bar);
	}
	pthread_join(t, NULL);
	struct oncpu_cache_stats st = stats(x.c);
	/* At most N live, M per used slot (2 CPUs or 2 vcpus), B per thread. */
	size_t bound = N + 2 * st.cpu_capacity + 3 * st.batch;
	CHECK_MSG(st.objects <= bound, "%zu objects after %d rounds (bound %zu)", st.objects,
	          x.rounds, bound);
	CHECK(st.objects == st.cached_cpu + st.cached_depot);
	test_unpin();
	pthread_barrier_destroy(&x.bar);
	oncpu_cache_destroy(x.c);
}

/* Under an address-space limit: NULL with ENOMEM, and the cache recovers. */
static void enomem_child(void *unused)
{
	(void)unused;
	struct oncpu_cache *c = oncpu_cache_new(64 * 1024, 0);
	if (!c)
		_exit(10);
	struct rlimit rl;
	long pages = 0;
	FILE *f = fopen("/proc/self/statm", "re");
	if (!f || fscanf(f, "%ld", &pages) != 1)
		_exit(11);
	fclose(f);
	rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (64 << 20);
	if (setrlimit(RLIMIT_AS, &rl) != 0)
		_exit(12);
	void *head = NULL;
	long n = 0;
	for (;;) {
		errno = 0;
		void *p = oncpu_cache_alloc(c);
		if (!p)
			break;
		*(void **)p = head;
		head = p;
		if (++n > 100000)
			_exit(13);
	}
	if (errno != ENOMEM || n < 100)
		_exit(14);
	while (head) {
		void *next = *(void **)head;
		oncpu_cache_free(c, head);
		head = next;
	}
	void *p = oncpu_cache_alloc(c);
	if (!p)
		_exit(15);
	oncpu_cache_free(c, p);
	oncpu_cache_destroy(c);
	_exit(42);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static void test_enomem(void)
{
#ifdef UNDER_ASAN
	return; /* the sanitizer's shadow memory cannot live under RLIMIT_AS */
#endif
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		enomem_child(NULL);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 42, "ENOMEM child: status %#x",
	          status);
}

/* destroy unmaps the slabs. */
static void test_destroy(void)
{
	struct oncpu_cache *c = oncpu_cache_new(48, 0);
	CHECK(c);
	void *p = oncpu_cache_alloc(c);
	CHECK(p);
	long page = sysconf(_SC_PAGESIZE);
	void *pg = (void *)((uintptr_t)p & ~(uintptr_t)(page - 1));
	CHECK(msync(pg, (size_t)page, MS_ASYNC) == 0);
	oncpu_cache_destroy(c);
	CHECK_ERRNO(msync(pg, (size_t)page, MS_ASYNC), ENOMEM);
}

/* ---- debug mode: the reports name the caller's file:line ---- */

static struct oncpu_cache *dbg;

/* Announces the line of its second free; the report must name it. */
static void double_free(void *unused)
{
	(void)unused;
	void *p = oncpu_cache_alloc(dbg);
	oncpu_cache_free(dbg, p);
	fprintf(stderr, "second free at cache.c:%d:\n", __LINE__ + 1);
	oncpu_cache_free(dbg, p);
}

static void foreign_free(void *unused)
{
	(void)unused;
	oncpu_cache_free(dbg, malloc(48));
}

static void other_cache_free(void *unused)
{
	(void)unused;
	struct oncpu_cache *other = oncpu_cache_new(48, 0);
	oncpu_cache_free(dbg, oncpu_cache_alloc(other));
}

static void interior_free(void *unused)
{
	(void)unused;
	char *p = oncpu_cache_alloc(dbg);
	oncpu_cache_free(dbg, p + 8);
}

static void write_after_free(void *unused)
{
	(void)unused;
	/* LIFO per CPU: the next alloc on this CPU returns p again. */
	test_pinned(0);
	char *p = oncpu_cache_alloc(dbg);
	oncpu_cache_free(dbg, p);
	p[5] = 'x';
	for (int i = 0; i < 1000; i++)
		oncpu_cache_alloc(dbg);
}

static void function_double_free(void *unused)
{
	(void)unused;
	void *p = oncpu_cache_alloc(dbg);
	(oncpu_cache_free)(dbg, p);
	(oncpu_cache_free)(dbg, p);
}

static void test_debug(unsigned flags)
{
	CHECK(dbg = oncpu_cache_new_flags(48, 0, flags | ONCPU_CACHE_DEBUG));
	CHECK(stats(dbg).flags == (flags | ONCPU_CACHE_DEBUG));
	/* Correct use passes, freed objects come back poisoned then reused. */
	void *objs[500];
	for (int i = 0; i < 500; i++)
		CHECK(objs[i] = oncpu_cache_alloc(dbg));
	for (int i = 0; i < 500; i++)
		oncpu_cache_free(dbg, objs[i]);
	for (int i = 0; i < 500; i++)
		CHECK(objs[i] = oncpu_cache_alloc(dbg));
	for (int i = 0; i < 500; i++)
		oncpu_cache_free(dbg, objs[i]);

	const char *const dbl[] = {"double free", NULL};
	expect_abort(double_free, NULL, dbl);
	const char *const foreign[] = {"foreign pointer", "unit/cache.c:", NULL};
	expect_abort(foreign_free, NULL, foreign);
	expect_abort(other_cache_free, NULL, foreign);
	const char *const interior[] = {"inside an object", NULL};
	expect_abort(interior_free, NULL, interior);
	const char *const waf[] = {"written after it was freed", "byte 5", NULL};
	expect_abort(write_after_free, NULL, waf);
	const char *const fn[] = {"double free", "unknown caller", NULL};
	expect_abort(function_double_free, NULL, fn);
	oncpu_cache_destroy(dbg);
}

static void env_debug_child(void *unused)
{
	(void)unused;
	setenv("ONCPU_CACHE_DEBUG", "1", 1);
	struct oncpu_cache *c = oncpu_cache_new(48, 0);
	if (!c || !(stats(c).flags & ONCPU_CACHE_DEBUG))
		_exit(3);
	void *p = oncpu_cache_alloc(c);
	oncpu_cache_free(c, p);
	oncpu_cache_free(c, p);
}

/* The per-CPU array operations of oncpu/cs.h that the inline paths use. */
static void test_array_ops(void)
{
	enum { CAP = 4 };
	void *base = oncpu_percpu_alloc(ONCPU_CS_ARRAY_ITEMS + CAP * sizeof(intptr_t), 64);
	CHECK(base);
	CHECK(test_pinned(0));
	intptr_t *a = oncpu_ptr(base, oncpu_cpu()), load = 0;
	int r;
	if (!test_expect_rseq()) {
		CHECK(oncpu_cs_percpu_array_push(ONCPU_CPU, base, CAP, 1) == ONCPU_CS_UNAVAILABLE);
		CHECK(oncpu_cs_percpu_array_pop(ONCPU_CPU, base, &load) == ONCPU_CS_UNAVAILABLE);
		test_unpin();
		oncpu_percpu_free(base);
		return;
	}
#define RETRY(call)                                                                                \
	do                                                                                         \
		r = (call);                                                                        \
	while (r == ONCPU_CS_ABORTED)
	RETRY(oncpu_cs_percpu_array_pop(ONCPU_CPU, base, &load));
	CHECK(r == ONCPU_CS_CMPFAIL && load == 0); /* empty */
	for (intptr_t i = 1; i <= CAP; i++) {
		RETRY(oncpu_cs_percpu_array_push(ONCPU_CPU, base, CAP, 100 + i));
		CHECK(r == ONCPU_CS_COMMITTED && a[0] == i && a[1 + i] == 100 + i);
	}
	RETRY(oncpu_cs_percpu_array_push(ONCPU_CPU, base, CAP, 999));
	CHECK(r == ONCPU_CS_CMPFAIL && a[0] == CAP); /* full */
	a[1] = 1;                                    /* guard taken: nothing moves */
	RETRY(oncpu_cs_percpu_array_pop(ONCPU_CPU, base, &load));
	CHECK(r == ONCPU_CS_CMPFAIL && a[0] == CAP && load == 0);
	a[0] = 1;
	RETRY(oncpu_cs_percpu_array_push(ONCPU_CPU, base, CAP, 999));
	CHECK(r == ONCPU_CS_CMPFAIL && a[0] == 1 && a[3] == 102);
	a[0] = CAP;
	a[1] = 0;
	for (intptr_t i = CAP; i >= 1; i--) {
		RETRY(oncpu_cs_percpu_array_pop(ONCPU_CPU, base, &load));
		CHECK(r == ONCPU_CS_COMMITTED && load == 100 + i && a[0] == i - 1);
	}
	/* vCPU indexing addresses the array of the vcpu id. */
	intptr_t *v = oncpu_ptr(base, oncpu_vcpu());
	RETRY(oncpu_cs_percpu_array_push(ONCPU_VCPU, base, CAP, 7));
	CHECK(r == ONCPU_CS_COMMITTED && v[0] == 1 && v[2] == 7);
	RETRY(oncpu_cs_percpu_array_pop(ONCPU_VCPU, base, &load));
	CHECK(r == ONCPU_CS_COMMITTED && load == 7 && v[0] == 0);
#undef RETRY
	test_unpin();
	oncpu_percpu_free(base);
}

/* fork() while other threads are inside the cache (depot mutex, slot lock
 * words in fallback mode): the child can still use it, and a stack. */
struct hammer {
	struct oncpu_cache *c;
	struct oncpu_stack *s;
	atomic_int stop;
};

static void *hammer_thread(void *arg)
{
	struct hammer *h = arg;
	void *objs[300];
	while (!atomic_load(&h->stop)) {
		for (int i = 0; i < 300; i++) /* several refills and flushes */
			objs[i] = oncpu_cache_alloc(h->c);
		for (int i = 0; i < 300; i++) {
			oncpu_stack_push(h->s, objs[i]);
			oncpu_stack_pop(h->s);
			oncpu_cache_free(h->c, objs[i]);
		}
	}
	return NULL;
}

static void test_fork(void)
{
	struct hammer h = {oncpu_cache_new(48, 0), oncpu_stack_new(), 0};
	CHECK(h.c && h.s);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&t[i], NULL, hammer_thread, &h) == 0);
	for (int round = 0; round < 40; round++) {
		fflush(NULL);
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			alarm(10); /* a lock left held would hang the child */
			for (int cpu = 0; cpu < ncpus; cpu++) {
				test_pinned(cpu);
				void *objs[500];
				for (int i = 0; i < 500; i++)
					if (!(objs[i] = oncpu_cache_alloc(h.c)))
						_exit(2);
				for (int i = 0; i < 500; i++) {
					oncpu_stack_push(h.s, objs[i]);
					if (!oncpu_stack_pop(h.s))
						_exit(3);
					oncpu_cache_free(h.c, objs[i]);
				}
			}
			_exit(0);
		}
		int status;
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		          "fork round %d: child status %#x (SIGALRM: it hung on a lock)", round,
		          status);
		usleep(1000);
	}
	atomic_store(&h.stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	oncpu_stack_destroy(h.s);
	oncpu_cache_destroy(h.c);
}

/* ---- mixed process ---- */

struct mixed {
	struct oncpu_cache *c;
	void **objs;
	int n;
	bool ok;
};

static void *fallback_thread(void *arg)
{
	struct mixed *m = arg;
	m->ok = test_leave_rseq() && test_pinned(0);
	if (!m->ok)
		return NULL;
	for (int i = 0; i < m->n; i++) {
		m->ok &= *(int *)m->objs[i] == i;
		oncpu_cache_free(m->c, m->objs[i]);
	}
	for (int i = 0; i < m->n; i++) {
		m->ok &= (m->objs[i] = oncpu_cache_alloc(m->c)) != NULL;
		*(int *)m->objs[i] = -i;
	}
	return NULL;
}

static void test_mixed(unsigned flags)
{
	enum { N = 700 };
	static void *objs[N];
	struct mixed m = {oncpu_cache_new_flags(48, 0, flags), objs, N, false};
	CHECK(m.c);
	CHECK(test_pinned(0));
	for (int i = 0; i < N; i++) {
		CHECK(objs[i] = oncpu_cache_alloc(m.c));
		*(int *)objs[i] = i;
	}
	pthread_t t;
	CHECK(pthread_create(&t, NULL, fallback_thread, &m) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_MSG(m.ok, "the thread without rseq did not share the cache correctly");
	for (int i = 0; i < N; i++) {
		CHECK(*(int *)objs[i] == -i);
		oncpu_cache_free(m.c, objs[i]);
	}
	struct oncpu_cache_stats st = stats(m.c);
	CHECK(st.objects == st.cached_cpu + st.cached_depot);
	CHECK(st.objects <= 2 * N + st.cpu_capacity + st.batch);
	test_unpin();
	oncpu_cache_destroy(m.c);
}

int main(void)
{
	cpu_set_t set;
	CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
	ncpus = CPU_COUNT(&set);
	CHECK(CPU_ISSET(0, &set) && (ncpus == 1 || CPU_ISSET(1, &set)));
	unsetenv("ONCPU_CACHE_DEBUG");
	CHECK(oncpu_thread_rseq_active() == test_expect_rseq());

	test_bad_input();
	test_array_ops();
	static const size_t sizes[][2] = {{1, 0},   {7, 0},     {8, 8},      {48, 0},   {48, 64},
	                                  {100, 1}, {100, 256}, {500, 4096}, {4096, 0}, {70000, 0}};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		test_objects(sizes[i][0], sizes[i][1], 0);
		test_objects(sizes[i][0], sizes[i][1], ONCPU_F_VCPU);
	}
	test_reuse(0);
	test_reuse(ONCPU_F_VCPU);
	test_cross_cpu(0);
	test_cross_cpu(ONCPU_F_VCPU);
	test_enomem();
	test_fork();
	test_destroy();
	test_debug(0);
	test_debug(ONCPU_F_VCPU);
	static const char *const env_dbl[] = {"double free", NULL};
	expect_abort(env_debug_child, NULL, env_dbl);
	if (test_expect_rseq()) {
		test_mixed(0);
		test_mixed(ONCPU_F_VCPU);
	}
	printf("unit.cache [%s]: ok\n", test_mode());
	return 0;
}
