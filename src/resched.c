/* SPDX-License-Identifier: MIT */
/*
 * resched.c - where reschedule detection works (see oncpu/resched.h), decided
 * once per process; the inline arm/check do the rest.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "internal.h"

/* glibc >= 2.35 (weak: see thread.c). */
extern const unsigned int __rseq_size __attribute__((weak));

ptrdiff_t _oncpu_resched_offset;
__thread uint64_t _oncpu_resched_epoch_tls __attribute__((tls_model("initial-exec")));

static pthread_once_t resched_once = PTHREAD_ONCE_INIT;
static int resched_error; /* 0, or why detection does not work */

/* "6.18.44-..." -> 618 (major * 100 + minor); 0 when unparsable. */
static int kernel_version(const char *release)
{
	int major = 0, minor = 0;
	if (sscanf(release, "%d.%d", &major, &minor) != 2)
		return 0;
	return major * 100 + minor;
}

/* CONFIG_DEBUG_RSEQ=y in the running kernel's config, where readable. */
static bool kernel_debug_rseq(const char *release)
{
	char path[300], line[256];
	bool found = false;
	snprintf(path, sizeof(path), "/boot/config-%s", release);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "CONFIG_DEBUG_RSEQ=y", 19) == 0) {
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

static void resched_decide(void)
{
	struct utsname u;
	int v = uname(&u) == 0 ? kernel_version(u.release) : 0;
	enum oncpu_registration reg = oncpu_thread_registration();

	if (reg == ONCPU_REG_NONE || !oncpu_thread_rseq_active()) {
		resched_error = ENOTSUP; /* fallback mode: nobody writes the ids */
		return;
	}
	if (v == 0 || (v >= 619 && v < 701)) {
		resched_error = ENOTSUP; /* ids rewritten only when they change */
		return;
	}
	if (v >= 701 && reg == ONCPU_REG_LIBC && &__rseq_size &&
	    __rseq_size > ONCPU_RSEQ_LEGACY_SIZE) {
		resched_error = ENOTSUP; /* optimized registration: writing kills */
		return;
	}
	if (v >= 613 && kernel_debug_rseq(u.release)) {
		resched_error = ENOTSUP; /* read-only fields validated: writing kills */
		return;
	}
	const char *off = getenv("ONCPU_RESCHED_DISABLE");
	if (off && *off && strcmp(off, "0") != 0) {
		resched_error = ENOTSUP;
		return;
	}
	__atomic_store_n(&_oncpu_resched_offset,
	                 _oncpu_process.rseq_offset + ONCPU_RSEQ_OFF_CPU_ID_START,
	                 __ATOMIC_RELEASE);
}

int oncpu_resched_init(void)
{
	pthread_once(&resched_once, resched_decide);
	if (resched_error) {
		errno = resched_error;
		return -1;
	}
	/* Own-area mode registers each thread lazily. */
	if (!oncpu_thread_rseq_active()) {
		errno = ENOTSUP;
		return -1;
	}
	return 0;
}

bool _oncpu_resched_arm_slow(void)
{
	int saved = errno;
	bool ok = oncpu_resched_init() == 0;
	errno = saved;
	_oncpu_resched_epoch_tls++;
	if (!ok)
		return false;
	ptrdiff_t off = _oncpu_resched_offset;
	struct oncpu_rseq_area *area = oncpu_thread_area();
	if (!area || off == 0)
		return false;
	__atomic_store_n(&area->cpu_id_start, ONCPU_RESCHED_MARK, __ATOMIC_RELAXED);
	return true;
}
