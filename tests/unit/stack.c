/* SPDX-License-Identifier: MIT */
/*
 * unit/stack.c - every function of oncpu/stack.h, in both indexings:
 * LIFO order on one CPU, empty pops, pop_cpu from another CPU, drain,
 * bad input (NULL, bad CPU, bad flags, NULL push aborts), memory of unused
 * CPUs left uncommitted, and a thread without rseq sharing lists with
 * threads that have it (mixed process).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <oncpu.h>

#include "testutil.h"

#define POSSIBLE 64 /* ONCPU_POSSIBLE_CPUS: slots for CPUs that never run here */

struct item {
	struct oncpu_stack_node link;
	int id;
};

static int ncpus;

/* The index a list is selected by, for the calling thread, right now. */
static int my_index(struct oncpu_stack *s)
{
	return s->_mode == _oncpu_mode_ONCPU_VCPU ? oncpu_vcpu() : oncpu_cpu();
}

/* Run fn in a child; it must die of SIGABRT after printing `expect`. */
static void expect_abort(void (*fn)(void *), void *arg, const char *expect)
{
	int fds[2];
	CHECK(pipe(fds) == 0);
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 2);
		fn(arg);
		_exit(0);
	}
	close(fds[1]);
	char buf[4096] = {0};
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(buf) - 1 && (r = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	close(fds[0]);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "child status %#x, said: %s",
	          status, buf);
	CHECK_MSG(strstr(buf, expect), "child said \"%s\", expected \"%s\"", buf, expect);
}

static void push_null_stack(void *arg)
{
	oncpu_stack_push(NULL, arg);
}

static void push_null_node(void *arg)
{
	oncpu_stack_push(arg, NULL);
}

static void test_bad_input(void)
{
	struct item it;
	CHECK_ERRNO(oncpu_stack_new_flags(2), EINVAL);
	CHECK_ERRNO(oncpu_stack_new_flags(~0u), EINVAL);
	CHECK_ERRNO(oncpu_stack_pop(NULL), EINVAL);
	CHECK_ERRNO(oncpu_stack_drain(NULL), EINVAL);
	CHECK_ERRNO(oncpu_stack_pop_cpu(NULL, 0), EINVAL);
	struct oncpu_stack *s = oncpu_stack_new();
	CHECK(s);
	CHECK_ERRNO(oncpu_stack_pop_cpu(s, -1), EINVAL);
	CHECK_ERRNO(oncpu_stack_pop_cpu(s, oncpu_cpu_count()), EINVAL);
	CHECK_ERRNO(oncpu_stack_pop_cpu(s, 1 << 30), EINVAL);
	expect_abort(push_null_stack, &it.link, "oncpu_stack_push");
	expect_abort(push_null_node, s, "NULL argument");
	/* Empty pops: NULL, errno untouched. */
	errno = 12345;
	CHECK(oncpu_stack_pop(s) == NULL && errno == 12345);
	CHECK(oncpu_stack_pop_cpu(s, 0) == NULL && errno == 12345);
	CHECK(oncpu_stack_drain(s) == NULL && errno == 12345);
	oncpu_stack_destroy(s);
	oncpu_stack_destroy(NULL);
}

/* Push 100 nodes on one CPU: they come back last-in first-out. */
static void test_lifo(unsigned flags)
{
	struct item items[100];
	struct oncpu_stack *s = oncpu_stack_new_flags(flags);
	CHECK(s);
	CHECK(test_pinned(0));
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 100; i++) {
			items[i].id = i;
			oncpu_stack_push(s, &items[i].link);
		}
		for (int i = 99; i >= 0; i--) {
			struct oncpu_stack_node *n = oncpu_stack_pop(s);
			CHECK_MSG(n == &items[i].link, "round %d: expected node %d, got %p", round,
			          i, (void *)n);
		}
		CHECK(oncpu_stack_pop(s) == NULL);
	}
	/* Interleaved. */
	oncpu_stack_push(s, &items[0].link);
	oncpu_stack_push(s, &items[1].link);
	CHECK(oncpu_stack_pop(s) == &items[1].link);
	oncpu_stack_push(s, &items[2].link);
	CHECK(oncpu_stack_pop(s) == &items[2].link);
	CHECK(oncpu_stack_pop(s) == &items[0].link);
	CHECK(oncpu_stack_pop(s) == NULL);
	test_unpin();
	oncpu_stack_destroy(s);
}

/* Lists are per CPU: a node pushed on CPU 0 is not popped on CPU 1, but
 * pop_cpu and drain reach it. */
