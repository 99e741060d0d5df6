/* SPDX-License-Identifier: MIT */
/*
 * stress/vcpu_mixed.c - vCPU-indexed stack, ring and cache shared by threads
 * with and without sections, every slot going through the parked state
 * (doc/slot-protocol.md, step 4) and back, under forced aborts.
 *
 * 4 x CPUs threads; in the rseq modes every second one runs without rseq.
 * Those fallback threads work in bursts and pause in between, so that a slot
 * they parked is unparked by the threads with sections (DS_UNPARK_AFTER of
 * their operations in a row) and parked again by the next burst. Threads
 * move items between the stack and the ring and allocate and free objects of
 * the cache; every item and object carries an owner word exchanged on every
 * take and give. A sampler reads the slots' lock words and counts parked
 * slots and slots unparked after being parked (both must occur in the rseq
 * modes). At the end every item is on the stack, in the ring, or held, once;
 * every object the cache carved is cached or held.
 */
#include "ds_stress.h"

#define ITEMS_PER_THREAD 48
#define MAX_HELD         24
#define RING_CAP         64
#define OBJECT_SIZE      32
#define BURST_OPS        50 /* a fallback thread's burst, then a pause */

struct item {
	struct oncpu_stack_node link;
	atomic_int owner; /* 0: in the stack or the ring; t + 1: held by thread t */
	int id;
};

struct object {
	void *cache_word; /* the cache may link free objects through it */
	atomic_int owner; /* t + 1 while held by thread t */
	char pad[OBJECT_SIZE - sizeof(void *) - sizeof(atomic_int)];
};
_Static_assert(sizeof(struct object) == OBJECT_SIZE, "object size");

struct worker {
	int tid;
	long ops;
	int nheld, nlive;
	struct item *held[MAX_HELD];
	struct object *live[MAX_HELD];
} __attribute__((aligned(64)));

static struct oncpu_stack *stack;
static struct oncpu_ring *ring;
static struct oncpu_cache *cache;
static struct item *items;
static int nitems;
static atomic_long parked_seen, unparked_seen;

static void take(struct worker *w, struct item *it)
{
	int was = atomic_exchange(&it->owner, w->tid + 1);
	CHECK_MSG(was == 0, "thread %d got item %d, held by %d", w->tid, it->id, was - 1);
	w->held[w->nheld++] = it;
}

static struct item *give(struct worker *w, int i)
{
	struct item *it = w->held[i];
	w->held[i] = w->held[--w->nheld];
	int was = atomic_exchange(&it->owner, 0);
	CHECK_MSG(was == w->tid + 1, "thread %d gives item %d held by %d", w->tid, it->id, was - 1);
	return it;
}

static void item_op(struct worker *w, uint64_t r)
{
	bool use_ring = (r >> 62) & 1;
	if ((r >> 8) % 2 == 0 && w->nheld < MAX_HELD) {
		void *p = use_ring ? oncpu_ring_pop(ring) : (void *)oncpu_stack_pop(stack);
		if (p)
			take(w, p);
	} else if (w->nheld > 0) {
		struct item *it = give(w, (int)((r >> 16) % (uint64_t)w->nheld));
		if (!use_ring || oncpu_ring_push(ring, it) != 0)
			oncpu_stack_push(stack, &it->link); /* ring full here: the stack */
	}
}

