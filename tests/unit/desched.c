/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of oncpu/desched.h: the provider is observable and follows
 * ONCPU_DESCHED_PROVIDER; the words; every validation errno; registration
 * under "none" (ENOTSUP) and, where a provider runs (the patched kernel of
 * kernel/, or the bpf provider), the values really written: an observer
 * sees the on-CPU word and a user entry change while the thread sleeps and
 * change back when it runs; tokens of live, exited and foreign threads;
 * block reuse with a new generation; fork.
 *
 * Without a provider that writes the words ("none": a stock kernel, no
 * bpf provider loaded) the negative half runs and the program then exits
 * 77, which CTest reports as skipped: the values-written checks did not
 * run. CI runs them with the bpf provider (bpf.unit.desched) and in the
 * patched kernel's VM. The kernel provider is detected by
 * PR_RSEQ_DESCHED_GET failing.
 */
#define _GNU_SOURCE
#include <sys/prctl.h>
#include <time.h>

#include "testutil.h"

#define PR_RSEQ_DESCHED_GET 0x4f4e4351 /* kernel/uapi/rseq_desched.h */

static const char *provider;
static bool tracked; /* a provider writes the words */

static void test_provider(void)
{
	provider = oncpu_desched_provider();
	CHECK(provider);
	CHECK(strcmp(provider, "kernel") == 0 || strcmp(provider, "bpf") == 0 ||
	      strcmp(provider, "none") == 0);
	CHECK(oncpu_desched_provider() == provider); /* chosen once */
	bool kernel_has = prctl(PR_RSEQ_DESCHED_GET, 0, 0, 0, 0) >= 0;
	const char *want = getenv("ONCPU_DESCHED_PROVIDER");
	if (want && strcmp(want, "none") == 0)
		CHECK(strcmp(provider, "none") == 0);
	else if (want && strcmp(want, "kernel") == 0)
		CHECK(strcmp(provider, kernel_has ? "kernel" : "none") == 0);
	else if (!want || strcmp(want, "auto") == 0)
		CHECK(kernel_has ? strcmp(provider, "kernel") == 0
		                 : strcmp(provider, "kernel") != 0);
	tracked = strcmp(provider, "none") != 0;
	printf("desched: provider %s; kernel patch %s\n", provider,
	       kernel_has ? "present" : "absent");
}

/* The provider choice of a fresh process under ONCPU_DESCHED_PROVIDER. */
static void test_provider_env(void)
{
	int st = test_reexec("ONCPU_DESCHED_PROVIDER=none", "expect-provider", "none");
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", test_status_str(st));
	/* an unknown or unavailable name gives "none", never a crash */
	st = test_reexec("ONCPU_DESCHED_PROVIDER=bogus", "expect-provider", "none");
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", test_status_str(st));
}

static void test_words(void)
{
	unsigned char *w = oncpu_desched_words();
	CHECK(w);
	CHECK(((uintptr_t)w & 63) == 0);
	for (int i = 0; i < ONCPU_DESCHED_WORDS_SIZE; i++)
		CHECK(w[i] == 0);
	CHECK(oncpu_desched_words() == w);
	memset(w, 0xab, ONCPU_DESCHED_WORDS_SIZE); /* all of it is ours */
	memset(w, 0, ONCPU_DESCHED_WORDS_SIZE);
}

static struct oncpu_desched_entry entry(void *addr, uint32_t size, uint64_t v)
{
	return (struct oncpu_desched_entry){.addr = addr, .value = v, .size = size};
}

