/* SPDX-License-Identifier: MIT */
/*
 * bpf_oncpu.c - the bpf provider tracks a thread's on-CPU state.
 *
 * A worker alternates sleeping and spinning; an observer on another CPU reads
 * the worker's state through its token. While the worker sleeps the state
 * must read "off CPU", while it spins "on CPU" (a few samples may see a real
 * preemption), and the worker must always see itself running. An "off"
 * sample while the worker spins must fall into a gap of the worker's own
 * clock readings (it really was switched out then: the machine may be busy).
 * The provider's count of the worker's switch-outs must match the kernel's
 * own count in /proc/self/task/TID/status.
 * Then the registration's life: a thread that exits without unregistering
 * (no destructor runs) is cleaned up by the exit program and reads "off"; a
 * registered thread that calls exec is cleaned up by the exec program; a
 * fork child's thread is registered anew and tracked.
 */
#define _GNU_SOURCE
#include <time.h>

#include "bpftest.h"

#define ROUNDS      150  /* at least; more while the observer lacks samples */
#define MAX_ROUNDS  5000 /* a machine too busy to give the observer any time */
#define MIN_SAMPLES 2000
#define SLEEP_NS    3000000ULL
#define BUSY_NS     3000000ULL
#define MARGIN_NS   300000ULL /* after the phase starts, and before it ends */
#define GAP_NS      1500      /* a longer pause between two clock readings */
#define TOL_NS      3000      /* write and cache-line propagation delay */
#define MAX_REC     200000

/* Times the worker did not run while spinning, and "off" samples. */
struct span {
	uint64_t lo, hi;
};
static struct span gaps[MAX_REC], offs[MAX_REC];
static long ngaps, noffs;

enum { PH_INIT, PH_SLEEP, PH_BUSY, PH_DONE };

static struct {
	oncpu_desched_token_t token;
	long samples_sleep, samples_busy; /* published by the observer */
	int rounds;
	long repaired;
	/* phase in the low byte, round above it: a sample is kept only when
	 * the word is the same before and after it. */
	uint64_t phase;
	uint64_t start_ns;
	int cpu_worker, cpu_observer;
	long self_off; /* worker saw itself off CPU (must stay 0) */
	long ctxsw, sw_out, sw_in;
} g;

static void set_phase(int round, int ph)
{
	__atomic_store_n(&g.start_ns, bpftest_now_ns(), __ATOMIC_RELAXED);
	__atomic_store_n(&g.phase, (uint64_t)round << 8 | (uint64_t)ph, __ATOMIC_RELEASE);
}

static void *worker(void *arg)
{
	(void)arg;
	test_pin(g.cpu_worker);
	struct _oncpu_desched_block *b = bpftest_block();
	g.token = oncpu_desched_self();
	CHECK_MSG(oncpu_desched_state(g.token) == ONCPU_DESCHED_ON_CPU, "state %d",
	          oncpu_desched_state(g.token));
	pid_t tid = (pid_t)syscall(SYS_gettid);
	long c0 = bpftest_ctxsw(tid);
	uint64_t o0 = bpftest_pd(b, ONCPU_BPF_PD_SWITCH_OUT),
	         i0 = bpftest_pd(b, ONCPU_BPF_PD_SWITCH_IN);
	uint64_t p0 = bpftest_pd(b, ONCPU_BPF_PD_REPAIRED);
	int r;
	for (r = 1; r <= MAX_ROUNDS; r++) {
		if (r > ROUNDS &&
		    __atomic_load_n(&g.samples_sleep, __ATOMIC_RELAXED) >= MIN_SAMPLES &&
		    (__atomic_load_n(&g.samples_busy, __ATOMIC_RELAXED) >= MIN_SAMPLES ||
		     g.cpu_worker == g.cpu_observer))
			break;
		set_phase(r, PH_SLEEP);
		struct timespec ts = {0, (long)SLEEP_NS};
		nanosleep(&ts, NULL);
		set_phase(r, PH_BUSY);
		uint64_t prev = bpftest_now_ns(), end = prev + BUSY_NS;
		for (;;) {
			if (oncpu_desched_state(g.token) != ONCPU_DESCHED_ON_CPU)
				g.self_off++;
			uint64_t t = bpftest_now_ns();
			if (t - prev > GAP_NS && ngaps < MAX_REC)
				gaps[ngaps++] = (struct span){prev, t};
			prev = t;
			if (t >= end)
				break;
		}
	}
	g.rounds = r - 1;
	set_phase(r, PH_DONE);
	/* Read the provider's counts first: reading /proc may sleep. */
	g.sw_out = (long)(bpftest_pd(b, ONCPU_BPF_PD_SWITCH_OUT) - o0);
	g.sw_in = (long)(bpftest_pd(b, ONCPU_BPF_PD_SWITCH_IN) - i0);
	g.repaired = (long)(bpftest_pd(b, ONCPU_BPF_PD_REPAIRED) - p0);
	g.ctxsw = bpftest_ctxsw(tid) - c0;
	return NULL;
}

