/* SPDX-License-Identifier: MIT */
/*
 * desched_bpf.c - the "bpf" deschedule-notification provider: BPF programs
 * loaded by oncpu-bpfd (bpf/oncpu_desched.bpf.c) write each registered
 * thread's block on a stock kernel 6.13+.
 *
 * The library needs neither libbpf nor privileges: it opens the pinned maps
 * with BPF_OBJ_GET, registers a thread with one BPF_MAP_UPDATE_ELEM on the
 * task-storage map keyed by a pidfd of the thread (the kernel pins the block,
 * a __uptr, in the caller's own address space), then calls
 * _oncpu_desched_bpf_arm(): a uprobe there runs the arm program as this
 * thread, which checks that the pinned page is this thread's block and only
 * then arms the registration (the protocol is in common/oncpu_bpf.h).
 *
 * Only root and the group that the administrator gave to `oncpu-bpfd load
 * --group` may open the reg map for writing. A registration can still be
 * lost (replaced by another process of that group): after the
 * thread blocked in the library, thread_check() compares the kernel's count
 * of its context switches with the switch-outs the programs wrote, and the
 * library registers again when some switch went unwritten.
 *
 * probe() registers and arms a private block once, so a process whose
 * binary file has no arm uprobe (the loader never attached it, or the file
 * was replaced by an upgrade: a uprobe belongs to an inode) falls back to
 * the next provider instead of running unarmed. Errors of probe():
 *   ENOENT     nothing pinned: oncpu-bpfd is not loaded (or another pin dir)
 *   EPROTO     the loaded programs were built for another block layout/ABI
 *   ENOLINK    the arm uprobe did not run: this binary file is not attached
 *              (run `oncpu-bpfd attach FILE`)
 *   EACCES     the pinned maps' modes do not let this user register (not
 *              root nor in the group of oncpu-bpfd load --group)
 *   other      from bpf(2) or pidfd_open(2) (ENOSYS: kernel before 6.9)
 * With ONCPU_DESCHED_PROVIDER=bpf the reason is printed on stderr.
 * ONCPU_BPF_PIN_DIR overrides the pin directory (ignored in setuid programs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "desched_provider.h"
#include "internal.h"

#include "oncpu_bpf.h"

/* bpf(2) and pidfd_open(2), mirrored from linux/bpf.h and linux/pidfd.h so
 * that liboncpu builds without recent kernel headers. */
#define SYSBPF_MAP_LOOKUP_ELEM 1
#define SYSBPF_MAP_UPDATE_ELEM 2
#define SYSBPF_MAP_DELETE_ELEM 3
#define SYSBPF_OBJ_GET         7
#define SYSBPF_F_RDONLY        (1U << 3)
#define SYSBPF_F_WRONLY        (1U << 4)
#define SYSBPF_ANY             0
#define ONCPU_PIDFD_THREAD     O_EXCL /* PIDFD_THREAD, 6.9+ */

struct sysbpf_elem_attr {
	uint32_t map_fd;
	uint32_t pad;
	uint64_t key;
	uint64_t value;
	uint64_t flags;
};

struct sysbpf_obj_attr {
	uint64_t pathname;
	uint32_t bpf_fd;
	uint32_t file_flags;
};

_Static_assert(ONCPU_BPF_PD_BAD_ENTRY <
                   sizeof(((struct _oncpu_desched_block *)0)->provider_data) / sizeof(uint64_t),
               "provider_data words");

ONCPU_API void _oncpu_desched_bpf_arm(struct _oncpu_desched_block *blk);

/*
 * _oncpu_desched_bpf_arm - the uprobe target (see above). Exported so that
 * the loader finds it in .dynsym; not a public API. It must stay a real,
 * distinct function: noinline, and a body that no other function shares
 * (identical-code folding would make other calls trigger the uprobe).
 */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((noipa))
#endif
__attribute__((noinline, used)) void
_oncpu_desched_bpf_arm(struct _oncpu_desched_block *blk)
{
	static volatile uint32_t calls;
	__asm__ __volatile__("" : : "r"(blk) : "memory");
	calls++;
}

static struct {
	int reg_fd;    /* the reg map, write-only; -1 until probe() */
	char dir[256]; /* pin directory, set by probe() */
} bp = {-1, ""};

/* What this thread registered: its block (under its tid: a fork child's
 * thread has another tid and registers anew). */
static __thread struct _oncpu_desched_block *tls_blk __attribute__((tls_model("initial-exec")));
static __thread pid_t tls_tid __attribute__((tls_model("initial-exec")));
/* At this thread's last check: the kernel's count of its context switches
 * and the switch-outs the programs wrote into its block. */
static __thread uint64_t tls_ctxsw, tls_switch_outs;

static long sys_bpf(int cmd, void *attr, unsigned int size)
{
#if defined(SYS_bpf)
	return syscall(SYS_bpf, cmd, attr, size);
#else
	(void)cmd, (void)attr, (void)size;
	errno = ENOSYS;
	return -1;
#endif
}

