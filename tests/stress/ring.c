/* SPDX-License-Identifier: MIT */
/*
 * stress/ring.c - conservation of pointers in small rings under forced
 * aborts. 6 x CPUs threads move items between a CPU-indexed ring, a
 * vCPU-indexed ring (8 slots per CPU each, so they are often full) and an
 * overflow stack that takes what a full ring refuses (ENOBUFS), with pop and
 * pop_cpu, under a SIGUSR1 storm, yields, affinity changes and injected
 * delays; in the rseq modes every fourth thread runs without rseq. Every
 * item has an owner word exchanged on each take and give. At the end every
 * item is in exactly one structure or one thread's hands, no ring holds more
 * than its capacity, and (before and after the storm) a ring returns what
 * one thread pushes in FIFO order and refuses the push beyond capacity.
 */
#include "ds_stress.h"

#define ITEMS_PER_THREAD 48
#define MAX_HELD         24
#define RING_CAP         8

struct item {
	struct oncpu_stack_node link; /* for the overflow stack */
	atomic_int owner;             /* 0: in a structure; t + 1: held by thread t */
	int id;
};

struct worker {
	int tid;
	long ops, full;
	int nheld;
	struct item *held[MAX_HELD + 1];
} __attribute__((aligned(64)));

static struct oncpu_ring *rings[2];
static struct oncpu_stack *overflow;
static struct item *items;
static int nitems;
static atomic_long fulls;

static void take(struct item *it, int tid)
{
	CHECK(it >= items && it < items + nitems);
	int was = atomic_exchange(&it->owner, tid + 1);
	CHECK_MSG(was == 0, "thread %d got item %d, held by thread %d", tid, it->id, was - 1);
}

static struct item *release(struct worker *w, int i)
{
	struct item *it = w->held[i];
	w->held[i] = w->held[--w->nheld];
	int was = atomic_exchange(&it->owner, 0);
	CHECK_MSG(was == w->tid + 1, "thread %d gives item %d held by %d", w->tid, it->id, was - 1);
	return it;
}

/* Into the ring, or the overflow stack when the ring is full. */
static void put(struct worker *w, int i, struct oncpu_ring *r)
{
	struct item *it = release(w, i);
	if (oncpu_ring_push(r, it) == 0)
		return;
	CHECK_MSG(errno == ENOBUFS, "push: errno %d", errno);
	w->full++;
	oncpu_stack_push(overflow, &it->link);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t seed = 0x7a3c11u + (uint64_t)w->tid * 104729;
	bool fallback = ds_worker_start(w->tid);
	int cpus = oncpu_cpu_count();
	long ops = 0;
	while (ds_running()) {
		uint64_t r = ds_rand(&seed);
		struct oncpu_ring *ring = rings[r >> 63];
		unsigned op = (unsigned)(r % 1000);
		if (op < 480 && w->nheld < MAX_HELD) {
			void *p = op < 380 ? oncpu_ring_pop(ring)
			          : op < 430
			              ? oncpu_ring_pop_cpu(ring, (int)((r >> 20) % (uint64_t)cpus))
			              : (void *)oncpu_stack_pop(overflow);
			if (p) {
				take(p, w->tid);
				w->held[w->nheld++] = p;
			}
		} else if (w->nheld > 0) {
			put(w, (int)((r >> 24) % (uint64_t)w->nheld), ring);
		}
		ops++;
		ds_churn(&seed);
	}
	w->ops = ops;
	atomic_fetch_add(&fulls, w->full);
	if (fallback)
		atomic_fetch_add(&ds.fallback_ops, ops);
	return NULL;
}

