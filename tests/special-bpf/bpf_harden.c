/* SPDX-License-Identifier: MIT */
/*
 * bpf_harden.c - what the bpf provider does with registrations that are
 * lost, never armed, or whose block no longer holds the arming nonce. Root
 * plays the part of a process of the registering group (it may write any
 * thread's registration, as such a process may).
 *   1. A thread's registration is deleted, then replaced by a foreign one:
 *      the thread notices when it next blocks in the library (here in the
 *      mutex) and registers again; its on-CPU word follows it again (both
 *      "on" and "off" are seen), never frozen.
 *   2. A registration made for another process's thread, never armed, is
 *      dropped by the programs after ONCPU_BPF_UNARMED_GRACE switch-outs
 *      of that thread (its page is unpinned): the map has no entry left.
 *   3. A block whose arm word no longer holds the nonce the arm program
 *      recorded is not written, though its element and page are the ones
 *      armed.
 *   bpf_harden [lost|drop|nonce]...: only these parts (default: all).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>

#include <oncpu/mutex.h>

#include "bpftest.h"

/* reg[tid]: look up, update to block, delete. 0 or -errno. */
enum reg_cmd { REG_LOOKUP = 1, REG_UPDATE = 2, REG_DELETE = 3 };
static int reg_op(enum reg_cmd cmd, pid_t tid, void *block)
{
	return bpftest_reg_op(cmd, tid, block, 0);
}

/* A page that looks like a block with one entry on its on-CPU word. */
static struct _oncpu_desched_block *fake_block(void)
{
	struct _oncpu_desched_block *b =
	    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(b != MAP_FAILED);
	b->self = (uint64_t)(uintptr_t)b;
	b->nr_entries = 1;
	b->entries[0] = (struct _oncpu_desched_kentry){(uint64_t)(uintptr_t)&b->oncpu, 0, 1, 4,
	                                               ONCPU_DESCHED_ENTRY_F_RESUME};
	b->provider_data[ONCPU_BPF_PD_ARM] = 0x2468;
	return b;
}

/* ---- the worker: commands from main, run in its own thread ---- */
enum { W_IDLE, W_PULSE, W_LOCK, W_QUIT };
static struct {
	int cmd;
	pid_t tid;
	struct _oncpu_desched_block *blk;
	oncpu_desched_token_t token;
	oncpu_mutex_t m;
	int locked; /* the worker got m (after sleeping in it) */
} w = {.m = ONCPU_MUTEX_INIT};

static void spin_ns(uint64_t ns)
{
	uint64_t end = bpftest_now_ns() + ns;
	while (bpftest_now_ns() < end)
		;
}

