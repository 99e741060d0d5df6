/* SPDX-License-Identifier: MIT */
/*
 * desched_bpf.c - the bpf provider falls back cleanly where its programs are
 * not loaded (no root needed; runs in every mode): the provider is "none",
 * registration says ENOTSUP, the on-CPU state is "untracked", the mutex
 * works, and the uprobe target is exported and harmless to call. Blocks
 * never sit in a transparent huge page (a provider that pins one would pin
 * 2 MiB). The provider itself is tested as root in tests/special-bpf.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/mman.h>

#include <oncpu.h>
#include <oncpu/desched.h>
#include <oncpu/mutex.h>

#include "testutil.h"

/* The VmFlags line of the mapping that contains p, from /proc/self/smaps. */
static void vm_flags(const void *p, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	CHECK(f != NULL);
	char line[512];
	bool inside = false;
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' '))
			inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
		else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
			snprintf(out, len, "%s", line + 8);
			break;
		}
	}
	fclose(f);
	CHECK_MSG(out[0], "no VmFlags for %p in /proc/self/smaps", p);
}

/* True when this kernel has transparent huge pages: without them
 * (CONFIG_TRANSPARENT_HUGEPAGE off, as in the kernel/vm-test guests)
 * madvise(MADV_NOHUGEPAGE) is EINVAL and no mapping can get a huge page. */
static bool kernel_has_thp(void)
{
	long page = sysconf(_SC_PAGESIZE);
	void *p =
	    mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED);
	int r = madvise(p, (size_t)page, MADV_NOHUGEPAGE);
	int err = errno;
	CHECK(munmap(p, (size_t)page) == 0);
	CHECK_MSG(r == 0 || err == EINVAL, "madvise(MADV_NOHUGEPAGE): %s", strerror(err));
	return r == 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "auto") == 0) {
		/* Automatic choice with nothing pinned: never bpf. */
		CHECK_MSG(strcmp(oncpu_desched_provider(), "bpf") != 0, "provider %s",
		          oncpu_desched_provider());
		return 0;
	}
	/* Before the first use: the provider is chosen once per process. */
	setenv("ONCPU_BPF_PIN_DIR", "/sys/fs/bpf/oncpu-unit-test-nothing-here", 1);
	setenv("ONCPU_DESCHED_PROVIDER", "bpf", 1);
	CHECK_MSG(strcmp(oncpu_desched_provider(), "none") == 0, "provider %s",
	          oncpu_desched_provider());

	uint64_t *w = oncpu_desched_words();
	CHECK(w != NULL);
	char flags[512];
	vm_flags(w, flags, sizeof(flags));
	if (kernel_has_thp())
		CHECK_MSG(strstr(flags, " nh") != NULL,
		          "the block pool may use huge pages (VmFlags:%s)", flags);
	else
		printf("desched_bpf: kernel without transparent huge pages: no nh flag to check\n");
	struct oncpu_desched_entry e = {.addr = &w[0], .value = 1, .size = 8};
	CHECK_ERRNO(oncpu_desched_register(&e, 1), ENOTSUP);
	CHECK(oncpu_desched_unregister() == 0);
	CHECK(oncpu_desched_state(oncpu_desched_self()) == ONCPU_DESCHED_UNTRACKED);

	oncpu_mutex_t m = ONCPU_MUTEX_INIT;
	oncpu_mutex_lock(&m);
	CHECK(oncpu_mutex_trylock(&m) == EBUSY);
	oncpu_mutex_unlock(&m);

	/* The arm uprobe's target: exported (oncpu-bpfd finds it in .dynsym),
	 * and a call without a uprobe does nothing. */
	void (*arm)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "_oncpu_desched_bpf_arm");
	if (arm) {
		arm(NULL);
		arm(w);
	} else {
		printf("_oncpu_desched_bpf_arm not found by dlsym (static link?)\n");
	}
	CHECK(w[0] == 0);

	unsetenv("ONCPU_DESCHED_PROVIDER");
	int st = test_reexec(NULL, "auto", NULL);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "auto child: %s", test_status_str(st));
	printf("ok (%s)\n", test_mode());
	return 0;
}
