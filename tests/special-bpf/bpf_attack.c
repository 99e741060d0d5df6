/* SPDX-License-Identifier: MIT */
/*
 * bpf_attack.c - a process can never make the bpf provider write into, or
 * report the scheduling of, another process's memory or threads.
 *
 * Two victim processes run (as root): V1 never uses oncpu; V2 uses it and is
 * registered and armed.
 *   0. A user outside the group that oncpu-bpfd load --group granted (user
 *      nobody, no groups) can neither write the reg map nor read the stats
 *      map, and its threads run untracked.
 * The attacker (this process, after dropping to user nobody, member of that
 * group, with no capabilities) does all that the pinned maps let it do:
 *   1. registers a page of its own for V1's thread (pidfd_open works on any
 *      thread it can see); the programs drop that never-armed registration
 *      after ONCPU_BPF_UNARMED_GRACE switch-outs of V1;
 *   2. replaces V2's own registration with another page of its own, whose
 *      arm word holds a guessed nonce;
 *   3. calls the arm function itself, with its own pages;
 *   4. registers its own block legitimately and then points its entries
 *      outside the allowed words (other memory of the block, misaligned,
 *      bad sizes, too many entries).
 * While the victims switch hundreds of times, the attacker's pages must not
 * change by a single byte (no event of a foreign thread reaches them), and
 * in 4. no byte of the block outside the on-CPU word, the user words and
 * the provider's counters may change. Replacing V2's registration stops
 * V2's notifications (a slowdown, documented), until V2 registers again:
 * the test checks that V2 then recovers.
 */
#define _GNU_SOURCE
#include <grp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include "bpftest.h"

extern void _oncpu_desched_bpf_arm(void *block);

/* ---- victims: fork+exec of this program with argv[1] = "victim1|2" ---- */

struct victim {
	pid_t pid, tid;
	int cmd_w, rep_r; /* commands to it, reports from it */
};

static void victim_main(int which, int cmd_r, int rep_w)
{
	/* Ends with the test, even when it fails (the pipes leak into both
	 * victims, so their ends never read EOF). */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);
	pid_t tid = (pid_t)syscall(SYS_gettid);
	struct _oncpu_desched_block *b = NULL;
	if (which == 2) {
		b = bpftest_block();
		CHECK_MSG(strcmp(oncpu_desched_provider(), "bpf") == 0, "victim provider %s",
		          oncpu_desched_provider());
	}
	CHECK(write(rep_w, &tid, sizeof(tid)) == sizeof(tid));
	for (;;) {
		/* Sleep 1 ms (a switch-out), take a command, spin a little. */
		struct pollfd p = {cmd_r, POLLIN, 0};
		if (poll(&p, 1, 1) == 1) {
			char c;
			if (read(cmd_r, &c, 1) != 1 || c == 'q')
				_exit(0);
			uint64_t v = 0;
			if (c == 'c' && b) /* report the provider's switch-out count */
				v = bpftest_pd(b, ONCPU_BPF_PD_SWITCH_OUT);
			if (c == 'r' && b) /* register again */
				v = (uint64_t)oncpu_desched_register(NULL, 0);
			CHECK(write(rep_w, &v, sizeof(v)) == sizeof(v));
		}
		uint64_t end = bpftest_now_ns() + 200000;
		while (bpftest_now_ns() < end)
			;
	}
}

static struct victim victim_start(int which)
{
	int cmd[2], rep[2];
	CHECK(pipe(cmd) == 0 && pipe(rep) == 0);
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		char a[16], b[16], w[16];
		snprintf(w, sizeof(w), "victim%d", which);
		snprintf(a, sizeof(a), "%d", cmd[0]);
		snprintf(b, sizeof(b), "%d", rep[1]);
		execl("/proc/self/exe", "bpf_attack", w, a, b, (char *)NULL);
		_exit(127);
	}
	close(cmd[0]);
	close(rep[1]);
	struct victim v = {pid, 0, cmd[1], rep[0]};
	CHECK(read(v.rep_r, &v.tid, sizeof(v.tid)) == sizeof(v.tid));
	return v;
}

