/* SPDX-License-Identifier: MIT */
/*
 * thread.c - rseq registration and ids.
 *
 * The process picks one area location for all its threads, once:
 *   - the C library's area (glibc >= 2.35 with __rseq_size > 0), whose
 *     offset from the thread pointer glibc exports as __rseq_offset;
 *   - otherwise oncpu's own 32-byte area, an initial-exec TLS variable (a
 *     fixed offset from the thread pointer in every thread, and small enough
 *     for glibc's static TLS reserve when liboncpu is dlopen()ed).
 * The own area is registered lazily (legacy 32-byte ABI) on a thread's first
 * slow-path call and unregistered by a pthread key destructor at thread exit.
 *
 * Why legacy registration: a 32-byte registration keeps the kernel rewriting
 * cpu_id_start, cpu_id, node_id and mm_cid after every switch and before
 * every signal on every kernel (7.1+ only does that for legacy areas), which
 * reschedule detection depends on, and it still covers mm_cid (offset 24) and
 * node_id: the kernel fills every field that AT_RSEQ_FEATURE_SIZE lists for
 * any registration of at least 32 bytes. That is also why vcpu trusts the
 * kernel's feature size and not glibc's __rseq_size (which says 20 on glibc
 * 2.36 to 2.40 while glibc registers 32 bytes).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* glibc >= 2.35; weak so liboncpu links and runs without them (musl, old glibc). */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

ONCPU_API struct _oncpu_process _oncpu_process;

enum own_state { OWN_UNTRIED = 0, OWN_REGISTERED = 1 }; /* or -errno */

/* This thread's own area and what registering it gave. */
struct own_thread {
	struct oncpu_rseq_area area;
	int state;
} __attribute__((aligned(32)));

/*
 * The mm_cid of an area the kernel does not update: read as an int it is
 * negative, so it matches no id that a section accepts (cpu_id is negative
 * there already), and a section on an unregistered thread fails its id
 * check in either indexing mode (see _oncpu_cs_aborted).
 */
#define MM_CID_UNREGISTERED UINT32_MAX

static __thread struct own_thread own __attribute__((tls_model("initial-exec"))) = {
    .area = {.cpu_id = ONCPU_RSEQ_CPU_ID_UNINITIALIZED, .mm_cid = MM_CID_UNREGISTERED},
};

static struct {
	enum oncpu_registration mode; /* LIBC or OWN: where areas live */
	bool disabled;                /* ONCPU_DISABLE_RSEQ: fallback everywhere */
	bool vcpu_dense;
	bool have_node;
	int possible_cpus;
	pthread_key_t exit_key;
} proc;

static int rseq_syscall(struct oncpu_rseq_area *area, uint32_t len, int flags)
{
#if defined(SYS_rseq) && defined(ONCPU_RSEQ_SIG)
	return (int)syscall(SYS_rseq, area, len, flags, ONCPU_RSEQ_SIG);
#else
	(void)area, (void)len, (void)flags;
	errno = ENOSYS;
	return -1;
#endif
}

static char *thread_pointer(void)
{
#if defined(__x86_64__)
	char *tp;
	__asm__("movq %%fs:0, %0" : "=r"(tp));
	return tp;
#else
	return (char *)__builtin_thread_pointer();
#endif
}

/* Largest id in a cpulist such as "0-3,8,10-11", plus one; 0 on error. */
static int parse_cpulist_bound(const char *s)
{
	int bound = 0;
	while (*s && *s != '\n') {
		char *end;
		long lo = strtol(s, &end, 10), hi = lo;
		if (end == s || lo < 0)
			return 0;
		if (*end == '-') {
			s = end + 1;
			hi = strtol(s, &end, 10);
			if (end == s || hi < lo)
				return 0;
		}
		if (hi + 1 > bound)
			bound = (int)(hi + 1);
		s = end;
		if (*s == ',')
			s++;
	}
	return bound;
}

static int read_possible_cpus(void)
{
	int n = 0;
	FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
	if (f) {
		char buf[4096];
		if (fgets(buf, sizeof(buf), f))
			n = parse_cpulist_bound(buf);
		fclose(f);
	}
	if (n <= 0) {
		long c = sysconf(_SC_NPROCESSORS_CONF);
		n = c > 0 ? (int)c : 1;
	}
	const char *test = getenv("ONCPU_POSSIBLE_CPUS");
	if (test) {
		long t = strtol(test, NULL, 10);
		if (t > n && t <= 65536)
			n = (int)t;
	}
	return n;
}

static void thread_exit(void *unused)
{
	(void)unused;
	if (own.state == OWN_REGISTERED) {
		rseq_syscall(&own.area, ONCPU_RSEQ_LEGACY_SIZE, ONCPU_RSEQ_FLAG_UNREGISTER);
		own.state = OWN_UNTRIED;
		own.area.cpu_id = ONCPU_RSEQ_CPU_ID_UNINITIALIZED;
		own.area.mm_cid = MM_CID_UNREGISTERED; /* the kernel left 0 */
	}
}