static void test_validation(void)
{
	char *w = oncpu_desched_words();
	struct oncpu_desched_entry e[ONCPU_DESCHED_MAX_ENTRIES + 1];
	for (int i = 0; i <= ONCPU_DESCHED_MAX_ENTRIES; i++)
		e[i] = entry(w + 8 * i, 8, 1);
	CHECK_ERRNO(oncpu_desched_register(e, ONCPU_DESCHED_MAX_ENTRIES + 1), E2BIG);
	CHECK_ERRNO(oncpu_desched_register(e, 1000), E2BIG);
	CHECK_ERRNO(oncpu_desched_register(NULL, 1), EINVAL);

	struct oncpu_desched_entry bad[] = {
	    entry(w, 3, 0),                                /* size */
	    entry(w, 0, 0),                                /* size */
	    entry(w, 16, 0),                               /* size */
	    entry(w + 2, 4, 0),                            /* alignment */
	    entry(w + 4, 8, 0),                            /* alignment */
	    entry(w + 1, 2, 0),                            /* alignment */
	    entry(w - 8, 8, 0),                            /* before the words */
	    entry(w + ONCPU_DESCHED_WORDS_SIZE, 1, 0),     /* after them */
	    entry(w + ONCPU_DESCHED_WORDS_SIZE - 4, 8, 0), /* misaligned and past */
	    entry(&e[0], 8, 0),                            /* the stack */
	    entry(NULL, 8, 0),                             /* NULL */
	    entry(w, 1, 256),                              /* value too wide */
	    entry(w, 2, 65536),                            /* value too wide */
	    entry(w, 4, 1ULL << 32),                       /* value too wide */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		CHECK_MSG(oncpu_desched_register(&bad[i], 1) == -1 && errno == EINVAL,
		          "bad entry %zu accepted (errno %d)", i, errno);
		/* a bad entry after good ones rejects the whole call */
		struct oncpu_desched_entry two[2] = {e[0], bad[i]};
		CHECK_ERRNO(oncpu_desched_register(two, 2), EINVAL);
	}
	struct oncpu_desched_entry f = entry(w, 8, 0);
	f.flags = 0x2;
	CHECK_ERRNO(oncpu_desched_register(&f, 1), EINVAL);
	f = entry(w, 1, 0);
	f.flags = ONCPU_DESCHED_F_RESUME;
	f.resume_value = 300;
	CHECK_ERRNO(oncpu_desched_register(&f, 1), EINVAL); /* resume value too wide */

	/* valid: every size at the edges, the maximum count */
	struct oncpu_desched_entry ok[] = {
	    entry(w, 1, 0xff),
	    entry(w + 2, 2, 0xffff),
	    entry(w + 4, 4, 0xffffffff),
	    entry(w + ONCPU_DESCHED_WORDS_SIZE - 8, 8, ~0ULL),
	};
	int r = oncpu_desched_register(ok, 4);
	if (tracked) {
		CHECK_MSG(r == 0, "register: %s", strerror(errno));
		CHECK(oncpu_desched_register(e, ONCPU_DESCHED_MAX_ENTRIES) == 0);
	} else {
		CHECK(r == -1 && errno == ENOTSUP);
		CHECK_ERRNO(oncpu_desched_register(e, ONCPU_DESCHED_MAX_ENTRIES), ENOTSUP);
	}
	CHECK(oncpu_desched_register(NULL, 0) == 0);
	CHECK(oncpu_desched_unregister() == 0);
}

/* ---- the positive half: values really written (a provider runs) ---- */

struct sleeper {
	volatile uint32_t *word; /* a user word of the sleeper's block */
	oncpu_desched_token_t token;
	volatile int phase; /* 1: registered, 2: sleeping, 3: awake again */
	volatile int go;
	uint32_t after_wake; /* what the sleeper read of its word when it woke */
};