static uint64_t victim_ask(struct victim *v, char c)
{
	uint64_t r;
	CHECK(write(v->cmd_w, &c, 1) == 1);
	CHECK(read(v->rep_r, &r, sizeof(r)) == sizeof(r));
	return r;
}

/* ---- the attacker's means: the pinned reg map, as anybody may use it ---- */

static int reg_update_for(pid_t tid, void *block)
{
	return bpftest_reg_op(2 /* BPF_MAP_UPDATE_ELEM */, tid, block, 1U << 4 /* BPF_F_WRONLY */);
}

/* A page made to look like a registered block whose entries target every
 * word, and whose arm word holds a guessed nonce. */
static struct _oncpu_desched_block *fake_block(void)
{
	char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(page != MAP_FAILED);
	memset(page, 0xa5, 4096);
	struct _oncpu_desched_block *b = (struct _oncpu_desched_block *)page;
	b->self = (uint64_t)(uintptr_t)b;
	b->nr_entries = ONCPU_DESCHED_BLOCK_ENTRIES;
	for (int i = 0; i < ONCPU_DESCHED_BLOCK_ENTRIES; i++)
		b->entries[i] = (struct _oncpu_desched_kentry){
		    .addr = (uint64_t)(uintptr_t)&b->words[8 * i],
		    .value = 0x1111,
		    .resume_value = 0x2222,
		    .size = 8,
		    .flags = ONCPU_DESCHED_ENTRY_F_RESUME,
		};
	b->oncpu = 0x77;
	b->provider_data[ONCPU_BPF_PD_ARM] = 0x2468;
	return b;
}

/* To user nobody; a member of the registering group when `member`. */
static void drop_privileges(bool member)
{
	gid_t g = (gid_t)atoi(getenv("ONCPU_TEST_BPF_GID") ? getenv("ONCPU_TEST_BPF_GID") : "0");
	CHECK_MSG(g != 0, "ONCPU_TEST_BPF_GID is not set (the fixture's group)");
	CHECK(member ? setgroups(1, &g) == 0 : setgroups(0, NULL) == 0);
	CHECK(setresgid(65534, 65534, 65534) == 0);
	CHECK(setresuid(65534, 65534, 65534) == 0);
	CHECK(geteuid() == 65534);
}

