/* SPDX-License-Identifier: MIT */
/*
 * A plugin that carries liboncpu.a, loaded by a program that does not link
 * liboncpu (special.unload_embedded PLUGIN): after the plugin ran sections,
 * dlclose must leave it mapped. Its copy of liboncpu may have registered
 * rseq areas in the plugin's own TLS, which the kernel keeps writing, and
 * its descriptors may still be armed in rseq_cs; both must outlive every
 * thread.
 */
#define _GNU_SOURCE
#include <dlfcn.h>

#include "check.h"

int main(int argc, char **argv)
{
	CHECK_MSG(argc == 2, "usage: %s PLUGIN", argv[0]);
	void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	CHECK_MSG(lib, "dlopen: %s", dlerror());
	long (*run)(long) = (long (*)(long))dlsym(lib, "plugin_run");
	CHECK(run);
	CHECK(run(100000) == 100000);
	CHECK(dlclose(lib) == 0);
	void *again = dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD);
	CHECK_MSG(again, "the plugin was unloaded by dlclose");
	run = (long (*)(long))dlsym(again, "plugin_run");
	CHECK(run && run(1000) == 1000);
	dlclose(again);
	printf("the plugin stayed mapped after dlclose\n");
	return 0;
}