static void *worker(void *arg)
{
	(void)arg;
	w.blk = bpftest_block();
	w.token = oncpu_desched_self();
	__atomic_store_n(&w.tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	for (;;) {
		int c = __atomic_load_n(&w.cmd, __ATOMIC_ACQUIRE);
		if (c == W_QUIT)
			return NULL;
		if (c == W_LOCK) {
			oncpu_mutex_lock(&w.m);
			oncpu_mutex_unlock(&w.m);
			__atomic_store_n(&w.locked, 1, __ATOMIC_RELEASE);
			__atomic_store_n(&w.cmd, W_PULSE, __ATOMIC_RELEASE);
			continue;
		}
		if (c == W_PULSE) {
			/* Runs 2 ms, sleeps 2 ms (not in the library). */
			spin_ns(2000000);
			usleep(2000);
		} else {
			usleep(1000);
		}
	}
}

static void command(int c)
{
	__atomic_store_n(&w.cmd, c, __ATOMIC_RELEASE);
}

/* Waits (10 s at most) until the worker was switched out n more times, by
 * the kernel's count. */
static void worker_switches(long n)
{
	long base = bpftest_ctxsw(w.tid);
	uint64_t end = bpftest_now_ns() + 10000000000ULL;
	while (bpftest_ctxsw(w.tid) - base < n && bpftest_now_ns() < end)
		usleep(1000);
	CHECK_MSG(bpftest_ctxsw(w.tid) - base >= n, "the worker does not run");
}

/* Waits (10 s at most) until the worker sleeps in futex(2). */
static void worker_in_futex(void)
{
	char p[96];
	snprintf(p, sizeof(p), "/proc/self/task/%d/syscall", (int)w.tid);
	uint64_t end = bpftest_now_ns() + 10000000000ULL;
	long nr = -1;
	while (nr != SYS_futex && bpftest_now_ns() < end) {
		FILE *f = fopen(p, "re");
		CHECK(f != NULL);
		if (fscanf(f, "%ld", &nr) != 1)
			nr = -1;
		fclose(f);
		usleep(1000);
	}
	CHECK_MSG(nr == SYS_futex, "the worker does not sleep in the mutex");
}

/* Samples the worker's state every ~300 us for `ms` ms (it pulses); with
 * `until_both`, stops early once both "on" and "off" were seen (a busy
 * machine may not run the worker for a while). */
static void sample(int ms, bool until_both, int *on, int *off)
{
	*on = *off = 0;
	uint64_t end = bpftest_now_ns() + (uint64_t)ms * 1000000ULL;
	while (bpftest_now_ns() < end && !(until_both && *on > 0 && *off > 0)) {
		int s = oncpu_desched_state(w.token);
		*on += s == ONCPU_DESCHED_ON_CPU;
		*off += s == ONCPU_DESCHED_OFF_CPU;
		usleep(300);
	}
}

/* 1. The worker loses its registration (deleted, or replaced), blocks in
 * the mutex, and is tracked again. */
static void lost(const char *how, void *replacement)
{
	command(W_PULSE);
	int on, off;
	sample(10000, true, &on, &off);
	CHECK_MSG(on > 0 && off > 0, "before: the worker is not tracked (%d on, %d off)", on, off);

	int r =
	    replacement ? reg_op(REG_UPDATE, w.tid, replacement) : reg_op(REG_DELETE, w.tid, NULL);
	CHECK_MSG(r == 0, "%s the worker's registration: %s", how, strerror(-r));
	worker_switches(ONCPU_BPF_UNARMED_GRACE + 1); /* a replacement is dropped */
	uint64_t out0 = bpftest_pd(w.blk, ONCPU_BPF_PD_SWITCH_OUT);
	worker_switches(20);
	uint64_t out1 = bpftest_pd(w.blk, ONCPU_BPF_PD_SWITCH_OUT);
	printf("1. registration %s: %llu switch-outs written in the next 20 switches\n", how,
	       (unsigned long long)(out1 - out0));
	CHECK_MSG(out1 == out0, "the worker's block is still written after its registration was %s",
	          how);

	/* The worker blocks in the mutex while main holds it, asleep. */
	oncpu_mutex_lock(&w.m);
	__atomic_store_n(&w.locked, 0, __ATOMIC_RELAXED);
	command(W_LOCK);
	worker_in_futex();
	oncpu_mutex_unlock(&w.m);
	while (!__atomic_load_n(&w.locked, __ATOMIC_ACQUIRE))
		usleep(1000);

	out0 = bpftest_pd(w.blk, ONCPU_BPF_PD_SWITCH_OUT);
	sample(10000, true, &on, &off);
	/* The samples can end on the frozen word's last value and the first
	 * value written again (a switch-in) before any switch-out is written:
	 * wait for one (the worker pulses: a few ms when it is tracked). */
	uint64_t end = bpftest_now_ns() + 10000000000ULL;
	while ((out1 = bpftest_pd(w.blk, ONCPU_BPF_PD_SWITCH_OUT)) == out0 &&
	       bpftest_now_ns() < end)
		usleep(1000);
	printf("   after blocking in the mutex: %llu switch-outs written, %d on / %d off samples\n",
	       (unsigned long long)(out1 - out0), on, off);
	CHECK_MSG(out1 > out0, "the worker was not registered again after blocking");
	CHECK_MSG(on > 0 && off > 0, "the worker's state is frozen (%d on, %d off)", on, off);
}

/* 2. A registration for a thread of another process is dropped. */
static void never_armed(void)
{
	int cmd[2], ready[2];
	CHECK(pipe(cmd) == 0 && pipe(ready) == 0);
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* Sleeps 1 ms at a time until told to stop (fork registered
		 * this thread anew before: the registration below replaces it). */
		close(cmd[1]);
		CHECK(write(ready[1], "r", 1) == 1);
		struct pollfd p = {cmd[0], POLLIN, 0};
		while (poll(&p, 1, 1) == 0)
			;
		_exit(0);
	}
	close(cmd[0]);
	char c;
	CHECK(read(ready[0], &c, 1) == 1);
	struct _oncpu_desched_block *f = fake_block();
	long long dropped0 = bpftest_stat(ONCPU_BPF_STAT_DROPPED);
	long sw0 = bpftest_ctxsw_of(pid, pid);
	CHECK(reg_op(REG_UPDATE, pid, f) == 0);
	int before = reg_op(REG_LOOKUP, pid, f), after = before;
	/* The victim switches out every 1 ms or so. */
	for (uint64_t end = bpftest_now_ns() + 10000000000ULL; after == 0 && bpftest_now_ns() < end;
	     usleep(10000))
		after = reg_op(REG_LOOKUP, pid, f);
	long sw = bpftest_ctxsw_of(pid, pid) - sw0;
	long long dropped = bpftest_stat(ONCPU_BPF_STAT_DROPPED) - dropped0;
	printf("2. never-armed registration on another process: looked up %s, then %s after "
	       "%ld switches of its thread; dropped %lld\n",
	       before ? strerror(-before) : "present", after ? strerror(-after) : "present", sw,
	       dropped);
	/* A thread preempted between registering and arming keeps its
	 * registration for the grace. */
	CHECK_MSG(sw > ONCPU_BPF_UNARMED_GRACE, "dropped after %ld switches only", sw);
	CHECK(before == 0);
	CHECK_MSG(after == -ENOENT, "the never-armed registration stayed (%s)",
	          after ? strerror(-after) : "present");
	CHECK(dropped >= 1);
	CHECK_MSG(f->oncpu == 0 && f->provider_data[ONCPU_BPF_PD_SWITCH_OUT] == 0,
	          "the never-armed page was written");
	close(cmd[1]);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
}