static void *sleeper_main(void *arg)
{
	struct sleeper *s = arg;
	uint32_t *w = oncpu_desched_words();
	CHECK(w);
	*w = 5;
	struct oncpu_desched_entry e = {
	    .addr = w, .value = 7, .resume_value = 9, .size = 4, .flags = ONCPU_DESCHED_F_RESUME};
	CHECK(oncpu_desched_register(&e, 1) == 0);
	s->word = w;
	s->token = oncpu_desched_self();
	__atomic_store_n(&s->phase, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&s->go, __ATOMIC_ACQUIRE))
		; /* spin: on CPU */
	__atomic_store_n(&s->phase, 2, __ATOMIC_RELEASE);
	test_sleep_us(200000);
	s->after_wake = *w; /* the resume value is written before user code runs */
	__atomic_store_n(&s->phase, 3, __ATOMIC_RELEASE);
	while (__atomic_load_n(&s->go, __ATOMIC_ACQUIRE) != 2)
		;
	CHECK(oncpu_desched_unregister() == 0);
	return NULL;
}

static void test_values_written(void)
{
	if (!tracked)
		return;
	struct sleeper s = {0};
	pthread_t t;
	CHECK(pthread_create(&t, NULL, sleeper_main, &s) == 0);
	while (__atomic_load_n(&s.phase, __ATOMIC_ACQUIRE) < 1)
		sched_yield();
	/* running (spinning): the word reads its resume value or the initial 5 */
	__atomic_store_n(&s.go, 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(&s.phase, __ATOMIC_ACQUIRE) < 2)
		;
	test_sleep_us(50000); /* the sleeper is in nanosleep now */
	CHECK_MSG(*s.word == 7, "user entry reads %u while its thread sleeps", *s.word);
	CHECK(oncpu_desched_state(s.token) == ONCPU_DESCHED_OFF_CPU);
	while (__atomic_load_n(&s.phase, __ATOMIC_ACQUIRE) < 3)
		sched_yield();
	CHECK_MSG(s.after_wake == 9, "resume value %u", s.after_wake);
	/* spinning again, on a CPU (2 CPUs needed to see it from here) */
	if (test_allowed_count() >= 2) {
		int on = 0;
		for (int i = 0; i < 20000 && !on; i++) { /* up to 2 s+ on a loaded machine */
			on = oncpu_desched_state(s.token) == ONCPU_DESCHED_ON_CPU;
			test_sleep_us(100);
		}
		CHECK_MSG(on, "a spinning thread never read as on CPU");
	}
	__atomic_store_n(&s.go, 2, __ATOMIC_RELEASE);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK(oncpu_desched_state(s.token) == ONCPU_DESCHED_GONE);
	printf("desched: values written by provider %s: checked\n", provider);
}

/* ---- tokens ---- */

static void *token_main(void *arg)
{
	oncpu_desched_token_t *out = arg;
	*out = oncpu_desched_self();
	CHECK(*out != 0);
	int st = oncpu_desched_state(*out);
	CHECK(st == (tracked ? ONCPU_DESCHED_ON_CPU : ONCPU_DESCHED_UNTRACKED));
	return NULL;
}

static void test_tokens(void)
{
	oncpu_desched_token_t me = oncpu_desched_self();
	CHECK(me != 0);
	CHECK(oncpu_desched_self() == me);
	CHECK(oncpu_desched_state(me) ==
	      (tracked ? ONCPU_DESCHED_ON_CPU : ONCPU_DESCHED_UNTRACKED));
	CHECK(oncpu_desched_state(0) == ONCPU_DESCHED_GONE);
	CHECK(oncpu_desched_state(~0ULL) == ONCPU_DESCHED_GONE);
	CHECK(oncpu_desched_state(me + (1ULL << 32)) == ONCPU_DESCHED_GONE); /* other generation */
	CHECK(oncpu_desched_state((me & ~0xffffffffULL) | 0x7fffffff) == ONCPU_DESCHED_GONE);

	/* exited threads read GONE; their blocks are reused with new generations */
	enum { N = 50 };
	oncpu_desched_token_t seen[N];
	for (int i = 0; i < N; i++) {
		pthread_t t;
		CHECK(pthread_create(&t, NULL, token_main, &seen[i]) == 0);
		CHECK(pthread_join(t, NULL) == 0);
		CHECK(seen[i] != me);
		for (int j = 0; j <= i; j++)
			CHECK_MSG(oncpu_desched_state(seen[j]) == ONCPU_DESCHED_GONE,
			          "token %d of an exited thread is alive", j);
		for (int j = 0; j < i; j++)
			CHECK(seen[j] != seen[i]); /* reuse never repeats a token */
	}
	/* one thread at a time: the same block came back (type-stable reuse) */
	int reused = 0;
	for (int i = 1; i < N; i++)
		reused += (uint32_t)seen[i] == (uint32_t)seen[0];
	CHECK_MSG(reused > 0, "blocks are never reused");
	CHECK(oncpu_desched_state(me) != ONCPU_DESCHED_GONE);
}

