/* SPDX-License-Identifier: MIT */
/*
 * bench_cache.c - 48-byte objects. One operation is an alloc+free pair;
 * every variant writes the object's first word and passes its address to
 * an empty asm, so that no compiler can drop the pair.
 *
 *   cache.oncpu     oncpu_cache_alloc + oncpu_cache_free: one section each
 *   cache.malloc    the C library's malloc + free
 *   cache.mimalloc  mi_malloc + mi_free from libmimalloc.so.2
 *   cache.jemalloc  malloc + free from libjemalloc.so.2 (Debian's build has
 *                   no je_ prefix; je_malloc is tried first for other builds)
 *   cache.vcpu      cache.oncpu with one array per virtual CPU
 *   cache.vcpu_mixed  cache.vcpu with every second thread without rseq
 *                   (mixed.h)
 * mimalloc and jemalloc are loaded with dlopen when the case runs, so
 * neither liboncpu nor oncpu-bench depends on them; a missing library makes
 * the case "skipped" (Debian: apt-get install libmimalloc2.0 libjemalloc2).
 * teardown checks that every thread's objects were distinct while live.
 *
 * jemalloc has 2.6 KiB of initial-exec TLS; glibc keeps only 512 bytes of
 * static TLS for libraries loaded later, so dlopen() fails with "cannot
 * allocate memory in static TLS block". A constructor here therefore
 * re-executes the program once at startup with
 * glibc.rtld.optional_static_tls=8192 added to GLIBC_TUNABLES (other
 * tunables are kept); where that cannot be done the case says why it skips.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <oncpu.h>

#include "bench.h"
#include "mixed.h"

#define OBJECT_SIZE        48
#define STATIC_TLS_TUNABLE "glibc.rtld.optional_static_tls=8192"

/* The command line of this process, from /proc/self/cmdline; NULL on error. */
static char **self_argv(void)
{
	FILE *f = fopen("/proc/self/cmdline", "re");
	if (!f)
		return NULL;
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	if (n == 0 || n == sizeof(buf) - 1)
		return NULL;
	buf[n] = 0;
	size_t argc = 0;
	for (size_t i = 0; i < n; i++)
		argc += buf[i] == 0;
	char **argv = calloc(argc + 1, sizeof(char *));
	if (!argv)
		return NULL;
	for (size_t i = 0, a = 0; i < n && a < argc; a++) {
		argv[a] = &buf[i];
		i += strlen(&buf[i]) + 1;
	}
	return argv;
}

__attribute__((constructor)) static void reserve_static_tls(void)
{
	const char *t = getenv("GLIBC_TUNABLES");
	if (getenv("ONCPU_BENCH_STATIC_TLS") || (t && strstr(t, "optional_static_tls")))
		return;
	char **argv = self_argv();
	if (!argv)
		return;
	char tunables[4096];
	snprintf(tunables, sizeof(tunables), "%s%s" STATIC_TLS_TUNABLE, t ? t : "",
	         t && *t ? ":" : "");
	setenv("GLIBC_TUNABLES", tunables, 1);
	setenv("ONCPU_BENCH_STATIC_TLS", "1", 1); /* once, even if the tunable is ignored */
	execv("/proc/self/exe", argv);
	free(argv); /* exec failed: carry on, jemalloc will say why it skips */
	if (t)
		setenv("GLIBC_TUNABLES", t, 1);
	else
		unsetenv("GLIBC_TUNABLES");
}

struct per_thread {
	long bad;
} __attribute__((aligned(64)));

struct cache_ctx {
	const char *name;
	int threads;
	struct per_thread *pt;
	struct oncpu_cache *cache;
	atomic_int mixed_failed; /* vcpu_mixed */
	void *(*alloc)(size_t);
	void (*release)(void *);
	void *dl;
};

static struct cache_ctx *ctx_new(const char *name, int threads)
{
	struct cache_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->name = name;
	c->threads = threads;
	c->pt = aligned_alloc(64, sizeof(struct per_thread) * (size_t)threads);
	if (!c->pt) {
		free(c);
		return NULL;
	}
	memset(c->pt, 0, sizeof(struct per_thread) * (size_t)threads);
	return c;
}

static void ctx_free(struct cache_ctx *c)
{
	if (c->dl)
		dlclose(c->dl);
	free(c->pt);
	free(c);
}

/* The object is ours while we hold it: a tag written after alloc must still
 * be there just before free, or another thread got the same object. */
#define USE(p, tag)                                                                                \
	do {                                                                                       \
		*(volatile uintptr_t *)(p) = (tag);                                                \
		__asm__ __volatile__("" ::"r"(p) : "memory");                                      \
		if (__builtin_expect(*(volatile uintptr_t *)(p) != (tag), 0))                      \
			bad++;                                                                     \
	} while (0)

static void *setup_cache(const char *name, int threads, unsigned flags)
{
	struct cache_ctx *c = ctx_new(name, threads);
	if (c && !(c->cache = oncpu_cache_new_flags(OBJECT_SIZE, 0, flags))) {
		fprintf(stderr, "%s: oncpu_cache_new_flags: %s\n", name, strerror(errno));
		ctx_free(c);
		return NULL;
	}
	return c;
}

static void *setup_oncpu(int threads)
{
	return setup_cache("cache.oncpu", threads, 0);
}

static void *setup_vcpu(int threads)
{
	return setup_cache("cache.vcpu", threads, ONCPU_F_VCPU);
}

