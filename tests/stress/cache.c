/* SPDX-License-Identifier: MIT */
/*
 * stress/cache.c - no object handed out twice, bounded memory, exact
 * accounting, under forced aborts.
 *
 * 6 x CPUs threads allocate from three caches (CPU-indexed, vCPU-indexed,
 * and a CPU-indexed one in debug mode, which checks every free and alloc
 * itself), keep up to 64 live objects each, free them in random order, and
 * hand some to other threads through a mailbox stack, so objects are freed
 * on other threads and CPUs than the ones that allocated them. A SIGUSR1
 * storm, yields, affinity changes and delays injected into the sections
 * force aborts; in the rseq modes every fourth thread runs without rseq.
 *
 * Every live object carries its owner's tag (thread, sequence number, and a
 * check word derived from both and the address), written after alloc and
 * verified before free and on hand-over: an object given to two threads at
 * once is caught by the owner word, exchanged on alloc (it must read "free")
 * and on free (it must read the freeing thread). At the end every object is
 * freed and each cache holds exactly what it carved (cached per CPU plus in
 * the depot), within the documented bound.
 */
#include "ds_stress.h"

#define MAX_LIVE    64
#define NCACHES     3
#define OBJECT_SIZE 48
#define MAILBOX     0x7fff0000 /* owner while in the mailbox */
#define FREE_OWNER  0          /* set just before free (fresh and poisoned objects vary) */

struct object {
	struct oncpu_stack_node link; /* the mailbox */
	atomic_int owner;             /* thread + 1, MAILBOX, or FREE_OWNER */
	int cache;
	uint64_t seq;
	uint64_t check;
	char pad[OBJECT_SIZE - 32];
};
_Static_assert(sizeof(struct object) == OBJECT_SIZE, "object size");

struct worker {
	int tid;
	long ops, handed;
	uint64_t seq;
	int nlive;
	struct object *live[MAX_LIVE];
} __attribute__((aligned(64)));

static struct oncpu_cache *caches[NCACHES];
static struct oncpu_stack *mailbox;
static atomic_long live_now, live_peak, allocs;

static uint64_t check_of(const struct object *o, int owner)
{
	return ((uintptr_t)o * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)owner << 40) ^ o->seq;
}

static void own(struct worker *w, struct object *o, int cache, bool fresh)
{
	int was = atomic_exchange(&o->owner, w->tid + 1);
	if (fresh) {
		/* Fresh from the cache: never a live owner's tag. */
		CHECK_MSG(was == FREE_OWNER || was == (int)0xdbdbdbdb,
		          "thread %d allocated object %p, which %d still owns", w->tid, (void *)o,
		          was);
		o->cache = cache;
	} else {
		CHECK_MSG(was == MAILBOX, "thread %d took object %p from the mailbox, owner %d",
		          w->tid, (void *)o, was);
		CHECK_MSG(o->check == check_of(o, MAILBOX), "object %p changed in the mailbox",
		          (void *)o);
	}
	o->seq = ++w->seq;
	o->check = check_of(o, w->tid + 1);
	w->live[w->nlive++] = o;
}

/* Remove live[i] after verifying that nothing else wrote it meanwhile. */
static struct object *disown(struct worker *w, int i, int new_owner)
{
	struct object *o = w->live[i];
	w->live[i] = w->live[--w->nlive];
	CHECK_MSG(o->check == check_of(o, w->tid + 1), "object %p of thread %d overwritten",
	          (void *)o, w->tid);
	if (new_owner == MAILBOX) {
		o->seq = 0;
		o->check = check_of(o, MAILBOX);
	}
	int was = atomic_exchange(&o->owner, new_owner);
	CHECK_MSG(was == w->tid + 1, "thread %d releases object %p owned by %d", w->tid, (void *)o,
	          was);
	return o;
}