static void test_per_cpu(unsigned flags)
{
	struct item items[8];
	struct oncpu_stack *s = oncpu_stack_new_flags(flags);
	CHECK(s);
	CHECK(test_pinned(0));
	int idx0 = my_index(s);
	for (int i = 0; i < 4; i++)
		oncpu_stack_push(s, &items[i].link);
	/* pop_cpu on the list of the CPU we run on (one section). */
	CHECK(oncpu_stack_pop_cpu(s, idx0) == &items[3].link);
	if (ncpus > 1) {
		CHECK(test_pinned(1));
		int idx1 = my_index(s);
		if (idx1 != idx0) {
			CHECK(oncpu_stack_pop(s) == NULL);
			for (int i = 4; i < 8; i++)
				oncpu_stack_push(s, &items[i].link);
			/* From CPU 1, take from list idx0: the locked path. */
			CHECK(oncpu_stack_pop_cpu(s, idx0) == &items[2].link);
			CHECK(oncpu_stack_pop(s) == &items[7].link);
		} else {
			/* vcpu of a lone thread follows it: same list. */
			CHECK(oncpu_stack_pop(s) == &items[2].link);
			CHECK(oncpu_stack_pop_cpu(s, idx1) == &items[1].link);
			oncpu_stack_push(s, &items[1].link);
			for (int i = 4; i < 7; i++)
				oncpu_stack_push(s, &items[i].link);
		}
	} else {
		CHECK(oncpu_stack_pop(s) == &items[2].link);
		for (int i = 4; i < 7; i++)
			oncpu_stack_push(s, &items[i].link);
	}
	/* Drain: the five remaining nodes, each once. */
	int seen[8] = {0}, count = 0;
	for (struct oncpu_stack_node *n = oncpu_stack_drain(s); n; n = n->next) {
		long i = (struct item *)n - items;
		CHECK(i >= 0 && i < 8 && seen[i]++ == 0);
		count++;
	}
	CHECK_MSG(count == 5, "drain returned %d nodes", count);
	CHECK(oncpu_stack_drain(s) == NULL);
	for (int c = 0; c < oncpu_cpu_count(); c++)
		CHECK(oncpu_stack_pop_cpu(s, c) == NULL);
	test_unpin();
	oncpu_stack_destroy(s);
}

/* Kilobytes of anonymous memory committed in the mapping that holds p
 * (reads of untouched pages map the shared zero page, which is not counted). */