static int pidfd_open_thread(pid_t tid)
{
#if defined(SYS_pidfd_open)
	return (int)syscall(SYS_pidfd_open, tid, ONCPU_PIDFD_THREAD);
#else
	(void)tid;
	errno = ENOSYS;
	return -1;
#endif
}

static pid_t gettid_raw(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* fd of a pinned object, or -errno. */
static int obj_get(const char *name, uint32_t flags)
{
	/* dir "/" name, without stdio: async-signal-safe. */
	char path[320];
	size_t d = strlen(bp.dir), n = strlen(name);
	if (d + 1 + n + 1 > sizeof(path))
		return -ENAMETOOLONG;
	memcpy(path, bp.dir, d);
	path[d] = '/';
	memcpy(path + d + 1, name, n + 1);
	struct sysbpf_obj_attr a = {.pathname = (uint64_t)(uintptr_t)path, .file_flags = flags};
	int fd = (int)sys_bpf(SYSBPF_OBJ_GET, &a, sizeof(a));
	return fd >= 0 ? fd : -errno;
}

static int map_op(int cmd, int fd, const void *key, void *value, uint64_t flags)
{
	struct sysbpf_elem_attr a = {
	    .map_fd = (uint32_t)fd,
	    .key = (uint64_t)(uintptr_t)key,
	    .value = (uint64_t)(uintptr_t)value,
	    .flags = flags,
	};
	return sys_bpf(cmd, &a, sizeof(a)) == 0 ? 0 : -errno;
}

/* The reg map's fd, reopened when the application closed ours (or the fd
 * number now names something else: `stale` is the fd that failed).
 * Lock-free: it runs in fork children and may run in signal handlers. */
static int reg_fd_get(int stale)
{
	int fd = __atomic_load_n(&bp.reg_fd, __ATOMIC_ACQUIRE);
	if (fd >= 0 && fd != stale)
		return fd;
	int nfd = obj_get(ONCPU_BPF_PIN_REG, SYSBPF_F_WRONLY);
	if (nfd < 0)
		return nfd;
	/* The stale number may belong to someone else now: never close it. */
	if (__atomic_compare_exchange_n(&bp.reg_fd, &fd, nfd, false, __ATOMIC_ACQ_REL,
	                                __ATOMIC_ACQUIRE))
		return nfd;
	close(nfd); /* another thread reopened it first */
	return fd;
}

/* reg[this thread] = {blk} (blk NULL: delete). 0 or -errno. */
static int reg_update(pid_t tid, struct _oncpu_desched_block *blk)
{
	int pidfd = pidfd_open_thread(tid);
	if (pidfd < 0)
		return -errno;
	struct oncpu_bpf_reg_user v = {.block = (uint64_t)(uintptr_t)blk};
	int r = -EBADF, fd = -1;
	for (int tries = 0; tries < 2; tries++) {
		fd = reg_fd_get(fd);
		if (fd < 0) {
			r = fd;
			break;
		}
		r = blk ? map_op(SYSBPF_MAP_UPDATE_ELEM, fd, &pidfd, &v, SYSBPF_ANY)
		        : map_op(SYSBPF_MAP_DELETE_ELEM, fd, &pidfd, NULL, 0);
		/* EBADF or EINVAL (not a map): the fd was closed or replaced. */
		if (r != -EBADF && r != -EINVAL)
			break;
	}
	close(pidfd);
	if (!blk && r == -ENOENT)
		r = 0;
	return r;
}

/* A nonce nobody else can predict: even and non-zero. */
static uint64_t arm_nonce(void)
{
	static uint64_t counter;
	uint64_t c = 0;
	if (getrandom(&c, sizeof(c), GRND_NONBLOCK) != (ssize_t)sizeof(c)) {
		/* No getrandom (seccomp, old kernel): AT_RANDOM's 16 bytes, which
		 * only this process can read, mixed with a counter (splitmix64). */
		const uint64_t *r = (const uint64_t *)getauxval(AT_RANDOM);
		uint64_t z =
		    (r ? r[0] ^ r[1] : 0) +
		    0x9e3779b97f4a7c15ULL * __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		c = z ^ (z >> 31);
	}
	c &= ~1ULL;
	return c ? c : 2;
}

/* Arms this thread's registration of blk; true when the arm program
 * accepted it (it ran, as this thread, and the block is ours). */
static bool arm(struct _oncpu_desched_block *blk)
{
	volatile uint64_t *w = (volatile uint64_t *)&blk->provider_data[ONCPU_BPF_PD_ARM];
	uint64_t nonce = arm_nonce();
	*w = nonce;
	_oncpu_desched_bpf_arm(blk);
	return *w == (nonce | 1);
}

/* Voluntary and involuntary context switches of the calling thread. */
static uint64_t thread_ctxsw(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_THREAD, &ru) != 0)
		return 0;
	return (uint64_t)ru.ru_nvcsw + (uint64_t)ru.ru_nivcsw;
}

/* Remembers both counts; true when the kernel counted more switches since
 * the last call than the programs wrote switch-outs (each switch of an
 * armed thread is written before it runs again). The kernel's count is
 * read first, so every switch it includes is in the second count too. */