static void bump_live(long delta)
{
	long now = atomic_fetch_add(&live_now, delta) + delta;
	long peak = atomic_load(&live_peak);
	while (now > peak && !atomic_compare_exchange_weak(&live_peak, &peak, now))
		;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t seed = 0xcafe01u + (uint64_t)w->tid * 65537;
	bool fallback = ds_worker_start(w->tid);
	long ops = 0;
	while (ds_running()) {
		uint64_t r = ds_rand(&seed);
		unsigned op = (unsigned)(r % 1000);
		if (op < 480 && w->nlive < MAX_LIVE) {
			int k = (int)((r >> 32) % NCACHES);
			struct object *o = oncpu_cache_alloc(caches[k]);
			CHECK_MSG(o, "alloc: %s", strerror(errno));
			bump_live(1);
			atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
			own(w, o, k, true);
		} else if (op < 940 && w->nlive > 0) {
			struct object *o =
			    disown(w, (int)((r >> 20) % (uint64_t)w->nlive), FREE_OWNER);
			bump_live(-1);
			oncpu_cache_free(caches[o->cache], o);
		} else if (op < 970 && w->nlive > 0) {
			struct object *o =
			    disown(w, (int)((r >> 20) % (uint64_t)w->nlive), MAILBOX);
			oncpu_stack_push(mailbox, &o->link);
			w->handed++;
		} else if (w->nlive < MAX_LIVE) {
			struct oncpu_stack_node *n = oncpu_stack_pop(mailbox);
			if (n)
				own(w, (struct object *)n, ((struct object *)n)->cache, false);
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
	unsetenv("ONCPU_CACHE_DEBUG");
	CHECK(caches[0] = oncpu_cache_new_flags(OBJECT_SIZE, 0, 0));
	CHECK(caches[1] = oncpu_cache_new_flags(OBJECT_SIZE, 0, ONCPU_F_VCPU));
	CHECK(caches[2] = oncpu_cache_new_flags(OBJECT_SIZE, 0, ONCPU_CACHE_DEBUG));
	CHECK(mailbox = oncpu_stack_new());
	struct worker *workers = aligned_alloc(64, sizeof(struct worker) * (size_t)ds.threads);
	CHECK(workers);
	memset(workers, 0, sizeof(struct worker) * (size_t)ds.threads);
	for (int t = 0; t < ds.threads; t++)
		workers[t].tid = t;
	ds_start(worker_main, workers, sizeof(struct worker));
	ds_run_and_join();

	/* Free everything: what threads hold and what is in the mailbox. */
	long ops = 0, handed = 0, freed = 0;
	for (int t = 0; t < ds.threads; t++) {
		struct worker *w = &workers[t];
		ops += w->ops;
		handed += w->handed;
		while (w->nlive > 0) {
			struct object *o = disown(w, 0, FREE_OWNER);
			oncpu_cache_free(caches[o->cache], o);
			freed++;
		}
	}
	for (struct oncpu_stack_node *n = oncpu_stack_drain(mailbox); n;) {
		struct object *o = (struct object *)n;
		n = n->next;
		CHECK(atomic_exchange(&o->owner, FREE_OWNER) == MAILBOX);
		oncpu_cache_free(caches[o->cache], o);
		freed++;
	}
	CHECK_MSG(freed == atomic_load(&live_now), "%ld objects left live, %ld counted", freed,
	          atomic_load(&live_now));
	for (int k = 0; k < NCACHES; k++) {
		struct oncpu_cache_stats st;
		CHECK(oncpu_cache_get_stats(caches[k], &st) == 0);
		CHECK_MSG(st.objects == st.cached_cpu + st.cached_depot,
		          "cache %d: %zu objects carved, %zu cached per CPU + %zu in the depot", k,
		          st.objects, st.cached_cpu, st.cached_depot);
		/* Bound: the peak of live objects (all caches together, an upper
		 * bound for each), M per slot, a batch per thread plus one. */
		size_t bound = (size_t)atomic_load(&live_peak) +
		               (size_t)oncpu_cpu_count() * st.cpu_capacity +
		               (size_t)(ds.threads + 1) * st.batch;
		CHECK_MSG(st.objects <= bound, "cache %d: %zu objects carved, bound %zu", k,
		          st.objects, bound);
		printf("stress.cache: cache %d: %zu objects carved for a peak of %ld live "
		       "(bound %zu)\n",
		       k, st.objects, atomic_load(&live_peak), bound);
	}
	/* Everything can be allocated again, once each. */
	for (int k = 0; k < NCACHES; k++) {
		struct oncpu_cache_stats st;
		CHECK(oncpu_cache_get_stats(caches[k], &st) == 0);
		size_t n = st.objects;
		void **all = calloc(n, sizeof(void *));
		CHECK(all);
		for (size_t i = 0; i < n; i++) {
			all[i] = oncpu_cache_alloc(caches[k]);
			CHECK(all[i]);
			*(size_t *)all[i] = i;
		}
		for (size_t i = 0; i < n; i++)
			CHECK_MSG(*(size_t *)all[i] == i, "cache %d handed out %p twice", k,
			          all[i]);
		CHECK(oncpu_cache_get_stats(caches[k], &st) == 0);
		/* Objects cached on other CPUs' arrays are out of this thread's
		 * reach (per-CPU caching): at most those are carved again. */
		size_t again = n + (size_t)oncpu_cpu_count() * st.cpu_capacity + st.batch;
		CHECK_MSG(st.objects <= again, "cache %d grew from %zu to %zu objects (bound %zu)",
		          k, n, st.objects, again);
		for (size_t i = 0; i < n; i++)
			oncpu_cache_free(caches[k], all[i]);
		free(all);
		oncpu_cache_destroy(caches[k]);
	}
	printf("stress.cache: %ld allocations, %ld objects handed between threads\n",
	       atomic_load(&allocs), handed);
	CHECK(handed > 0);
	ds_report("stress.cache", ops);
	oncpu_stack_destroy(mailbox);
	free(workers);
	return 0;
}