/* A registered thread that leaves through SYS_exit: no destructor runs. */
static void *raw_exit_thread(void *arg)
{
	struct _oncpu_desched_block **out = arg;
	*out = bpftest_block();
	__atomic_store_n(&g.phase, 1, __ATOMIC_RELEASE);
	usleep(1000);
	syscall(SYS_exit, 0);
	return NULL;
}

static void lifetimes(void)
{
	/* exit */
	long long exit0 = bpftest_stat(ONCPU_BPF_STAT_EXIT);
	struct _oncpu_desched_block *b = NULL;
	g.phase = 0;
	pthread_t t;
	CHECK(pthread_create(&t, NULL, raw_exit_thread, &b) == 0);
	while (!__atomic_load_n(&g.phase, __ATOMIC_ACQUIRE))
		usleep(100);
	oncpu_desched_token_t tok = ((uint64_t)b->gen << 32) | b->index;
	/* The kernel clears the thread id at exit: join works without glibc's
	 * exit path. */
	CHECK(pthread_join(t, NULL) == 0);
	usleep(1000);
	CHECK_MSG(bpftest_stat(ONCPU_BPF_STAT_EXIT) > exit0, "no registration removed at exit");
	CHECK_MSG(__atomic_load_n(&b->oncpu, __ATOMIC_ACQUIRE) == ONCPU_DESCHED_WORD_OFF,
	          "an exited thread's word reads %u", b->oncpu);
	CHECK(oncpu_desched_state(tok) == ONCPU_DESCHED_OFF_CPU);
	printf("a registered thread leaving through SYS_exit: registration removed, word off\n");

	/* exec */
	long long exec0 = bpftest_stat(ONCPU_BPF_STAT_EXEC);
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		bpftest_block();
		if (strcmp(oncpu_desched_provider(), "bpf") != 0)
			_exit(3);
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK_MSG(bpftest_stat(ONCPU_BPF_STAT_EXEC) > exec0, "no registration removed at exec");
	printf("a registered thread calling exec: registration removed\n");

	/* fork: the child's thread registers anew (its task has no storage) */
	struct _oncpu_desched_block *me = bpftest_block();
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		uint64_t o0 = bpftest_pd(me, ONCPU_BPF_PD_SWITCH_OUT);
		for (int i = 0; i < 20; i++)
			usleep(1000);
		uint64_t o1 = bpftest_pd(me, ONCPU_BPF_PD_SWITCH_OUT);
		_exit(o1 >= o0 + 10 && (bpftest_pd(me, ONCPU_BPF_PD_ARM) & 1) ? 0 : 4);
	}
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork child not tracked: %s",
	          test_status_str(st));
	printf("a fork child's thread: registered anew and tracked\n");
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(void)
{
	bpftest_require_loaded();
	CHECK_MSG(strcmp(oncpu_desched_provider(), "bpf") == 0,
	          "provider is %s, expected bpf (ONCPU_DESCHED_PROVIDER=bpf, pin dir %s)",
	          oncpu_desched_provider(), bpftest_pin_dir());
	const cpu_set_t *allowed = test_allowed_cpus();
	int cpus[2] = {-1, -1}, n = 0;
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, allowed))
			cpus[n++] = c;
	g.cpu_worker = cpus[0];
	g.cpu_observer = n > 1 ? cpus[1] : cpus[0];
	bool busy_checked = n > 1;

	long long repaired0 = bpftest_stat(ONCPU_BPF_STAT_REPAIRED);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, worker, NULL) == 0);
	test_pin(g.cpu_observer);
	/* As root: the observer must get its samples even on a busy machine. */
	struct sched_param sp = {.sched_priority = 1};
	bool fifo = busy_checked && sched_setscheduler(0, SCHED_FIFO, &sp) == 0;

	long sleep_off = 0, sleep_on = 0, busy_on = 0, busy_off = 0;
	static uint64_t lat[MAX_ROUNDS + 2];
	int lat_n = 0;
	uint64_t last_round_seen = 0;
	for (;;) {
		uint64_t ph = __atomic_load_n(&g.phase, __ATOMIC_ACQUIRE);
		if ((ph & 0xff) == PH_DONE)
			break;
		uint64_t start = __atomic_load_n(&g.start_ns, __ATOMIC_RELAXED);
		uint64_t before = bpftest_now_ns();
		int st = oncpu_desched_state(g.token);
		uint64_t now = bpftest_now_ns();
		if (__atomic_load_n(&g.phase, __ATOMIC_ACQUIRE) != ph)
			continue;
		if ((ph & 0xff) == PH_SLEEP) {
			/* How long after the worker went to sleep the observer first
			 * saw it off CPU (once per round). */
			if (st == ONCPU_DESCHED_OFF_CPU && (ph >> 8) != last_round_seen) {
				last_round_seen = ph >> 8;
				if (lat_n < MAX_ROUNDS + 2)
					lat[lat_n++] = now - start;
			}
			if (now - start < MARGIN_NS || now - start > SLEEP_NS - MARGIN_NS)
				continue;
			st == ONCPU_DESCHED_OFF_CPU ? sleep_off++ : sleep_on++;
			__atomic_store_n(&g.samples_sleep, sleep_off + sleep_on, __ATOMIC_RELAXED);
		} else if ((ph & 0xff) == PH_BUSY && busy_checked) {
			if (now - start < MARGIN_NS || now - start > BUSY_NS - MARGIN_NS)
				continue;
			if (st == ONCPU_DESCHED_ON_CPU) {
				busy_on++;
				__atomic_store_n(&g.samples_busy, busy_on + busy_off,
				                 __ATOMIC_RELAXED);
			} else {
				busy_off++;
				if (noffs < MAX_REC)
					offs[noffs++] = (struct span){before, now};
			}
		}
	}
	CHECK(pthread_join(t, NULL) == 0);
	if (fifo) {
		struct sched_param other = {.sched_priority = 0};
		CHECK(sched_setscheduler(0, SCHED_OTHER, &other) == 0);
	}
	test_unpin();
	long long repaired = bpftest_stat(ONCPU_BPF_STAT_REPAIRED) - repaired0;
	/* Each "off" sample while spinning must overlap a gap (both sorted). */
	long unexplained = 0;
	for (long i = 0, j = 0; i < noffs; i++) {
		while (j < ngaps && gaps[j].hi + TOL_NS < offs[i].lo)
			j++;
		if (j == ngaps || gaps[j].lo > offs[i].hi + TOL_NS)
			unexplained++;
	}

	printf("worker CPU %d, observer CPU %d (%s), %d rounds\n", g.cpu_worker, g.cpu_observer,
	       fifo ? "SCHED_FIFO" : "SCHED_OTHER", g.rounds);
	printf("sleeping: %ld samples off CPU, %ld on CPU\n", sleep_off, sleep_on);
	if (busy_checked)
		printf(
		    "spinning: %ld samples on CPU, %ld off CPU (%ld of them while the worker was "
		    "not running, %ld unexplained)\n",
		    busy_on, busy_off, busy_off - unexplained, unexplained);
	else
		printf("spinning: not checked (one CPU: the observer only runs while the worker "
		       "does not)\n");
	if (lat_n) {
		qsort(lat, (size_t)lat_n, sizeof(lat[0]), cmp_u64);
		printf(
		    "off CPU seen by the observer %.1f us (median of %d) after the worker started "
		    "to sleep\n",
		    (double)lat[lat_n / 2] / 1e3, lat_n);
	}
	printf(
	    "switch-outs: provider %ld, /proc %ld; switch-ins: provider %ld, %ld more repaired at "
	    "the return to user space (all threads: %lld)\n",
	    g.sw_out, g.ctxsw, g.sw_in, g.repaired, repaired);

	CHECK_MSG(g.self_off == 0, "the worker saw itself off CPU %ld times", g.self_off);
	CHECK_MSG(sleep_off + sleep_on > 100, "too few samples while sleeping (%ld)",
	          sleep_off + sleep_on);
	CHECK_MSG(sleep_on * 100 <= sleep_off + sleep_on,
	          "on CPU while sleeping in %ld of %ld samples", sleep_on, sleep_off + sleep_on);
	if (busy_checked) {
		CHECK_MSG(busy_on + busy_off > 100, "too few samples while spinning (%ld)",
		          busy_on + busy_off);
		CHECK_MSG(unexplained * 1000 <= busy_on + busy_off,
		          "off CPU while running in %ld of %ld samples", unexplained,
		          busy_on + busy_off);
	}
	/* Every switch-out of the worker is a sched_switch with it as prev. */
	long diff = labs(g.sw_out - g.ctxsw);
	CHECK_MSG(g.ctxsw >= ROUNDS, "the worker switched only %ld times", g.ctxsw);
	CHECK_MSG(diff <= 2 + g.ctxsw / 50, "provider %ld switch-outs, /proc %ld", g.sw_out,
	          g.ctxsw);
	/* A switch-in that sched_switch did not show is repaired on the way
	 * back to user space, and counted there instead. */
	CHECK_MSG(labs(g.sw_in + g.repaired - g.sw_out) <= 2,
	          "switch-ins %ld (+%ld repaired), switch-outs %ld", g.sw_in, g.repaired, g.sw_out);
	lifetimes();
	printf("ok\n");
	return 0;
}