static bool switch_outs_missed(const struct _oncpu_desched_block *blk)
{
	uint64_t sw = thread_ctxsw();
	uint64_t outs =
	    __atomic_load_n(&blk->provider_data[ONCPU_BPF_PD_SWITCH_OUT], __ATOMIC_RELAXED);
	bool missed = sw - tls_ctxsw > outs - tls_switch_outs;
	tls_ctxsw = sw;
	tls_switch_outs = outs;
	return missed;
}

/* reg[tid] = blk, armed; 0 or -errno (-ENOLINK: not armed, removed). Twice
 * at most: the programs drop a registration whose thread was switched out
 * ONCPU_BPF_UNARMED_GRACE times before it armed (a very busy machine), and
 * the arm uprobe finds none then. */
static int register_armed(pid_t tid, struct _oncpu_desched_block *blk)
{
	for (int tries = 0; tries < 2; tries++) {
		int r = reg_update(tid, blk);
		if (r != 0)
			return r;
		if (arm(blk))
			return 0;
	}
	reg_update(tid, NULL);
	return -ENOLINK;
}

static int bpf_thread_register(struct _oncpu_desched_block *blk)
{
	/* Entries are read from the block at every switch, so a registered
	 * thread would need nothing here when they change; registering again
	 * anyway repairs a registration that another process of the group
	 * replaced. A few microseconds. */
	pid_t tid = gettid_raw();
	tls_blk = NULL;
	/* An rseq area makes the kernel fire rseq_update on every return to
	 * user space after a switch: the programs' backstop for a switch-in
	 * that sched_switch did not show. Without rseq (refused) no backstop. */
	oncpu_thread_init();
	int r = register_armed(tid, blk);
	if (r != 0)
		return r;
	tls_blk = blk;
	tls_tid = tid;
	switch_outs_missed(blk);
	return 0;
}

static int bpf_thread_check(struct _oncpu_desched_block *blk)
{
	if (tls_blk != blk || tls_tid != gettid_raw())
		return 0;
	return switch_outs_missed(blk) ? -ENOLINK : 0;
}

static int bpf_thread_unregister(struct _oncpu_desched_block *blk)
{
	pid_t tid = gettid_raw();
	if (tls_blk != blk || tls_tid != tid)
		return 0;
	tls_blk = NULL;
	if (reg_update(tid, NULL) != 0) {
		/* No usable map fd: an arm call with an address that is not the
		 * block is refused, and a refused arm drops the registration. */
		_oncpu_desched_bpf_arm(NULL);
	}
	return 0;
}

/* Set up the maps, then register and arm a private block once. */
static int probe_once(void)
{
	const char *dir = secure_getenv("ONCPU_BPF_PIN_DIR");
	snprintf(bp.dir, sizeof(bp.dir), "%s", dir && *dir ? dir : ONCPU_BPF_PIN_DIR);

	int info_fd = obj_get(ONCPU_BPF_PIN_INFO, SYSBPF_F_RDONLY);
	if (info_fd < 0)
		return info_fd;
	uint32_t key = 0;
	struct oncpu_bpf_info info;
	memset(&info, 0, sizeof(info));
	int r = map_op(SYSBPF_MAP_LOOKUP_ELEM, info_fd, &key, &info, 0);
	close(info_fd);
	if (r != 0)
		return r;
	if (info.abi != ONCPU_BPF_ABI || info.block_size != ONCPU_DESCHED_BLOCK_SIZE)
		return -EPROTO;
	r = reg_fd_get(-1);
	if (r < 0)
		return r;

	static struct _oncpu_desched_block probe_blk;
	probe_blk.self = (uint64_t)(uintptr_t)&probe_blk;
	probe_blk.nr_entries = 0;
	pid_t tid = gettid_raw();
	r = register_armed(tid, &probe_blk);
	if (r == 0)
		reg_update(tid, NULL);
	return r;
}

static int bpf_probe(void)
{
	int r = probe_once();
	if (r != 0) {
		const char *want = getenv("ONCPU_DESCHED_PROVIDER");
		if (want && strcmp(want, "bpf") == 0)
			fprintf(stderr, "oncpu: bpf provider unavailable (%s: %s)%s\n", bp.dir,
			        strerror(-r),
			        r == -ENOLINK
			            ? ": this binary file is not attached, run oncpu-bpfd attach"
			        : r == -ENOENT ? ": oncpu-bpfd is not loaded"
			                       : "");
		int fd = bp.reg_fd;
		bp.reg_fd = -1;
		if (fd >= 0)
			close(fd);
	}
	return r;
}

const struct _oncpu_desched_provider _oncpu_desched_provider_bpf = {
    .name = "bpf",
    .id = ONCPU_DESCHED_PROV_BPF,
    .probe = bpf_probe,
    .thread_register = bpf_thread_register,
    .thread_unregister = bpf_thread_unregister,
    .thread_check = bpf_thread_check,
    /* A task-storage entry is not copied by fork(): register anew (the
     * tid check in bpf_thread_register sees the child's new tid). */
    .atfork_child = NULL,
};