static void *setup_vcpu_mixed(int threads)
{
	return setup_cache("cache.vcpu_mixed", threads, ONCPU_F_VCPU);
}

static void run_oncpu(void *ctx, int tid, long iters)
{
	struct cache_ctx *c = ctx;
	struct oncpu_cache *cache = c->cache;
	uintptr_t tag = (uintptr_t)(tid + 1) << 1 | 1;
	long bad = 0;
	for (long i = 0; i < iters; i++) {
		void *p = oncpu_cache_alloc(cache);
		USE(p, tag);
		oncpu_cache_free(cache, p);
		BENCH_BARRIER();
	}
	c->pt[tid].bad = bad;
}

static void run_mixed(void *ctx, int tid, long iters)
{
	struct cache_ctx *c = ctx;
	mixed_thread_start(tid, &c->mixed_failed);
	run_oncpu(ctx, tid, iters);
	mixed_rejoin();
}

/* Library allocators through function pointers (malloc, mimalloc, jemalloc). */
static void run_fn(void *ctx, int tid, long iters)
{
	struct cache_ctx *c = ctx;
	void *(*alloc)(size_t) = c->alloc;
	void (*release)(void *) = c->release;
	uintptr_t tag = (uintptr_t)(tid + 1) << 1 | 1;
	long bad = 0;
	for (long i = 0; i < iters; i++) {
		void *p = alloc(OBJECT_SIZE);
		USE(p, tag);
		release(p);
		BENCH_BARRIER();
	}
	c->pt[tid].bad = bad;
}

static void *setup_malloc(int threads)
{
	struct cache_ctx *c = ctx_new("cache.malloc", threads);
	if (c) {
		c->alloc = malloc;
		c->release = free;
	}
	return c;
}

static void *setup_dl(int threads, const char *name, const char *lib, const char *const syms[][2],
                      const char *package)
{
	void *dl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		const char *err = dlerror();
		if (err && strstr(err, "static TLS"))
			fprintf(stderr,
			        "%s: %s needs more static TLS than this process reserved (run with "
			        "GLIBC_TUNABLES=" STATIC_TLS_TUNABLE "); skipped\n",
			        name, lib);
		else
			fprintf(stderr, "%s: %s is not installed (%s); skipped\n", name, lib,
			        package);
		return NULL;
	}
	for (int i = 0; syms[i][0]; i++) {
		void *a = dlsym(dl, syms[i][0]), *f = dlsym(dl, syms[i][1]);
		if (a && f) {
			struct cache_ctx *c = ctx_new(name, threads);
			if (!c)
				break;
			c->dl = dl;
			c->alloc = (void *(*)(size_t))a;
			c->release = (void (*)(void *))f;
			return c;
		}
	}
	fprintf(stderr, "%s: %s has no allocation functions this benchmark knows; skipped\n", name,
	        lib);
	dlclose(dl);
	return NULL;
}

static void *setup_mimalloc(int threads)
{
	static const char *const syms[][2] = {{"mi_malloc", "mi_free"}, {NULL, NULL}};
	return setup_dl(threads, "cache.mimalloc", "libmimalloc.so.2", syms,
	                "Debian: libmimalloc2.0 or libmimalloc-dev");
}

static void *setup_jemalloc(int threads)
{
	static const char *const syms[][2] = {
	    {"je_malloc", "je_free"}, {"malloc", "free"}, {NULL, NULL}};
	return setup_dl(threads, "cache.jemalloc", "libjemalloc.so.2", syms,
	                "Debian: libjemalloc2 or libjemalloc-dev");
}

static int teardown(void *ctx)
{
	struct cache_ctx *c = ctx;
	long bad = 0;
	for (int t = 0; t < c->threads; t++)
		bad += c->pt[t].bad;
	if (bad)
		fprintf(stderr, "%s: %ld objects were handed to two threads at once\n", c->name,
		        bad);
	if (mixed_check(c->name, &c->mixed_failed) != 0)
		bad++;
	if (c->cache)
		oncpu_cache_destroy(c->cache);
	ctx_free(c);
	return bad ? -1 : 0;
}

static const char *info_oncpu(void *ctx)
{
	struct cache_ctx *c = ctx;
	static char buf[96];
	struct oncpu_cache_stats st;
	if (oncpu_cache_get_stats(c->cache, &st) != 0)
		return NULL;
	snprintf(buf, sizeof(buf), "cpu_capacity=%zu batch=%zu rseq=%s", st.cpu_capacity, st.batch,
	         oncpu_thread_rseq_active() ? "yes" : "no");
	return buf;
}

const struct bench_case bench_cache[] = {
    {"cache.oncpu", BENCH_THREADS_1_AND_CPUS, setup_oncpu, run_oncpu, teardown, info_oncpu},
    {"cache.vcpu", BENCH_THREADS_CPUS_AND_4X, setup_vcpu, run_oncpu, teardown, NULL},
    {"cache.vcpu_mixed", BENCH_THREADS_CPUS_AND_4X, setup_vcpu_mixed, run_mixed, teardown, NULL},
    {"cache.malloc", BENCH_THREADS_1_AND_CPUS, setup_malloc, run_fn, teardown, NULL},
    {"cache.mimalloc", BENCH_THREADS_1_AND_CPUS, setup_mimalloc, run_fn, teardown, NULL},
    {"cache.jemalloc", BENCH_THREADS_1_AND_CPUS, setup_jemalloc, run_fn, teardown, NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};
