/* SPDX-License-Identifier: MIT */
/*
 * bpf_oncpu.c - the bpf provider tracks a thread's on-CPU state.
 *
 * A worker alternates sleeping and spinning; an observer on another CPU reads
 * the worker's state through its token. While the worker sleeps the state
 * must read "off CPU", while it spins "on CPU" (a few samples may see a real
 * preemption), and the worker must always see itself running. The
 * provider's count of the worker's switch-outs must match the kernel's own
 * count in /proc/self/task/TID/status.
 */
#define _GNU_SOURCE
#include <time.h>

#include "bpftest.h"

#define ROUNDS 150
#define SLEEP_NS 3000000ULL
#define BUSY_NS 3000000ULL
#define MARGIN_NS 300000ULL /* after the phase starts, and before it ends */

enum { PH_INIT, PH_SLEEP, PH_BUSY, PH_DONE };

static struct {
	oncpu_desched_token_t token;
	/* phase in the low byte, round above it: a sample is kept only when
	 * the word is the same before and after it. */
	uint64_t phase;
	uint64_t start_ns;
	int cpu_worker, cpu_observer;
	long self_off;     /* worker saw itself off CPU (must stay 0) */
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
	uint64_t o0 = bpftest_pd(b, ONCPU_BPF_PD_SWITCH_OUT), i0 = bpftest_pd(b, ONCPU_BPF_PD_SWITCH_IN);
	for (int r = 1; r <= ROUNDS; r++) {
		set_phase(r, PH_SLEEP);
		struct timespec ts = {0, (long)SLEEP_NS};
		nanosleep(&ts, NULL);
		set_phase(r, PH_BUSY);
		uint64_t end = bpftest_now_ns() + BUSY_NS;
		while (bpftest_now_ns() < end)
			if (oncpu_desched_state(g.token) != ONCPU_DESCHED_ON_CPU)
				g.self_off++;
	}
	set_phase(ROUNDS + 1, PH_DONE);
	/* Read the provider's counts first: reading /proc may sleep. */
	g.sw_out = (long)(bpftest_pd(b, ONCPU_BPF_PD_SWITCH_OUT) - o0);
	g.sw_in = (long)(bpftest_pd(b, ONCPU_BPF_PD_SWITCH_IN) - i0);
	g.ctxsw = bpftest_ctxsw(tid) - c0;
	return NULL;
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

	long sleep_off = 0, sleep_on = 0, busy_on = 0, busy_off = 0;
	uint64_t lat_sum = 0, lat_n = 0, lat_max = 0;
	uint64_t last_round_seen = 0;
	for (;;) {
		uint64_t ph = __atomic_load_n(&g.phase, __ATOMIC_ACQUIRE);
		if ((ph & 0xff) == PH_DONE)
			break;
		uint64_t start = __atomic_load_n(&g.start_ns, __ATOMIC_RELAXED);
		int st = oncpu_desched_state(g.token);
		uint64_t now = bpftest_now_ns();
		if (__atomic_load_n(&g.phase, __ATOMIC_ACQUIRE) != ph)
			continue;
		if ((ph & 0xff) == PH_SLEEP) {
			/* How long after the worker went to sleep the observer first
			 * saw it off CPU (once per round). */
			if (st == ONCPU_DESCHED_OFF_CPU && (ph >> 8) != last_round_seen) {
				uint64_t lat = now - start;
				last_round_seen = ph >> 8;
				lat_sum += lat, lat_n++;
				if (lat > lat_max)
					lat_max = lat;
			}
			if (now - start < MARGIN_NS || now - start > SLEEP_NS - MARGIN_NS)
				continue;
			st == ONCPU_DESCHED_OFF_CPU ? sleep_off++ : sleep_on++;
		} else if ((ph & 0xff) == PH_BUSY && busy_checked) {
			if (now - start < MARGIN_NS || now - start > BUSY_NS - MARGIN_NS)
				continue;
			st == ONCPU_DESCHED_ON_CPU ? busy_on++ : busy_off++;
		}
	}
	CHECK(pthread_join(t, NULL) == 0);
	long long repaired = bpftest_stat(ONCPU_BPF_STAT_REPAIRED) - repaired0;

	printf("worker CPU %d, observer CPU %d, %d rounds\n", g.cpu_worker, g.cpu_observer, ROUNDS);
	printf("sleeping: %ld samples off CPU, %ld on CPU\n", sleep_off, sleep_on);
	if (busy_checked)
		printf("spinning: %ld samples on CPU, %ld off CPU\n", busy_on, busy_off);
	else
		printf("spinning: not checked (one CPU: the observer only runs while the worker does not)\n");
	if (lat_n)
		printf("off CPU seen %.1f us (mean) / %.1f us (max) after the worker started to sleep\n",
		       (double)lat_sum / (double)lat_n / 1e3, (double)lat_max / 1e3);
	printf("switch-outs: provider %ld, /proc %ld; switch-ins: provider %ld; repaired by "
	       "rseq_update (all threads): %lld\n",
	       g.sw_out, g.ctxsw, g.sw_in, repaired);

	CHECK_MSG(g.self_off == 0, "the worker saw itself off CPU %ld times", g.self_off);
	CHECK_MSG(sleep_off + sleep_on > 100, "too few samples while sleeping (%ld)", sleep_off + sleep_on);
	CHECK_MSG(sleep_on * 100 <= sleep_off + sleep_on, "on CPU while sleeping in %ld of %ld samples",
		  sleep_on, sleep_off + sleep_on);
	if (busy_checked) {
		CHECK_MSG(busy_on + busy_off > 100, "too few samples while spinning (%ld)",
			  busy_on + busy_off);
		CHECK_MSG(busy_off * 20 <= busy_on + busy_off,
			  "off CPU while spinning in %ld of %ld samples", busy_off, busy_on + busy_off);
	}
	/* Every switch-out of the worker is a sched_switch with it as prev. */
	long diff = labs(g.sw_out - g.ctxsw);
	CHECK_MSG(g.ctxsw >= ROUNDS, "the worker switched only %ld times", g.ctxsw);
	CHECK_MSG(diff <= 2 + g.ctxsw / 50, "provider %ld switch-outs, /proc %ld", g.sw_out, g.ctxsw);
	CHECK_MSG(labs(g.sw_in - g.sw_out) <= 2, "switch-ins %ld, switch-outs %ld", g.sw_in, g.sw_out);
	printf("ok\n");
	return 0;
}