static long committed_kb(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	CHECK(f);
	char line[512];
	bool in = false;
	long kb = -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' '))
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
		else if (in && sscanf(line, "Anonymous: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	CHECK(kb >= 0);
	return kb;
}

/* Slots of CPUs that never used the stack stay uncommitted, even after
 * drain and pop_cpu visited every CPU. */
static void test_memory(void)
{
	struct item it;
	struct oncpu_stack *s = oncpu_stack_new();
	CHECK(s);
	CHECK(oncpu_cpu_count() == POSSIBLE);
	oncpu_stack_push(s, &it.link);
	CHECK(oncpu_stack_drain(s) == &it.link);
	for (int c = 0; c < POSSIBLE; c++)
		CHECK(oncpu_stack_pop_cpu(s, c) == NULL);
	long kb = committed_kb(s->_pcpu), limit = (long)ncpus * (long)(ONCPU_PERCPU_STRIDE / 1024);
	CHECK_MSG(kb <= limit, "%ld KiB committed for %d CPUs that ran (at most %ld)", kb, ncpus,
	          limit);
	oncpu_stack_destroy(s);
}

/*
 * The guarded operations of oncpu/cs.h (the lock-word protocol of
 * doc/slot-protocol.md) must read the guard before anything else: with the guard
 * failing, none of them may touch the data word, here on a PROT_NONE page
 * (reading it first would fault).
 */
static void test_guard_first(void)
{
	long page = sysconf(_SC_PAGESIZE);
	intptr_t *none = mmap(NULL, (size_t)page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(none != MAP_FAILED);
	intptr_t guard = 1, load = 0, word = 0, buf[2];
	for (int op = 0; op < 5; op++) {
		int r;
		do {
			int id = oncpu_cs_id(ONCPU_CPU);
			CHECK(id >= 0);
			switch (op) {
			case 0:
				r = oncpu_cs_cmpeq_cmpeq_store(ONCPU_CPU, &guard, 0, none, 0, 1,
				                               id);
				break;
			case 1:
				r = oncpu_cs_cmpeq_cmpne_load_off_store(ONCPU_CPU, &guard, 0, none,
				                                        0, 0, &load, id);
				break;
			case 2:
				r = oncpu_cs_cmpeq_cmpeq_trystore_store(
				    ONCPU_CPU, ONCPU_RELEASE, &guard, 0, none, 0, &word, 1, 1, id);
				break;
			case 3:
				r = oncpu_cs_cmpeq_cmpeq_load_store(ONCPU_CPU, &guard, 0, none, 0,
				                                    none, &load, 1, id);
				break;
			default:
				r = oncpu_cs_cmpeq_cmpeq_memcpy_store(ONCPU_CPU, ONCPU_RELAXED,
				                                      &guard, 0, none, 0, buf, none,
				                                      sizeof(buf), 1, id);
				break;
			}
		} while (r == ONCPU_CS_ABORTED);
		CHECK_MSG(r == ONCPU_CS_CMPFAIL, "guarded op %d: %d", op, r);
	}
	CHECK(word == 0 && load == 0);
	munmap(none, (size_t)page);
}

/* ---- mixed process: a thread without rseq beside threads with it ---- */

struct mixed {
	struct oncpu_stack *s;
	struct item *items;
	int n, list; /* the list the rseq thread pushed to */
	bool ok;
};

static void *fallback_thread(void *arg)
{
	struct mixed *m = arg;
	m->ok = test_leave_rseq() && oncpu_thread_init() == -1 && test_pinned(0);
	if (!m->ok)
		return NULL;
	/* Pops what the rseq thread pushed (CPU indexing: on this CPU's list;
	 * vCPU: on list m->list, through pop_cpu and membarrier), pushes. */
	for (int i = 0; i < m->n; i++) {
		struct oncpu_stack_node *n = m->s->_mode == _oncpu_mode_ONCPU_CPU
		                                 ? oncpu_stack_pop(m->s)
		                                 : oncpu_stack_pop_cpu(m->s, m->list);
		m->ok &= n == &m->items[m->n - 1 - i].link;
	}
	m->ok &= oncpu_stack_pop_cpu(m->s, m->list) == NULL;
	for (int i = 0; i < m->n; i++)
		oncpu_stack_push(m->s, &m->items[i].link);
	return NULL;
}

static void test_mixed(unsigned flags)
{
	struct item items[16];
	struct mixed m = {oncpu_stack_new_flags(flags), items, 16, 0, false};
	CHECK(m.s);
	CHECK(test_pinned(0));
	m.list = my_index(m.s);
	for (int i = 0; i < m.n; i++)
		oncpu_stack_push(m.s, &items[i].link);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, fallback_thread, &m) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_MSG(m.ok, "the thread without rseq did not see the rseq thread's nodes in order");
	/* The fallback thread ran on CPU 0: for CPU indexing its nodes are
	 * on list 0; for vCPU indexing on the list of its CPU number. */
	int count = 0;
	if (flags == 0) {
		for (int i = m.n - 1; i >= 0; i--, count++)
			CHECK(oncpu_stack_pop(m.s) == &items[i].link);
	} else {
		for (struct oncpu_stack_node *n = oncpu_stack_drain(m.s); n; n = n->next)
			count++;
	}
	CHECK(count == m.n);
	test_unpin();
	oncpu_stack_destroy(m.s);
}

/*
 * A signal handler that uses a vCPU stack while the thread it interrupted,
 * one with sections, holds the lock of its list: the list stays parked
 * (doc/slot-protocol.md, step 4) because a thread without rseq keeps using it, so
 * the interrupted push or pop takes the lock word. The handler must not
 * wait for its own thread (it uses another list); a watchdog fails the
 * test if it does: no signal handled for SIG_WATCHDOG_S seconds (a count,
 * not a deadline for all of them: an emulated CPU handles them slowly).
 */
#define SIG_WATCHDOG_S 20
static struct {
	struct oncpu_stack *s;
	struct item items[4]; /* main thread, thread without rseq, spare, handler */
	atomic_bool stop, lost;
	atomic_long handled;
	pthread_t main_thread;
	int cpu;
	bool ok;
} sig;

/* Pushes its own node and pops it back: nothing else runs on this CPU
 * meanwhile, and push and pop of the handler pick the same list. */
static void sig_handler(int signo)
{
	(void)signo;
	oncpu_stack_push(sig.s, &sig.items[3].link);
	if (oncpu_stack_pop(sig.s) != &sig.items[3].link)
		atomic_store(&sig.lost, true);
	atomic_fetch_add(&sig.handled, 1);
}

static void *sig_fallback_thread(void *arg)
{
	(void)arg;
	sig.ok = test_leave_rseq() && test_pinned(sig.cpu);
	struct oncpu_stack_node *mine = &sig.items[1].link;
	while (sig.ok && !atomic_load(&sig.stop)) {
		oncpu_stack_push(sig.s, mine);
		mine = oncpu_stack_pop(sig.s);
		if (!mine) /* the main thread took it: use the spare it left */
			mine = oncpu_stack_pop_cpu(sig.s, sig.cpu);
		if (!mine)
			for (struct oncpu_stack_node *l = oncpu_stack_drain(sig.s); l; l = l->next)
				mine = l; /* one of them; the rest is lost to the count */
		CHECK(mine);
		sched_yield(); /* to the main thread, on the same CPU */
	}
	oncpu_stack_push(sig.s, mine);
	return NULL;
}

/* SIGALRM: fails the test when no handler returned since the last alarm. */
static void sig_watchdog(int signo)
{
	static long last = -1;
	(void)signo;
	long now = atomic_load(&sig.handled);
	if (now == last) {
		static const char msg[] = "unit.stack: a watchdog period without a handled "
		                          "signal: a handler waits for its own thread\n";
		(void)!write(2, msg, sizeof(msg) - 1);
		_exit(1);
	}
	last = now;
	alarm(SIG_WATCHDOG_S);
}

/* On another CPU: signals that land anywhere in the main thread's loop. */
static void *sig_sender_thread(void *arg)
{
	(void)arg;
	CHECK(test_pinned(sig.cpu == 0 ? 1 : 0));
	while (!atomic_load(&sig.stop)) {
		pthread_kill(sig.main_thread, SIGUSR1);
		for (volatile int i = 0; i < 2000; i++)
			;
	}
	return NULL;
}

static void test_signal_on_parked_list(void)
{
	CHECK(sig.s = oncpu_stack_new_flags(ONCPU_F_VCPU));
	CHECK(test_pinned(0));
	sig.cpu = oncpu_vcpu();
	if (ncpus < 2 || sig.cpu >= ncpus || !test_pinned(sig.cpu)) {
		printf("unit.stack: needs CPUs 0 and 1 and vcpu %d one of them: signal test "
		       "skipped\n",
		       sig.cpu);
		oncpu_stack_destroy(sig.s);
		test_unpin();
		return;
	}
	struct sigaction sa = {.sa_handler = sig_handler}, old;
	CHECK(sigaction(SIGUSR1, &sa, &old) == 0);
	struct sigaction wd = {.sa_handler = sig_watchdog}, old_wd;
	CHECK(sigaction(SIGALRM, &wd, &old_wd) == 0);
	alarm(SIG_WATCHDOG_S);
	oncpu_stack_push(sig.s, &sig.items[2].link);
	struct oncpu_stack_node *mine = &sig.items[0].link;
	sig.main_thread = pthread_self();
	pthread_t t, sender;
	CHECK(pthread_create(&t, NULL, sig_fallback_thread, NULL) == 0);
	CHECK(pthread_create(&sender, NULL, sig_sender_thread, NULL) == 0);
	for (long i = 0; atomic_load(&sig.handled) < 20000 && i < 100000000; i++) {
		oncpu_stack_push(sig.s, mine);
		while (!(mine = oncpu_stack_pop(sig.s)))
			for (int c = 0; c < POSSIBLE && !mine; c++)
				mine = oncpu_stack_pop_cpu(sig.s, c);
		if (i % 256 == 0)
			sched_yield(); /* the thread without rseq keeps the list parked */
	}
	atomic_store(&sig.stop, true);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK(pthread_join(sender, NULL) == 0);
	alarm(0);
	CHECK(sigaction(SIGALRM, &old_wd, NULL) == 0);
	CHECK(sigaction(SIGUSR1, &old, NULL) == 0);
	CHECK_MSG(sig.ok, "the helper thread could not leave rseq or run on CPU %d", sig.cpu);
	CHECK_MSG(!atomic_load(&sig.lost), "a handler did not pop the node it pushed");
	oncpu_stack_push(sig.s, mine);
	int count = 0;
	for (struct oncpu_stack_node *n = oncpu_stack_drain(sig.s); n; n = n->next)
		count++;
	CHECK_MSG(count == 3, "%d of 3 nodes on the stack", count);
	printf("unit.stack: %ld signals handled on a parked list\n", atomic_load(&sig.handled));
	CHECK(atomic_load(&sig.handled) > 0);
	test_unpin();
	oncpu_stack_destroy(sig.s);
}

int main(void)
{
	char buf[16];
	snprintf(buf, sizeof(buf), "%d", POSSIBLE);
	setenv("ONCPU_POSSIBLE_CPUS", buf, 1); /* before the first oncpu call */
	cpu_set_t set;
	CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
	ncpus = CPU_COUNT(&set);
	CHECK(CPU_ISSET(0, &set) && (ncpus == 1 || CPU_ISSET(1, &set)));
	CHECK_MSG(oncpu_thread_rseq_active() == test_expect_rseq(), "mode %s but rseq %s",
	          test_mode(), oncpu_thread_rseq_active() ? "active" : "inactive");

	test_bad_input();
	test_lifo(0);
	test_lifo(ONCPU_F_VCPU);
	test_per_cpu(0);
	test_per_cpu(ONCPU_F_VCPU);
	test_memory();
	if (test_expect_rseq()) {
		test_guard_first();
		test_mixed(0);
		test_mixed(ONCPU_F_VCPU);
		test_signal_on_parked_list();
	}
	printf("unit.stack [%s]: ok\n", test_mode());
	return 0;
}
