/* SPDX-License-Identifier: MIT */
/*
 * liboncpu loaded with dlopen(RTLD_NOW | RTLD_LOCAL) by a program that does
 * not link it, and used only through dlsym: from threads that existed
 * before the dlopen (their static TLS for liboncpu's initial-exec area is
 * set up by the dlopen) and from threads created after it. Exact counter
 * sums, modes as expected, ids right when pinned. Also: RTLD_LOCAL keeps
 * the symbols out of the global scope, and dlclose does not unload the
 * library (its rseq descriptors and areas must outlive every thread).
 *	dlopen PATH-TO-LIBONCPU
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#include "check.h"

struct oncpu_counter;

static struct {
	struct oncpu_counter *(*counter_new)(void);
	void (*counter_add)(struct oncpu_counter *, long);
	long (*counter_sum)(struct oncpu_counter *);
	void (*counter_destroy)(struct oncpu_counter *);
	int (*cpu)(void);
	int (*vcpu)(void);
	int (*cpu_count)(void);
	bool (*rseq_active)(void);
	int (*thread_init)(void);
	int (*thread_registration)(void); /* enum oncpu_registration */
	const char *(*version)(void);
} api;

#define THREADS_BEFORE 3
#define THREADS_AFTER  3
#define ADDS           100000

static struct oncpu_counter *counter;
static pthread_barrier_t loaded;

static int expected_registration(void)
{
	if (strcmp(test_mode(), "rseq-libc") == 0)
		return 1; /* ONCPU_REG_LIBC */
	if (strcmp(test_mode(), "rseq-own") == 0)
		return 2; /* ONCPU_REG_OWN */
	return 0;
}

static void use_oncpu(void)
{
	CHECK(api.rseq_active() == test_expect_rseq());
	CHECK(api.thread_registration() == expected_registration());
	CHECK((api.thread_init() == 0) == test_expect_rseq());
	cpu_set_t all;
	CHECK(sched_getaffinity(0, sizeof(all), &all) == 0);
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &all))
			continue;
		cpu_set_t one;
		CPU_ZERO(&one);
		CPU_SET(c, &one);
		CHECK(sched_setaffinity(0, sizeof(one), &one) == 0);
		CHECK_MSG(api.cpu() == c, "oncpu_cpu %d pinned to %d", api.cpu(), c);
		int v = api.vcpu();
		CHECK(v >= 0 && v < api.cpu_count());
	}
	CHECK(sched_setaffinity(0, sizeof(all), &all) == 0);
	for (int i = 0; i < ADDS; i++)
		api.counter_add(counter, 1);
}

static void *thread_before(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&loaded); /* the library was not there when we started */
	use_oncpu();
	return NULL;
}

static void *thread_after(void *arg)
{
	(void)arg;
	use_oncpu();
	return NULL;
}

#define SYM(field, name)                                                                           \
	do {                                                                                       \
		*(void **)&api.field = dlsym(lib, name);                                           \
		CHECK_MSG(api.field, "dlsym %s: %s", name, dlerror());                             \
	} while (0)

int main(int argc, char **argv)
{
	CHECK_MSG(argc == 2, "usage: dlopen PATH-TO-LIBONCPU");
	CHECK(dlsym(RTLD_DEFAULT, "oncpu_counter_new") == NULL); /* really not linked */
	CHECK(pthread_barrier_init(&loaded, NULL, THREADS_BEFORE + 1) == 0);
	pthread_t before[THREADS_BEFORE], after[THREADS_AFTER];
	for (int i = 0; i < THREADS_BEFORE; i++)
		CHECK(pthread_create(&before[i], NULL, thread_before, NULL) == 0);

	void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	CHECK_MSG(lib, "dlopen %s: %s", argv[1], dlerror());
	SYM(counter_new, "oncpu_counter_new");
	SYM(counter_add, "oncpu_counter_add");
	SYM(counter_sum, "oncpu_counter_sum");
	SYM(counter_destroy, "oncpu_counter_destroy");
	SYM(cpu, "oncpu_cpu");
	SYM(vcpu, "oncpu_vcpu");
	SYM(cpu_count, "oncpu_cpu_count");
	SYM(rseq_active, "oncpu_thread_rseq_active");
	SYM(thread_init, "oncpu_thread_init");
	SYM(thread_registration, "oncpu_thread_registration");
	SYM(version, "oncpu_version");
	CHECK(dlsym(RTLD_DEFAULT, "oncpu_counter_new") == NULL); /* RTLD_LOCAL */
	CHECK(api.version() && *api.version());

	counter = api.counter_new();
	CHECK(counter && api.counter_sum(counter) == 0);
	pthread_barrier_wait(&loaded);
	for (int i = 0; i < THREADS_AFTER; i++)
		CHECK(pthread_create(&after[i], NULL, thread_after, NULL) == 0);
	use_oncpu();
	for (int i = 0; i < THREADS_BEFORE; i++)
		CHECK(pthread_join(before[i], NULL) == 0);
	for (int i = 0; i < THREADS_AFTER; i++)
		CHECK(pthread_join(after[i], NULL) == 0);
	long want = (long)(THREADS_BEFORE + THREADS_AFTER + 1) * ADDS;
	CHECK_MSG(api.counter_sum(counter) == want, "sum %ld, expected %ld",
	          api.counter_sum(counter), want);

	/* dlclose must not unload it (-z nodelete): areas and descriptors live on */
	CHECK(dlclose(lib) == 0);
	void *again = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
	CHECK_MSG(again, "liboncpu was unloaded by dlclose");
	api.counter_add(counter, 1);
	CHECK(api.counter_sum(counter) == want + 1);
	api.counter_destroy(counter);
	printf("dlopen: all checks passed (%s)\n", test_mode());
	return 0;
}