/* FIFO, single thread, while the others are stopped: run before and after. */
static void check_fifo(void)
{
	cpu_set_t set, old;
	CHECK(sched_getaffinity(0, sizeof(old), &old) == 0);
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	CHECK(sched_setaffinity(0, sizeof(set), &set) == 0);
	for (int k = 0; k < 2; k++) {
		int idx = k ? oncpu_vcpu() : oncpu_cpu();
		void *drained[RING_CAP];
		int n = 0;
		while (n < RING_CAP && (drained[n] = oncpu_ring_pop_cpu(rings[k], idx)))
			n++;
		for (int i = 0; i < RING_CAP; i++)
			CHECK(oncpu_ring_push(rings[k], &items[i]) == 0);
		CHECK(oncpu_ring_push(rings[k], &items[RING_CAP]) == -1 && errno == ENOBUFS);
		for (int i = 0; i < RING_CAP; i++)
			CHECK(oncpu_ring_pop(rings[k]) == &items[i]);
		CHECK(oncpu_ring_pop(rings[k]) == NULL);
		for (int i = 0; i < n; i++)
			CHECK(oncpu_ring_push(rings[k], drained[i]) == 0);
	}
	CHECK(sched_setaffinity(0, sizeof(old), &old) == 0);
}

int main(int argc, char **argv)
{
	ds_init(argc, argv);
	for (int i = 0; i < 2; i++)
		CHECK(rings[i] = oncpu_ring_new_flags(RING_CAP, i ? ONCPU_F_VCPU : 0));
	CHECK(overflow = oncpu_stack_new());
	nitems = ds.threads * ITEMS_PER_THREAD;
	CHECK(items = calloc((size_t)nitems, sizeof(*items)));
	for (int i = 0; i < nitems; i++) {
		items[i].id = i;
		oncpu_stack_push(overflow, &items[i].link);
	}
	/* items[0..RING_CAP] are used by the FIFO check: take them out first. */
	for (struct oncpu_stack_node *l = oncpu_stack_drain(overflow); l;) {
		struct item *it = (struct item *)l;
		l = l->next;
		if (it->id > RING_CAP)
			oncpu_stack_push(overflow, &it->link);
	}
	check_fifo();
	for (int i = 0; i <= RING_CAP; i++)
		oncpu_stack_push(overflow, &items[i].link);

	struct worker *workers = aligned_alloc(64, sizeof(struct worker) * (size_t)ds.threads);
	CHECK(workers);
	memset(workers, 0, sizeof(struct worker) * (size_t)ds.threads);
	for (int t = 0; t < ds.threads; t++)
		workers[t].tid = t;
	ds_start(worker_main, workers, sizeof(struct worker));
	ds_run_and_join();

	unsigned char *seen = calloc((size_t)nitems, 1);
	long ops = 0, found = 0;
	CHECK(seen);
	for (int k = 0; k < 2; k++) {
		for (int c = 0; c < oncpu_cpu_count(); c++) {
			struct item *it;
			int n = 0;
			while ((it = oncpu_ring_pop_cpu(rings[k], c))) {
				CHECK(it >= items && it < items + nitems);
				CHECK_MSG(seen[it->id]++ == 0, "item %d twice", it->id);
				CHECK(atomic_load(&it->owner) == 0);
				CHECK_MSG(++n <= RING_CAP,
				          "ring %d of CPU %d held more than its capacity", k, c);
				found++;
			}
		}
	}
	for (struct oncpu_stack_node *l = oncpu_stack_drain(overflow); l; l = l->next) {
		struct item *it = (struct item *)l;
		CHECK(it >= items && it < items + nitems);
		CHECK_MSG(seen[it->id]++ == 0, "item %d twice", it->id);
		CHECK(atomic_load(&it->owner) == 0);
		CHECK(++found <= nitems);
	}
	for (int t = 0; t < ds.threads; t++) {
		ops += workers[t].ops;
		for (int i = 0; i < workers[t].nheld; i++) {
			struct item *it = workers[t].held[i];
			CHECK_MSG(seen[it->id]++ == 0, "item %d held and stored", it->id);
			CHECK(atomic_load(&it->owner) == t + 1);
			found++;
		}
	}
	for (int i = 0; i < nitems; i++)
		CHECK_MSG(seen[i] == 1, "item %d lost", i);
	CHECK(found == nitems);
	/* After the storm the rings still keep order and capacity exactly. */
	check_fifo();
	printf("stress.ring: %ld pushes refused with ENOBUFS\n", atomic_load(&fulls));
	CHECK(atomic_load(&fulls) > 0);
	ds_report("stress.ring", ops);
	for (int i = 0; i < 2; i++)
		oncpu_ring_destroy(rings[i]);
	oncpu_stack_destroy(overflow);
	free(seen);
	free(items);
	free(workers);
	return 0;
}