static void object_op(struct worker *w, uint64_t r)
{
	if ((r >> 8) % 2 == 0 && w->nlive < MAX_HELD) {
		struct object *o = oncpu_cache_alloc(cache);
		CHECK(o);
		int was = atomic_exchange(&o->owner, w->tid + 1);
		CHECK_MSG(was == 0, "thread %d got an object held by %d", w->tid, was - 1);
		w->live[w->nlive++] = o;
	} else if (w->nlive > 0) {
		int i = (int)((r >> 16) % (uint64_t)w->nlive);
		struct object *o = w->live[i];
		w->live[i] = w->live[--w->nlive];
		int was = atomic_exchange(&o->owner, 0);
		CHECK_MSG(was == w->tid + 1, "thread %d frees an object held by %d", w->tid,
		          was - 1);
		oncpu_cache_free(cache, o);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t seed = 0x7f4a7c15u + (uint64_t)w->tid * 104729;
	bool fallback = ds_worker_start_mixed(w->tid, 2);
	long ops = 0;
	while (ds_running()) {
		uint64_t r = ds_rand(&seed);
		if (r % 3 == 0)
			object_op(w, r);
		else
			item_op(w, r);
		ops++;
		if (fallback && ops % BURST_OPS == 0) {
			/* Pause long enough for the others to unpark the slots. */
			struct timespec ts = {0, 200000 + (long)((r >> 32) % 500000)};
			nanosleep(&ts, NULL);
		}
		ds_churn(&seed);
	}
	w->ops = ops;
	if (fallback)
		atomic_fetch_add(&ds.fallback_ops, ops);
	return NULL;
}

/* One lock word per slot and structure: count parked ones and unparkings. */
static void *sampler_main(void *arg)
{
	int slots = oncpu_cpu_count();
	intptr_t *last = calloc((size_t)slots * 3, sizeof(intptr_t));
	CHECK(last);
	(void)arg;
	while (ds_running()) {
		for (int i = 0; i < slots; i++) {
			const intptr_t *locks[3] = {
			    &((struct _oncpu_stack_slot *)oncpu_ptr(stack->_pcpu, i))->lock,
			    &((struct _oncpu_ring_slot *)oncpu_ptr(ring->_pcpu, i))->lock,
			    &((struct _oncpu_cache_slot *)oncpu_ptr(cache->_pcpu, i))->lock};
			for (int k = 0; k < 3; k++) {
				intptr_t v = __atomic_load_n(locks[k], __ATOMIC_RELAXED) & ~1;
				if (v != 0)
					atomic_fetch_add(&parked_seen, 1);
				else if (last[i * 3 + k] != 0)
					atomic_fetch_add(&unparked_seen, 1);
				last[i * 3 + k] = v;
			}
		}
		struct timespec ts = {0, 100000};
		nanosleep(&ts, NULL);
	}
	free(last);
	return NULL;
}

int main(int argc, char **argv)
{
	ds_init(argc, argv);
	ds.threads = 4 * ds.cpus < DS_MAX_THREADS ? 4 * ds.cpus : DS_MAX_THREADS;
	unsetenv("ONCPU_CACHE_DEBUG");
	CHECK(stack = oncpu_stack_new_flags(ONCPU_F_VCPU));
	CHECK(ring = oncpu_ring_new_flags(RING_CAP, ONCPU_F_VCPU));
	CHECK(cache = oncpu_cache_new_flags(OBJECT_SIZE, 0, ONCPU_F_VCPU));
	nitems = ds.threads * ITEMS_PER_THREAD;
	CHECK(items = calloc((size_t)nitems, sizeof(*items)));
	for (int i = 0; i < nitems; i++) {
		items[i].id = i;
		oncpu_stack_push(stack, &items[i].link);
	}
	struct worker *workers = aligned_alloc(64, sizeof(struct worker) * (size_t)ds.threads);
	CHECK(workers);
	memset(workers, 0, sizeof(struct worker) * (size_t)ds.threads);
	for (int t = 0; t < ds.threads; t++)
		workers[t].tid = t;
	pthread_t sampler;
	ds_start(worker_main, workers, sizeof(struct worker));
	CHECK(pthread_create(&sampler, NULL, sampler_main, NULL) == 0);
	ds_run_and_join();
	pthread_join(sampler, NULL);

	/* Items: each exactly once, listed with owner 0 or held by its owner. */
	unsigned char *seen = calloc((size_t)nitems, 1);
	long ops = 0, found = 0;
	CHECK(seen);
	for (struct oncpu_stack_node *l = oncpu_stack_drain(stack); l; l = l->next) {
		struct item *it = (struct item *)l;
		CHECK(it >= items && it < items + nitems);
		CHECK_MSG(seen[it->id]++ == 0, "item %d is listed twice", it->id);
		CHECK(atomic_load(&it->owner) == 0);
		CHECK_MSG(++found <= nitems, "the stack is longer than the items (cycle?)");
	}
	for (int cpu = 0; cpu < oncpu_cpu_count(); cpu++) {
		struct item *it;
		while ((it = oncpu_ring_pop_cpu(ring, cpu))) {
			CHECK(it >= items && it < items + nitems);
			CHECK_MSG(seen[it->id]++ == 0, "item %d is in the ring and elsewhere",
			          it->id);
			CHECK(atomic_load(&it->owner) == 0);
			found++;
		}
	}
	/* Objects: every one the cache carved is cached or held. */
	size_t live = 0;
	for (int t = 0; t < ds.threads; t++) {
		ops += workers[t].ops;
		for (int i = 0; i < workers[t].nheld; i++) {
			struct item *it = workers[t].held[i];
			CHECK_MSG(seen[it->id]++ == 0, "item %d held and listed", it->id);
			CHECK(atomic_load(&it->owner) == t + 1);
			found++;
		}
		live += (size_t)workers[t].nlive;
	}
	for (int i = 0; i < nitems; i++)
		CHECK_MSG(seen[i] == 1, "item %d lost", i);
	CHECK(found == nitems);
	struct oncpu_cache_stats st;
	CHECK(oncpu_cache_get_stats(cache, &st) == 0);
	CHECK_MSG(st.objects == st.cached_cpu + st.cached_depot + live,
	          "cache: %zu objects carved, %zu cached per CPU + %zu in the depot + %zu held",
	          st.objects, st.cached_cpu, st.cached_depot, live);
	for (int t = 0; t < ds.threads; t++)
		for (int i = 0; i < workers[t].nlive; i++) {
			CHECK(atomic_exchange(&workers[t].live[i]->owner, 0) == t + 1);
			oncpu_cache_free(cache, workers[t].live[i]);
		}
	CHECK(oncpu_cache_get_stats(cache, &st) == 0);
	CHECK(st.objects == st.cached_cpu + st.cached_depot);

	printf("stress.vcpu_mixed: lock words seen parked %ld times, unparked %ld times\n",
	       atomic_load(&parked_seen), atomic_load(&unparked_seen));
	if (test_expect_rseq())
		CHECK_MSG(atomic_load(&parked_seen) > 0 && atomic_load(&unparked_seen) > 0,
		          "the slots were not parked and unparked");
	else
		CHECK(atomic_load(&parked_seen) == 0); /* no sections: nothing to park */
	ds_report("stress.vcpu_mixed", ops);
	oncpu_cache_destroy(cache);
	oncpu_ring_destroy(ring);
	oncpu_stack_destroy(stack);
	free(seen);
	free(items);
	free(workers);
	return 0;
}
