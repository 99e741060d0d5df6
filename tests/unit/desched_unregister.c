/* SPDX-License-Identifier: MIT */
/*
 * A thread whose unregistration fails must not hand its block to the next
 * thread: the provider may still write it, and would flip the next owner's
 * on-CPU word. The kernel provider is emulated here by interposing prctl()
 * (this program's definition wins over libc's for liboncpu's calls, static
 * or shared), which lets the test refuse PR_RSEQ_DESCHED_SET with count 0
 * and play the provider's late writes into the dying thread's entries.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <sys/prctl.h>

#include "testutil.h"

/* kernel/uapi/rseq_desched.h */
#define PR_RSEQ_DESCHED_SET 0x4f4e4350
#define PR_RSEQ_DESCHED_GET 0x4f4e4351

struct fake_entry {
	uint64_t addr, value, resume_value;
	uint32_t size, flags;
};

/* The emulated kernel's registration of the thread that runs now. */
static __thread struct fake_entry *registered;
static __thread unsigned long registered_count;
/* Refuse unregistration (count 0) in every thread while set. */
static bool fail_unregister;

int prctl(int option, ...)
{
	va_list ap;
	va_start(ap, option);
	unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long);
	unsigned long a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
	va_end(ap);
	if (option == PR_RSEQ_DESCHED_GET)
		return (int)registered_count;
	if (option != PR_RSEQ_DESCHED_SET)
		return (int)syscall(SYS_prctl, option, a2, a3, a4, a5);
	if (a3 == 0 && __atomic_load_n(&fail_unregister, __ATOMIC_RELAXED)) {
		errno = EPERM;
		return -1;
	}
	registered = (struct fake_entry *)(uintptr_t)a2;
	registered_count = a3;
	return 0;
}

struct dying {
	oncpu_desched_token_t token;
	struct fake_entry entry0; /* what the emulated kernel still holds */
};

static void *register_and_exit(void *arg)
{
	struct dying *d = arg;
	d->token = oncpu_desched_self();
	CHECK(d->token != 0);
	CHECK(registered_count == 1);
	CHECK(oncpu_desched_state(d->token) == ONCPU_DESCHED_ON_CPU);
	d->entry0 = registered[0];
	return NULL;
}

static void run_dying_thread(struct dying *d)
{
	pthread_t th;
	CHECK(pthread_create(&th, NULL, register_and_exit, d) == 0);
	CHECK(pthread_join(th, NULL) == 0);
}

/* The provider's switch-out store into an entry it still holds. */
static void late_switch_out(const struct fake_entry *e)
{
	CHECK(e->size == sizeof(uint32_t));
	__atomic_store_n((uint32_t *)(uintptr_t)e->addr, (uint32_t)e->value, __ATOMIC_RELAXED);
}

struct next_owner {
	uint32_t index;
	int state_after_late_write;
};

/* NULL: the provider let go of the previous block, it writes nothing. */
static struct dying *late_writer_target;

static void *next_owner_thread(void *arg)
{
	struct next_owner *n = arg;
	oncpu_desched_token_t t = oncpu_desched_self();
	CHECK(t != 0);
	n->index = (uint32_t)t;
	CHECK(oncpu_desched_state(t) == ONCPU_DESCHED_ON_CPU);
	if (late_writer_target)
		late_switch_out(&late_writer_target->entry0);
	/* This thread runs: nothing but its own provider may say otherwise. */
	n->state_after_late_write = oncpu_desched_state(t);
	return NULL;
}

static void run_next_owner(struct dying *prev, struct next_owner *n)
{
	pthread_t th;
	late_writer_target = prev;
	CHECK(pthread_create(&th, NULL, next_owner_thread, n) == 0);
	CHECK(pthread_join(th, NULL) == 0);
}

int main(void)
{
	CHECK(setenv("ONCPU_DESCHED_PROVIDER", "kernel", 1) == 0);
	CHECK(strcmp(oncpu_desched_provider(), "kernel") == 0);

	/* Unregistration works: the next thread gets the block back. */
	struct dying ok;
	struct next_owner after_ok;
	run_dying_thread(&ok);
	CHECK(oncpu_desched_state(ok.token) == ONCPU_DESCHED_GONE);
	run_next_owner(NULL, &after_ok);
	CHECK_MSG(after_ok.index == (uint32_t)ok.token, "block %u not reused, got %u",
	          (unsigned)(uint32_t)ok.token, (unsigned)after_ok.index);

	/* Unregistration fails: the block stays out of the pool, and the
	 * provider's late writes reach nobody's live word. */
	__atomic_store_n(&fail_unregister, true, __ATOMIC_RELAXED);
	struct dying lost[3];
	for (int i = 0; i < 3; i++) {
		run_dying_thread(&lost[i]);
		CHECK(oncpu_desched_state(lost[i].token) == ONCPU_DESCHED_GONE);
	}
	__atomic_store_n(&fail_unregister, false, __ATOMIC_RELAXED);
	for (int i = 0; i < 3; i++) {
		struct next_owner n;
		run_next_owner(&lost[i], &n);
		for (int j = 0; j < 3; j++)
			CHECK_MSG(n.index != (uint32_t)lost[j].token,
			          "block %u, whose unregistration failed, was reused",
			          (unsigned)n.index);
		CHECK_MSG(n.state_after_late_write == ONCPU_DESCHED_ON_CPU,
		          "a running thread reads state %d after a dead thread's switch-out",
		          n.state_after_late_write);
		CHECK(oncpu_desched_state(lost[i].token) == ONCPU_DESCHED_GONE);
	}
	printf("desched_unregister: all checks passed (%s)\n", test_mode());
	return 0;
}