/* 4. Entries of the attacker's own (armed) block that point elsewhere. */
static void bounds(void)
{
	struct _oncpu_desched_block *b = bpftest_block();
	CHECK(oncpu_desched_state(oncpu_desched_self()) == ONCPU_DESCHED_ON_CPU);
	static struct _oncpu_desched_block before;
	uint64_t self = b->self;
	/* Written as a hostile program would, bypassing the library's checks. */
	struct _oncpu_desched_kentry bad[] = {
	    {self + ONCPU_DESCHED_OFF_PROVIDER_DATA, 1, 1, 8, ONCPU_DESCHED_ENTRY_F_RESUME},
	    {self + ONCPU_DESCHED_OFF_ENTRIES, 2, 2, 8, ONCPU_DESCHED_ENTRY_F_RESUME},
	    {self + ONCPU_DESCHED_BLOCK_SIZE, 3, 3, 8, ONCPU_DESCHED_ENTRY_F_RESUME},
	    {self + 4096, 3, 3, 4, ONCPU_DESCHED_ENTRY_F_RESUME},
	    {self - 8, 4, 4, 8, ONCPU_DESCHED_ENTRY_F_RESUME},
	    {self + ONCPU_DESCHED_OFF_WORDS + 1, 5, 5, 4, ONCPU_DESCHED_ENTRY_F_RESUME},
	    {self + ONCPU_DESCHED_OFF_WORDS + ONCPU_DESCHED_BLOCK_WORDS - 4, 6, 6, 8,
	     ONCPU_DESCHED_ENTRY_F_RESUME},
	    {self + ONCPU_DESCHED_OFF_WORDS, 7, 7, 3, ONCPU_DESCHED_ENTRY_F_RESUME},
	    {self + 2, 8, 8, 4, ONCPU_DESCHED_ENTRY_F_RESUME},
	    {UINT64_MAX - 3, 9, 9, 4, ONCPU_DESCHED_ENTRY_F_RESUME},
	};
	int nbad = (int)(sizeof(bad) / sizeof(bad[0]));
	__atomic_store_n(&b->nr_entries, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < nbad; i++)
		b->entries[1 + i] = bad[i];
	/* A legitimate entry last: it must still be written. */
	b->entries[1 + nbad] = (struct _oncpu_desched_kentry){
	    self + ONCPU_DESCHED_OFF_WORDS + 8, 0xaa, 0xbb, 8, ONCPU_DESCHED_ENTRY_F_RESUME};
	uint64_t bad0 = bpftest_pd(b, ONCPU_BPF_PD_BAD_ENTRY);
	memcpy(&before, b, sizeof(before));
	/* More entries than the kernel's 16: the programs stop at 16. */
	__atomic_store_n(&b->nr_entries, 1000, __ATOMIC_RELAXED);
	for (int i = 0; i < 20; i++)
		usleep(1000);
	__atomic_store_n(&b->nr_entries, 1, __ATOMIC_RELAXED);
	uint64_t bad1 = bpftest_pd(b, ONCPU_BPF_PD_BAD_ENTRY);
	/* Only these may differ: the on-CPU word, the provider's counters, the
	 * one legitimate word, nr_entries (ours). */
	struct _oncpu_desched_block after;
	memcpy(&after, b, sizeof(after));
	after.oncpu = before.oncpu;
	after.nr_entries = before.nr_entries;
	memcpy(after.provider_data, before.provider_data, sizeof(after.provider_data));
	uint64_t legit;
	memcpy(&legit, &b->words[8], 8);
	memcpy(&after.words[8], &before.words[8], 8);
	CHECK_MSG(memcmp(&after, &before, sizeof(after)) == 0,
	          "the provider wrote outside the allowed words of the block");
	CHECK_MSG(legit == 0xbb, "the legitimate entry was not written (0x%llx)",
	          (unsigned long long)legit);
	CHECK_MSG(bad1 - bad0 >= (uint64_t)nbad, "only %llu bad entries counted",
	          (unsigned long long)(bad1 - bad0));
	printf("4. hostile entries of its own block: %llu refused, nothing written outside the "
	       "allowed words\n",
	       (unsigned long long)(bad1 - bad0));
}

/* BPF_OBJ_GET of a pin: 0 when it opened, else -errno. */
static int pin_open(const char *name, uint32_t flags)
{
	int fd = bpftest_pin_get(name, flags);
	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

/* 0. A user outside the group, in a child process. */
static void outsider(void)
{
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		drop_privileges(false);
		int r = pin_open(ONCPU_BPF_PIN_REG, 1U << 4 /* BPF_F_WRONLY */);
		CHECK_MSG(r == -EACCES, "an outsider opened the reg map for writing (%s)",
		          r ? strerror(-r) : "allowed");
		r = pin_open(ONCPU_BPF_PIN_STATS, 1U << 3 /* BPF_F_RDONLY */);
		CHECK_MSG(r == -EACCES, "an outsider opened the stats map (%s)",
		          r ? strerror(-r) : "allowed");
		CHECK_MSG(strcmp(oncpu_desched_provider(), "bpf") != 0, "outsider's provider %s",
		          oncpu_desched_provider());
		printf("0. user outside the group: reg and stats refused (EACCES), provider %s\n",
		       oncpu_desched_provider());
		fflush(stdout);
		_exit(0);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "outsider: %s", test_status_str(st));
}