/* ---- fork ---- */

static volatile int holder_go;
static oncpu_desched_token_t holder_token;

static void *holder_main(void *arg)
{
	(void)arg;
	holder_token = oncpu_desched_self();
	while (!__atomic_load_n(&holder_go, __ATOMIC_ACQUIRE))
		test_sleep_us(1000);
	return NULL;
}

static void fork_child(void *arg)
{
	oncpu_desched_token_t me = *(oncpu_desched_token_t *)arg;
	/* this thread keeps its block and its words; the other one is gone */
	CHECK(oncpu_desched_self() == me);
	CHECK(oncpu_desched_state(me) ==
	      (tracked ? ONCPU_DESCHED_ON_CPU : ONCPU_DESCHED_UNTRACKED));
	CHECK(oncpu_desched_state(holder_token) == ONCPU_DESCHED_GONE);
	CHECK(((uint32_t *)oncpu_desched_words())[1] == 0x12345678);
	CHECK(strcmp(oncpu_desched_provider(), provider) == 0);
	/* the kernel starts every child unregistered: the atfork handler
	 * registered this thread's entries again */
	if (strcmp(provider, "kernel") == 0)
		CHECK(prctl(PR_RSEQ_DESCHED_GET, 0, 0, 0, 0) >= 1);
	/* new threads get blocks, never the ghost's */
	oncpu_desched_token_t t2;
	pthread_t t;
	CHECK(pthread_create(&t, NULL, token_main, &t2) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK((uint32_t)t2 != (uint32_t)holder_token);
}

static void test_fork(void)
{
	pthread_t t;
	CHECK(pthread_create(&t, NULL, holder_main, NULL) == 0);
	while (!__atomic_load_n(&holder_token, __ATOMIC_ACQUIRE))
		test_sleep_us(100);
	((uint32_t *)oncpu_desched_words())[1] = 0x12345678;
	oncpu_desched_token_t me = oncpu_desched_self();
	char err[2048];
	int st = test_run_child(fork_child, &me, err, sizeof(err));
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork child: %s: %s", test_status_str(st),
	          err);
	CHECK(oncpu_desched_state(holder_token) != ONCPU_DESCHED_GONE); /* parent: alive */
	__atomic_store_n(&holder_go, 1, __ATOMIC_RELEASE);
	CHECK(pthread_join(t, NULL) == 0);
	((uint32_t *)oncpu_desched_words())[1] = 0;
}

int main(int argc, char **argv)
{
	if (argc > 2 && strcmp(argv[1], "expect-provider") == 0) {
		CHECK_MSG(strcmp(oncpu_desched_provider(), argv[2]) == 0,
		          "provider %s, expected %s", oncpu_desched_provider(), argv[2]);
		return 0;
	}
	test_allowed_cpus();
	test_provider();
	test_provider_env();
	test_words();
	test_validation();
	test_values_written();
	test_tokens();
	test_fork();
	if (!tracked) {
		printf(
		    "desched: SKIP: provider none: the negative checks passed, the values-written "
		    "checks did not run (%s)\n",
		    test_mode());
		return 77;
	}
	printf("desched: all checks passed (%s, provider %s)\n", test_mode(), provider);
	return 0;
}