/* 3. The worker's arm word loses the nonce: its block is not written. */
static void nonce(void)
{
	command(W_PULSE);
	uint64_t out0 = bpftest_pd(w.blk, ONCPU_BPF_PD_SWITCH_OUT);
	worker_switches(5);
	CHECK_MSG(bpftest_pd(w.blk, ONCPU_BPF_PD_SWITCH_OUT) > out0, "the worker is not tracked");
	uint64_t armed = bpftest_pd(w.blk, ONCPU_BPF_PD_ARM);
	CHECK_MSG(armed & 1, "the worker's arm word 0x%llx is not armed",
	          (unsigned long long)armed);
	/* Same element, same page; another value in the arm word. */
	__atomic_store_n(&w.blk->provider_data[ONCPU_BPF_PD_ARM], armed ^ 0x10, __ATOMIC_RELAXED);
	worker_switches(1);
	out0 = bpftest_pd(w.blk, ONCPU_BPF_PD_SWITCH_OUT);
	worker_switches(20);
	uint64_t out1 = bpftest_pd(w.blk, ONCPU_BPF_PD_SWITCH_OUT);
	printf("3. arm word without the nonce: %llu switch-outs written in the next 20 switches\n",
	       (unsigned long long)(out1 - out0));
	CHECK_MSG(out1 == out0, "a block without the armed nonce was written");
}

/* Whether part `name` runs (all when no part is named). */
static bool part(int argc, char **argv, const char *name)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return true;
	return argc < 2;
}

int main(int argc, char **argv)
{
	bpftest_require_loaded();
	CHECK_MSG(strcmp(oncpu_desched_provider(), "bpf") == 0, "provider %s",
	          oncpu_desched_provider());
	/* Main's own block (the mutex holder's word must be tracked). */
	bpftest_block();
	pthread_t t;
	CHECK(pthread_create(&t, NULL, worker, NULL) == 0);
	while (!__atomic_load_n(&w.tid, __ATOMIC_ACQUIRE))
		usleep(1000);

	if (part(argc, argv, "lost")) {
		lost("deleted", NULL);
		lost("replaced", fake_block());
	}
	if (part(argc, argv, "drop"))
		never_armed();
	if (part(argc, argv, "nonce"))
		nonce();

	command(W_QUIT);
	CHECK(pthread_join(t, NULL) == 0);
	printf("ok\n");
	return 0;
}
