/* SPDX-License-Identifier: MIT */
/*
 * module.c - keep every module that holds inline sections mapped.
 *
 * A committed section leaves the thread's rseq_cs pointing at its
 * descriptor (oncpu/arch/generic.h); the kernel reads that pointer at the
 * thread's next preemption, migration or signal, clears it when the thread
 * is outside the section, and kills the thread with SIGSEGV when the read
 * faults. A sleeping thread keeps its stale pointer until it wakes, and no
 * one else may write another thread's area, so clearing at dlclose cannot
 * reach every thread: instead, a module whose code carries sections is
 * never unloaded (RTLD_NODELETE, as liboncpu itself with -z nodelete), and
 * a stale pointer always reads a valid descriptor whose range the thread
 * is not in. oncpu/cs.h calls _oncpu_module_pin() from a constructor in
 * every such module; ONCPU_UNLOADABLE opts a module out (every section then
 * clears rseq_cs on exit, one store more per operation).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <sys/auxv.h>

#include "internal.h"

/*
 * Weak: a static program that links no dlopen() cannot load a module, and
 * pinning its own code is moot (glibc also warns at link time when a static
 * program references dlopen). Dynamic programs resolve them from libc
 * (glibc >= 2.34, musl) or libdl, which liboncpu.so links.
 */
extern int dladdr(const void *, Dl_info *) __attribute__((weak));
extern void *dlopen(const char *, int) __attribute__((weak));
extern int dlclose(void *) __attribute__((weak));
extern char *dlerror(void) __attribute__((weak));

/* The base address of the module that maps addr, or NULL. */
static void *module_base(const void *addr)
{
	Dl_info info;
	return addr && dladdr(addr, &info) ? info.dli_fbase : NULL;
}

ONCPU_API void _oncpu_module_pin(const void *addr_in_module)
{
	if (!dladdr || !dlopen || !dlclose || !dlerror)
		return;
	Dl_info mod;
	if (!dladdr(addr_in_module, &mod) || !mod.dli_fname)
		return;
	/* The main program (its program headers are AT_PHDR) is never
	 * unloaded. */
	if (mod.dli_fbase == module_base((const void *)getauxval(AT_PHDR)))
		return;
	/* RTLD_NOLOAD finds the module by the name it was loaded under and
	 * loads nothing; RTLD_NODELETE marks it. The handle's reference is
	 * given back at once, the mark stays. */
	void *h = dlopen(mod.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
	if (h) {
		dlclose(h);
		return;
	}
	const char *why = dlerror();
	fprintf(stderr,
	        "oncpu: cannot keep %s loaded (%s); it holds rseq sections: do not "
	        "dlclose it, or build it with -DONCPU_UNLOADABLE\n",
	        mod.dli_fname, why ? why : "not found by name");
}

/*
 * liboncpu pins the module it lives in as well: liboncpu.so is linked with
 * -z nodelete already, but a plugin that carries liboncpu.a holds the
 * library's rseq areas (its TLS, which the kernel keeps writing until each
 * thread exits) and descriptors, and must outlive every thread too.
 */
__attribute__((constructor)) static void pin_own_module(void)
{
	_oncpu_module_pin((const void *)pin_own_module);
}