void _oncpu_process_init(void)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	if (__atomic_load_n(&_oncpu_process.rseq_offset, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&lock);
	if (_oncpu_process.rseq_offset == 0) {
		const char *off = getenv("ONCPU_DISABLE_RSEQ");
		unsigned long feature_size = getauxval(ONCPU_AT_RSEQ_FEATURE_SIZE);
		ptrdiff_t area;

		proc.disabled = off && *off && strcmp(off, "0") != 0;
		proc.possible_cpus = read_possible_cpus();
		pthread_key_create(&proc.exit_key, thread_exit);
		if (!proc.disabled && &__rseq_size && &__rseq_offset && __rseq_size > 0) {
			proc.mode = ONCPU_REG_LIBC;
			area = __rseq_offset;
		} else {
			/* Disabled mode points at the own area, never registered,
			 * so every fast path sees "unregistered". */
			proc.mode = ONCPU_REG_OWN;
			area = (char *)&own.area - thread_pointer();
		}
		proc.vcpu_dense = feature_size >= ONCPU_RSEQ_END_MM_CID;
		proc.have_node = feature_size >= ONCPU_RSEQ_END_NODE_ID;
		_oncpu_process.vcpu_offset =
		    area + (proc.vcpu_dense ? ONCPU_RSEQ_OFF_MM_CID : ONCPU_RSEQ_OFF_CPU_ID);
		/* Publish last: a non-zero offset means every field is set. */
		__atomic_store_n(&_oncpu_process.rseq_offset, area, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&lock);
}

/* Registers this thread's own area once; returns 0 or -errno. */
static int register_own(void)
{
	if (own.state != OWN_UNTRIED)
		return own.state == OWN_REGISTERED ? 0 : own.state;
	if (proc.disabled) {
		own.state = -ENOSYS;
	} else if (rseq_syscall(&own.area, ONCPU_RSEQ_LEGACY_SIZE, 0) == 0) {
		own.state = OWN_REGISTERED;
		pthread_setspecific(proc.exit_key, &own);
		return 0;
	} else if (errno == EBUSY && own.area.cpu_id < ONCPU_RSEQ_CPU_ID_REGISTRATION_FAILED) {
		/* A signal handler registered this very area meanwhile. */
		own.state = OWN_REGISTERED;
		return 0;
	} else if (errno == ENOSYS) {
		own.state = -ENOSYS;
	} else {
		/* Our arguments are valid, so EINVAL or EBUSY mean that another
		 * area is registered for this thread: leave it alone. */
		own.state = -EBUSY;
	}
	own.area.cpu_id = ONCPU_RSEQ_CPU_ID_REGISTRATION_FAILED;
	return own.state;
}

/* This thread's area (the process must be initialized), registered or not. */
static struct oncpu_rseq_area *this_area(void)
{
	return (struct oncpu_rseq_area *)(thread_pointer() + _oncpu_process.rseq_offset);
}

/* 0 when this thread's area is registered, else -errno. */
static int thread_register(void)
{
	_oncpu_process_init();
	if (proc.mode == ONCPU_REG_OWN)
		return register_own();
	if (_oncpu_registered_cpu() >= 0)
		return 0;
	/* The C library's registration failed on this thread: its area keeps
	 * whatever mm_cid an earlier thread or zeroing left there. */
	this_area()->mm_cid = MM_CID_UNREGISTERED;
	return -ENOSYS;
}

bool _oncpu_thread_ready_slow(void)
{
#if defined(ONCPU_HAVE_RSEQ_ASM)
	return thread_register() == 0;
#else
	return false;
#endif
}

int oncpu_thread_init(void)
{
	int r = thread_register();
#if !defined(ONCPU_HAVE_RSEQ_ASM)
	if (r == 0)
		r = -ENOTSUP;
#endif
	if (r == 0)
		return 0;
	errno = -r;
	return -1;
}

bool oncpu_thread_rseq_active(void)
{
#if defined(ONCPU_HAVE_RSEQ_ASM)
	return _oncpu_registered_cpu() >= 0 || _oncpu_thread_ready_slow();
#else
	return false;
#endif
}

enum oncpu_registration oncpu_thread_registration(void)
{
	return thread_register() == 0 ? proc.mode : ONCPU_REG_NONE;
}

bool oncpu_vcpu_dense(void)
{
	return thread_register() == 0 && proc.vcpu_dense;
}

struct oncpu_rseq_area *oncpu_thread_area(void)
{
	if (thread_register() != 0)
		return NULL;
	return this_area();
}

int _oncpu_possible_cpus(void)
{
	_oncpu_process_init();
	return proc.possible_cpus;
}

int oncpu_cpu_count(void)
{
	return _oncpu_possible_cpus();
}

int _oncpu_cpu_without_rseq(void)
{
	int cpu = sched_getcpu();
	if (cpu < 0 || cpu >= _oncpu_possible_cpus())
		cpu = 0;
	return cpu;
}

int _oncpu_cpu_slow(void)
{
	if (thread_register() == 0)
		return _oncpu_registered_cpu();
	return _oncpu_cpu_without_rseq();
}

int _oncpu_vcpu_slow(void)
{
	if (thread_register() == 0)
		return _oncpu_tp_load32(_oncpu_process.vcpu_offset);
	return _oncpu_cpu_without_rseq();
}

int oncpu_node(void)
{
	if (thread_register() == 0 && proc.have_node)
		return (int)oncpu_thread_area()->node_id;
	unsigned cpu, node;
	/* The system call, not glibc's getcpu() wrapper: musl before 1.2.4
	 * has none. */
	return syscall(SYS_getcpu, &cpu, &node, NULL) == 0 ? (int)node : 0;
}

const char *oncpu_version(void)
{
	return ONCPU_VERSION_STRING;
}

void _oncpu_fatal(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "oncpu: %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}
