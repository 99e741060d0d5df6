/* SPDX-License-Identifier: MIT */
/*
 * stress/stack.c - conservation of nodes under forced aborts.
 *
 * 6 x CPUs threads move nodes between two stacks (one CPU-indexed, one
 * vCPU-indexed) with push, pop, pop_cpu on random lists and an occasional
 * drain, while a SIGUSR1 storm, yields, affinity changes and delays
 * injected into the sections force aborts and migrations. In the rseq modes
 * every fourth thread runs without rseq (mixed process). Every node carries
 * an owner word, exchanged on every take and give: a node popped twice or
 * pushed while held is caught at once. At the end every node is on exactly
 * one list or held by exactly one thread.
 */
#include "ds_stress.h"

#define NODES_PER_THREAD 64
#define MAX_HELD         32

struct item {
	struct oncpu_stack_node link;
	atomic_int owner; /* 0: on a stack; t + 1: held by thread t */
	int id;
};

struct worker {
	int tid;
	long ops;
	int nheld;
	struct item *held[MAX_HELD + 1];
} __attribute__((aligned(64)));

static struct oncpu_stack *stacks[2];
static struct item *items;
static int nitems;

static void take(struct item *it, int tid)
{
	int was = atomic_exchange(&it->owner, tid + 1);
	CHECK_MSG(was == 0, "thread %d got node %d, which %s", tid, it->id,
	          was ? "another thread holds" : "?");
}

static void give(struct worker *w, int i, struct oncpu_stack *s)
{
	struct item *it = w->held[i];
	w->held[i] = w->held[--w->nheld];
	int was = atomic_exchange(&it->owner, 0);
	CHECK_MSG(was == w->tid + 1, "thread %d pushes node %d held by %d", w->tid, it->id,
	          was - 1);
	oncpu_stack_push(s, &it->link);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t seed = 0x51ed2701u + (uint64_t)w->tid * 7919;
	bool fallback = ds_worker_start(w->tid);
	int cpus = oncpu_cpu_count();
	long ops = 0;
	while (ds_running()) {
		uint64_t r = ds_rand(&seed);
		struct oncpu_stack *s = stacks[r >> 63];
		unsigned op = (unsigned)(r % 1000);
		if (op < 470 && w->nheld < MAX_HELD) {
			struct oncpu_stack_node *n =
			    op < 300 ? oncpu_stack_pop(s)
			             : oncpu_stack_pop_cpu(s, (int)((r >> 20) % (uint64_t)cpus));
			if (n) {
				take((struct item *)n, w->tid);
				w->held[w->nheld++] = (struct item *)n;
			}
		} else if (op < 999 && w->nheld > 0) {
			give(w, (int)((r >> 24) % (uint64_t)w->nheld), s);
		} else if (op == 999 && (r >> 32) % 64 == 0) {
			/* Drain while everyone else works; put the nodes back. */
			struct oncpu_stack_node *l = oncpu_stack_drain(s);
			while (l) {
				struct item *it = (struct item *)l;
				l = l->next;
				take(it, w->tid);
				w->held[w->nheld++] = it;
				if (w->nheld > MAX_HELD)
					give(w, 0, stacks[ds_rand(&seed) >> 63]);
			}
		}
		ops++;
		ds_churn(&seed);
	}
	w->ops = ops;
	if (fallback)
		atomic_fetch_add(&ds.fallback_ops, ops);
	return NULL;
}

int main(int argc, char **argv)
{
	ds_init(argc, argv);
	for (int i = 0; i < 2; i++)
		CHECK(stacks[i] = oncpu_stack_new_flags(i ? ONCPU_F_VCPU : 0));
	nitems = ds.threads * NODES_PER_THREAD;
	CHECK(items = calloc((size_t)nitems, sizeof(*items)));
	for (int i = 0; i < nitems; i++) {
		items[i].id = i;
		oncpu_stack_push(stacks[i & 1], &items[i].link);
	}
	struct worker *workers = aligned_alloc(64, sizeof(struct worker) * (size_t)ds.threads);
	CHECK(workers);
	memset(workers, 0, sizeof(struct worker) * (size_t)ds.threads);
	for (int t = 0; t < ds.threads; t++)
		workers[t].tid = t;
	ds_start(worker_main, workers, sizeof(struct worker));
	ds_run_and_join();

	/* Every node exactly once: on a list with owner 0, or held by its owner. */
	unsigned char *seen = calloc((size_t)nitems, 1);
	long ops = 0, found = 0;
	CHECK(seen);
	for (int i = 0; i < 2; i++) {
		for (struct oncpu_stack_node *l = oncpu_stack_drain(stacks[i]); l; l = l->next) {
			struct item *it = (struct item *)l;
			CHECK(it >= items && it < items + nitems);
			CHECK_MSG(seen[it->id]++ == 0, "node %d is on a list twice", it->id);
			CHECK_MSG(atomic_load(&it->owner) == 0, "node %d on a list but held by %d",
			          it->id, atomic_load(&it->owner) - 1);
			CHECK_MSG(++found <= nitems,
			          "a list is longer than the number of nodes (cycle?)");
		}
		CHECK(oncpu_stack_pop(stacks[i]) == NULL);
	}
	for (int t = 0; t < ds.threads; t++) {
		ops += workers[t].ops;
		for (int i = 0; i < workers[t].nheld; i++) {
			struct item *it = workers[t].held[i];
			CHECK_MSG(seen[it->id]++ == 0, "node %d held and listed", it->id);
			CHECK(atomic_load(&it->owner) == t + 1);
			found++;
		}
	}
	for (int i = 0; i < nitems; i++)
		CHECK_MSG(seen[i] == 1, "node %d lost", i);
	CHECK(found == nitems);
	ds_report("stress.stack", ops);
	for (int i = 0; i < 2; i++)
		oncpu_stack_destroy(stacks[i]);
	free(seen);
	free(items);
	free(workers);
	return 0;
}
