/* SPDX-License-Identifier: MIT */
/*
 * dlclose of a module whose code ran sections (special.unload PLUGIN KIND).
 * A committed section leaves rseq_cs pointing at its descriptor in the
 * module; the kernel reads it at the thread's next return to user space
 * after a switch or signal, and a read from an unmapped page kills the
 * thread with SIGSEGV. Here a second thread runs the plugin's sections and
 * sleeps in read() with that stale pointer while the main thread
 * dlcloses the plugin; then it wakes.
 *   KIND pinned:     the plugin stays mapped after dlclose (oncpu/cs.h
 *                    marks it RTLD_NODELETE), the sleeper wakes, and the
 *                    kernel has cleared its rseq_cs.
 *   KIND unloadable: built with ONCPU_UNLOADABLE: rseq_cs is 0 after every
 *                    section, dlclose unloads the plugin, the sleeper wakes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <oncpu.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "testutil.h"

#define ADDS 100000

static void (*plugin_add)(struct oncpu_counter *, long);
static struct oncpu_counter *counter;
static bool unloadable;
static int wake[2], ready[2];
static long sleeper_calls; /* plugin_add calls of the sleeper */

/* This thread's rseq_cs, or 0 where it runs no sections. */
static uint64_t armed(void)
{
	struct oncpu_rseq_area *a = oncpu_thread_area();
	return a ? __atomic_load_n(&a->rseq_cs, __ATOMIC_RELAXED) : 0;
}

static void *sleeper(void *arg)
{
	(void)arg;
	uint64_t cs;
	int tries = 0;
	/* Leave a section's descriptor armed (pinned kind): a preemption
	 * between the add and the check clears it, so try again. */
	do {
		plugin_add(counter, ADDS);
		sleeper_calls++;
		cs = armed();
	} while (!unloadable && oncpu_thread_rseq_active() && cs == 0 && ++tries < 1000);
	if (oncpu_thread_rseq_active())
		CHECK_MSG(unloadable ? cs == 0 : cs != 0, "rseq_cs %#llx after the sections",
		          (unsigned long long)cs);
	char c = 1;
	CHECK(write(ready[1], &c, 1) == 1);
	CHECK(read(wake[0], &c, 1) == 1); /* sleeps; the plugin is dlclosed meanwhile */
	/* Back in user space: the kernel has looked at rseq_cs and cleared it. */
	CHECK_MSG(armed() == 0, "rseq_cs %#llx after waking", (unsigned long long)armed());
	return NULL;
}

int main(int argc, char **argv)
{
	CHECK_MSG(argc == 3, "usage: %s PLUGIN pinned|unloadable", argv[0]);
	unloadable = strcmp(argv[2], "unloadable") == 0;
	counter = oncpu_counter_new();
	CHECK(counter);
	CHECK(pipe(wake) == 0 && pipe(ready) == 0);

	void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	CHECK_MSG(lib, "dlopen: %s", dlerror());
	plugin_add = (void (*)(struct oncpu_counter *, long))dlsym(lib, "plugin_add");
	CHECK(plugin_add);
	plugin_add(counter, ADDS);
	if (unloadable && oncpu_thread_rseq_active())
		CHECK(armed() == 0);

	pthread_t t;
	CHECK(pthread_create(&t, NULL, sleeper, NULL) == 0);
	char c;
	CHECK(read(ready[0], &c, 1) == 1);
	test_sleep_us(20000); /* let the sleeper block in read() */

	CHECK(dlclose(lib) == 0);
	void *again = dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD);
	printf("after dlclose the plugin is %s\n", again ? "still mapped" : "unloaded");
	if (unloadable) {
		CHECK_MSG(!again, "the unloadable plugin stayed mapped");
	} else {
		CHECK_MSG(again, "the plugin was unloaded while its descriptors may be armed");
		plugin_add = NULL;
		dlclose(again);
	}

	CHECK(write(wake[1], &c, 1) == 1);
	CHECK(pthread_join(t, NULL) == 0);
	long want = (1 + sleeper_calls) * ADDS, sum = oncpu_counter_sum(counter);
	CHECK_MSG(sum == want, "sum %ld, expected %ld", sum, want);
	oncpu_counter_destroy(counter);
	printf("rseq %s, %s plugin: sum %ld\n", oncpu_thread_rseq_active() ? "active" : "inactive",
	       argv[2], sum);
	return 0;
}