int main(int argc, char **argv)
{
	if (argc == 4 && strncmp(argv[1], "victim", 6) == 0) {
		victim_main(argv[1][6] - '0', atoi(argv[2]), atoi(argv[3]));
		return 0;
	}
	bpftest_require_loaded();

	struct victim v1 = victim_start(1), v2 = victim_start(2);
	uint64_t v2_out0 = victim_ask(&v2, 'c');
	usleep(50000);
	CHECK_MSG(victim_ask(&v2, 'c') > v2_out0, "victim 2 is not tracked before the attack");

	outsider();
	drop_privileges(true);
	printf("attacker: uid %d, group member, no capabilities; victims: pids %d (no oncpu) and "
	       "%d (oncpu, "
	       "armed)\n",
	       (int)geteuid(), (int)v1.pid, (int)v2.pid);
	CHECK_MSG(strcmp(oncpu_desched_provider(), "bpf") == 0, "provider %s",
	          oncpu_desched_provider());

	struct _oncpu_desched_block *f1 = fake_block(), *f2 = fake_block();
	static char snap1[4096], snap2[4096];
	memcpy(snap1, f1, 4096);
	memcpy(snap2, f2, 4096);
	long long unarmed0 = bpftest_stat(ONCPU_BPF_STAT_UNARMED);
	long long noreg0 = bpftest_stat(ONCPU_BPF_STAT_ARM_NOREG);
	long long dropped0 = bpftest_stat(ONCPU_BPF_STAT_DROPPED);

	/* 1. and 2.: the registrations are accepted (anybody may write the
	 * map), but never armed. */
	int r = reg_update_for(v1.tid, f1);
	CHECK_MSG(r == 0, "registering for victim 1: %s", strerror(-r));
	r = reg_update_for(v2.tid, f2);
	CHECK_MSG(r == 0, "registering for victim 2: %s", strerror(-r));
	uint64_t v2_out1 = victim_ask(&v2, 'c');
	/* 3. The arm function in the attacker's own context arms only the
	 * attacker's own registration, of which there is none. */
	_oncpu_desched_bpf_arm(f1);
	_oncpu_desched_bpf_arm(f2);
	usleep(300000);
	uint64_t v2_out2 = victim_ask(&v2, 'c');
	long long unarmed = bpftest_stat(ONCPU_BPF_STAT_UNARMED) - unarmed0;
	long long noreg = bpftest_stat(ONCPU_BPF_STAT_ARM_NOREG) - noreg0;
	long long dropped = bpftest_stat(ONCPU_BPF_STAT_DROPPED) - dropped0;

	CHECK_MSG(memcmp(snap1, f1, 4096) == 0,
	          "the attacker's page registered for victim 1 was written");
	CHECK_MSG(memcmp(snap2, f2, 4096) == 0,
	          "the attacker's page registered for victim 2 was written");
	printf("1. page registered for victim 1's thread: unchanged; the victims' switches "
	       "seen unarmed: %lld; never-armed registrations dropped: %lld\n",
	       unarmed, dropped);
	printf("2. page registered over victim 2's registration: unchanged; victim 2's "
	       "switch-outs written meanwhile: %llu (its notifications stop: a slowdown)\n",
	       (unsigned long long)(v2_out2 - v2_out1));
	printf("3. arm calls by the attacker: refused for lack of its own registration (%lld)\n",
	       noreg);
	CHECK(unarmed >= ONCPU_BPF_UNARMED_GRACE);
	CHECK(noreg >= 2);
	CHECK_MSG(dropped >= 2, "the registrations planted on both victims were not dropped (%lld)",
	          dropped);
	CHECK_MSG(v2_out2 - v2_out1 <= 1, "victim 2's own block was written %llu times",
	          (unsigned long long)(v2_out2 - v2_out1));

	/* Victim 2 registers again and is tracked again. */
	CHECK_MSG(victim_ask(&v2, 'r') == 0, "victim 2 could not register again");
	uint64_t v2_out3 = victim_ask(&v2, 'c');
	usleep(100000);
	uint64_t v2_out4 = victim_ask(&v2, 'c');
	CHECK_MSG(v2_out4 > v2_out3, "victim 2 is not tracked after registering again");
	CHECK_MSG(memcmp(snap2, f2, 4096) == 0,
	          "the attacker's page changed after victim 2 re-registered");
	printf("   victim 2 registered again: %llu switch-outs written in 100 ms\n",
	       (unsigned long long)(v2_out4 - v2_out3));

	bounds();

	char q = 'q';
	CHECK(write(v1.cmd_w, &q, 1) == 1);
	CHECK(write(v2.cmd_w, &q, 1) == 1);
	int st;
	CHECK(waitpid(v1.pid, &st, 0) == v1.pid);
	CHECK(waitpid(v2.pid, &st, 0) == v2.pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	printf("ok\n");
	return 0;
}
