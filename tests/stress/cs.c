/* SPDX-License-Identifier: MIT */
/*
 * Stress tests of the critical sections (oncpu/cs.h), in the manner of the
 * kernel's rseq selftests: per-CPU counters (add, percpu_add in both modes,
 * deref_off_add), a per-CPU list (push with cmpeq_store, pop with
 * cmpne_load_off_store), a per-vCPU buffer (push with cmpeq_trystore_store,
 * pop with cmpeq_store on a versioned top), and a per-CPU buffer of
 * two-word items moved in and out with cmpeq_memcpy_store. Every test ends
 * with an exact invariant: sums equal the number of adds, every node or item
 * is present exactly once and intact. In the fallback modes the same
 * structures are driven through locks (the sections answer UNAVAILABLE).
 * See tests/support/stress.h for the disturbances and options.
 */
#define _GNU_SOURCE
#include <stddef.h>

#include "stress.h"

static int ncpus;

/* ---- counters: add, percpu_add (CPU and VCPU), deref_off_add ---- */

static intptr_t *add_slots, *pc_cpu, *pc_vcpu, *deref_ptrs, *deref_blocks;

#define DEREF_FIELDS 4

static intptr_t percpu_sum(intptr_t *h, size_t word)
{
	intptr_t s = 0;
	for (int c = 0; c < ncpus; c++)
		s += ((intptr_t *)oncpu_ptr(h, c))[word];
	return s;
}

static void counters_setup(void)
{
	add_slots = oncpu_percpu_alloc(sizeof(intptr_t), 0);
	pc_cpu = oncpu_percpu_alloc(sizeof(intptr_t), 0);
	pc_vcpu = oncpu_percpu_alloc(sizeof(intptr_t), 0);
	deref_ptrs = oncpu_percpu_alloc(sizeof(intptr_t), 0);
	deref_blocks = oncpu_percpu_alloc(DEREF_FIELDS * sizeof(intptr_t), 64);
	CHECK(add_slots && pc_cpu && pc_vcpu && deref_ptrs && deref_blocks);
	/* each vCPU's pointer leads to its own block */
	for (int c = 0; c < ncpus; c++)
		*(intptr_t *)oncpu_ptr(deref_ptrs, c) = (intptr_t)oncpu_ptr(deref_blocks, c);
}

static void count_result(struct stress_worker *w, int r)
{
	switch (r) {
	case ONCPU_CS_COMMITTED:
		w->committed++;
		break;
	case ONCPU_CS_CMPFAIL:
		w->cmpfail++;
		break;
	case ONCPU_CS_ABORTED:
		w->aborted++;
		break;
	case ONCPU_CS_UNAVAILABLE:
		w->unavailable++;
		break;
	default:
		CHECK(!"bad section result");
	}
}

static void fallback_add(intptr_t *h, size_t word, intptr_t d)
{
	intptr_t *p = (intptr_t *)oncpu_ptr(h, stress_fallback_cpu()) + word;
	__atomic_fetch_add(p, d, __ATOMIC_RELAXED);
}

static void counters_work(struct stress_worker *w)
{
	for (long i = 0; i < cfg.reps; i++) {
		stress_disturb(w, i);
		int r, id;
		/* oncpu_cs_add on the current CPU's slot */
		do {
			id = oncpu_cs_id(ONCPU_CPU);
			stress_stale_id(w);
			r = id < 0 ? id
			           : oncpu_cs_add(ONCPU_CPU, (intptr_t *)oncpu_ptr(add_slots, id),
			                          1, id);
			count_result(w, r);
		} while (r == ONCPU_CS_ABORTED);
		if (r == ONCPU_CS_UNAVAILABLE)
			fallback_add(add_slots, 0, 1);

		/* percpu_add: the id is read inside the section */
		do {
			r = oncpu_cs_percpu_add(ONCPU_CPU, pc_cpu, 2);
			count_result(w, r);
		} while (r == ONCPU_CS_ABORTED);
		if (r == ONCPU_CS_UNAVAILABLE)
			fallback_add(pc_cpu, 0, 2);
		do {
			r = oncpu_cs_percpu_add(ONCPU_VCPU, pc_vcpu, 3);
			count_result(w, r);
		} while (r == ONCPU_CS_ABORTED);
		if (r == ONCPU_CS_UNAVAILABLE)
			fallback_add(pc_vcpu, 0, 3);

		/* deref_off_add through the vCPU's pointer, one field per worker */
		ptrdiff_t off = (ptrdiff_t)(w->idx % DEREF_FIELDS) * (ptrdiff_t)sizeof(intptr_t);
		do {
			id = oncpu_cs_id(ONCPU_VCPU);
			stress_stale_id(w);
			r = id < 0 ? id
			           : oncpu_cs_deref_off_add(ONCPU_VCPU,
			                                    (intptr_t *)oncpu_ptr(deref_ptrs, id),
			                                    off, 1, id);
			count_result(w, r);
		} while (r == ONCPU_CS_ABORTED);
		if (r == ONCPU_CS_UNAVAILABLE)
			fallback_add(deref_blocks, (size_t)(w->idx % DEREF_FIELDS), 1);
	}
}

static void counters_verify(void)
{
	intptr_t n = (intptr_t)cfg.threads * cfg.reps;
	CHECK_MSG(percpu_sum(add_slots, 0) == n, "add: %ld of %ld", (long)percpu_sum(add_slots, 0),
	          (long)n);
	CHECK_MSG(percpu_sum(pc_cpu, 0) == 2 * n, "percpu_add cpu: %ld of %ld",
	          (long)percpu_sum(pc_cpu, 0), (long)(2 * n));
	CHECK_MSG(percpu_sum(pc_vcpu, 0) == 3 * n, "percpu_add vcpu: %ld of %ld",
	          (long)percpu_sum(pc_vcpu, 0), (long)(3 * n));
	for (int f = 0; f < DEREF_FIELDS; f++) {
		intptr_t want = 0;
		for (int t = 0; t < cfg.threads; t++)
			want += t % DEREF_FIELDS == f ? cfg.reps : 0;
		CHECK_MSG(percpu_sum(deref_blocks, (size_t)f) == want, "deref field %d: %ld of %ld",
		          f, (long)percpu_sum(deref_blocks, (size_t)f), (long)want);
	}
	/* the pointers themselves were never written */
	for (int c = 0; c < ncpus; c++)
		CHECK(*(intptr_t *)oncpu_ptr(deref_ptrs, c) ==
		      (intptr_t)oncpu_ptr(deref_blocks, c));
	oncpu_percpu_free(add_slots);
	oncpu_percpu_free(pc_cpu);
	oncpu_percpu_free(pc_vcpu);
	oncpu_percpu_free(deref_ptrs);
	oncpu_percpu_free(deref_blocks);
}

/* ---- per-CPU list: push = cmpeq_store, pop = cmpne_load_off_store ---- */

#define LIST_NODES 1024

struct node {
	intptr_t value; /* LIST_NODES * 1000 + index: checks integrity */
	intptr_t next;  /* the link the pop follows (voff) */
	int owned;      /* 1 while a worker holds the node: detects double pops */
};

static struct node *nodes;
static intptr_t *heads; /* percpu: the list head of each CPU */

static void list_setup(void)
{
	nodes = calloc(LIST_NODES, sizeof(*nodes));
	heads = oncpu_percpu_alloc(sizeof(intptr_t), 0);
	CHECK(nodes && heads);
	stress_locks_init();
	/* spread the nodes over the CPUs we may run on */
	for (int i = 0; i < LIST_NODES; i++) {
		int cpu = test_allowed_nth(i % test_allowed_count());
		intptr_t *head = oncpu_ptr(heads, cpu);
		nodes[i].value = LIST_NODES * 1000 + i;
		nodes[i].next = *head;
		*head = (intptr_t)&nodes[i];
	}
}

static struct node *list_pop(struct stress_worker *w)
{
	for (;;) {
		int id = oncpu_cs_id(ONCPU_CPU);
		if (id < 0) {
			count_result(w, id);
			int c = stress_fallback_cpu();
			intptr_t *head = oncpu_ptr(heads, c);
			pthread_mutex_lock(&stress_locks[c]);
			struct node *n = (struct node *)*head;
			if (n)
				*head = n->next;
			pthread_mutex_unlock(&stress_locks[c]);
			return n;
		}
		intptr_t load = 0;
		stress_stale_id(w);
		int r = oncpu_cs_cmpne_load_off_store(ONCPU_CPU, (intptr_t *)oncpu_ptr(heads, id),
		                                      0, offsetof(struct node, next), &load, id);
		count_result(w, r);
		if (r == ONCPU_CS_COMMITTED) {
			CHECK(load != 0);
			return (struct node *)load;
		}
		if (r == ONCPU_CS_CMPFAIL)
			return NULL; /* this CPU's list is empty */
	}
}

static void list_push(struct stress_worker *w, struct node *n)
{
	for (;;) {
		int id = oncpu_cs_id(ONCPU_CPU);
		if (id < 0) {
			count_result(w, id);
			int c = stress_fallback_cpu();
			intptr_t *head = oncpu_ptr(heads, c);
			pthread_mutex_lock(&stress_locks[c]);
			n->next = *head;
			*head = (intptr_t)n;
			pthread_mutex_unlock(&stress_locks[c]);
			return;
		}
		intptr_t *head = oncpu_ptr(heads, id);
		intptr_t old = __atomic_load_n(head, __ATOMIC_RELAXED);
		n->next = old;
		stress_stale_id(w);
		int r = oncpu_cs_cmpeq_store(ONCPU_CPU, head, old, (intptr_t)n, id);
		count_result(w, r);
		if (r == ONCPU_CS_COMMITTED)
			return;
	}
}

static void list_work(struct stress_worker *w)
{
	for (long i = 0; i < cfg.reps; i++) {
		stress_disturb(w, i);
		struct node *n = list_pop(w);
		if (!n)
			continue;
		CHECK(n >= nodes && n < nodes + LIST_NODES);
		CHECK_MSG(__atomic_exchange_n(&n->owned, 1, __ATOMIC_ACQ_REL) == 0,
		          "node %ld popped twice", (long)(n - nodes));
		CHECK(n->value == LIST_NODES * 1000 + (n - nodes));
		if (test_rand(&w->rng) % 16 == 0)
			sched_yield(); /* hold it a while, maybe move to another CPU */
		__atomic_store_n(&n->owned, 0, __ATOMIC_RELEASE);
		list_push(w, n);
	}
}

static void list_verify(void)
{
	char *seen = calloc(LIST_NODES, 1);
	CHECK(seen);
	int count = 0;
	for (int c = 0; c < ncpus; c++) {
		for (intptr_t p = *(intptr_t *)oncpu_ptr(heads, c); p;
		     p = ((struct node *)p)->next) {
			struct node *n = (struct node *)p;
			CHECK(n >= nodes && n < nodes + LIST_NODES);
			CHECK_MSG(!seen[n - nodes], "node %ld listed twice", (long)(n - nodes));
			seen[n - nodes] = 1;
			CHECK(n->value == LIST_NODES * 1000 + (n - nodes) && !n->owned);
			CHECK(++count <= LIST_NODES);
		}
	}
	CHECK_MSG(count == LIST_NODES, "list: %d of %d nodes left", count, LIST_NODES);
	free(seen);
	free(nodes);
	oncpu_percpu_free(heads);
}

/*
 * ---- buffers with a versioned top: seq << 20 | top ----
 * Every commit bumps seq, so a compare on the version word fails if
 * anything changed since it was read (no ABA). The item read before a
 * pop's commit is therefore the one the commit removes.
 */
#define BUF_ITEMS 512
#define TOP_BITS  20
#define TOP_MASK  (((intptr_t)1 << TOP_BITS) - 1)

static intptr_t version_next(intptr_t ver, intptr_t top)
{
	return ((ver >> TOP_BITS) + 1) << TOP_BITS | top;
}

/* ---- per-vCPU buffer: push = cmpeq_trystore_store, pop = cmpeq_store ---- */

struct buf {
	intptr_t ver;
	intptr_t slot[BUF_ITEMS];
};

static struct buf *bufs; /* percpu */
static int *item_owned;

static void buffer_setup(void)
{
	bufs = oncpu_percpu_alloc(sizeof(struct buf), 64);
	item_owned = calloc(BUF_ITEMS + 1, sizeof(int));
	CHECK(bufs && item_owned);
	stress_locks_init();
	for (intptr_t item = 1; item <= BUF_ITEMS; item++) {
		struct buf *b =
		    oncpu_ptr(bufs, test_allowed_nth((int)(item % test_allowed_count())));
		intptr_t top = b->ver & TOP_MASK;
		b->slot[top] = item;
		b->ver = version_next(b->ver, top + 1);
	}
}

static intptr_t buffer_pop(struct stress_worker *w)
{
	for (;;) {
		int id = oncpu_cs_id(ONCPU_VCPU);
		if (id < 0) {
			count_result(w, id);
			int c = stress_fallback_cpu();
			struct buf *b = oncpu_ptr(bufs, c);
			intptr_t item = 0;
			pthread_mutex_lock(&stress_locks[c]);
			intptr_t top = b->ver & TOP_MASK;
			if (top) {
				item = b->slot[top - 1];
				b->ver = version_next(b->ver, top - 1);
			}
			pthread_mutex_unlock(&stress_locks[c]);
			return item;
		}
		struct buf *b = oncpu_ptr(bufs, id);
		intptr_t ver = __atomic_load_n(&b->ver, __ATOMIC_RELAXED);
		intptr_t top = ver & TOP_MASK;
		if (top == 0)
			return 0;
		CHECK(top <= BUF_ITEMS);
		intptr_t item = __atomic_load_n(&b->slot[top - 1], __ATOMIC_RELAXED);
		stress_stale_id(w);
		int r =
		    oncpu_cs_cmpeq_store(ONCPU_VCPU, &b->ver, ver, version_next(ver, top - 1), id);
		count_result(w, r);
		if (r == ONCPU_CS_COMMITTED)
			return item;
	}
}

static void buffer_push(struct stress_worker *w, intptr_t item)
{
	for (;;) {
		int id = oncpu_cs_id(ONCPU_VCPU);
		if (id < 0) {
			count_result(w, id);
			int c = stress_fallback_cpu();
			struct buf *b = oncpu_ptr(bufs, c);
			pthread_mutex_lock(&stress_locks[c]);
			intptr_t top = b->ver & TOP_MASK;
			CHECK(top < BUF_ITEMS);
			b->slot[top] = item;
			b->ver = version_next(b->ver, top + 1);
			pthread_mutex_unlock(&stress_locks[c]);
			return;
		}
		struct buf *b = oncpu_ptr(bufs, id);
		intptr_t ver = __atomic_load_n(&b->ver, __ATOMIC_RELAXED);
		intptr_t top = ver & TOP_MASK;
		CHECK(top < BUF_ITEMS);
		stress_stale_id(w);
		int r = oncpu_cs_cmpeq_trystore_store(ONCPU_VCPU, ONCPU_RELEASE, &b->ver, ver,
		                                      &b->slot[top], item,
		                                      version_next(ver, top + 1), id);
		count_result(w, r);
		if (r == ONCPU_CS_COMMITTED)
			return;
	}
}

static void buffer_work(struct stress_worker *w)
{
	for (long i = 0; i < cfg.reps; i++) {
		stress_disturb(w, i);
		intptr_t item = buffer_pop(w);
		if (!item)
			continue;
		CHECK(item >= 1 && item <= BUF_ITEMS);
		CHECK_MSG(__atomic_exchange_n(&item_owned[item], 1, __ATOMIC_ACQ_REL) == 0,
		          "item %ld popped twice", (long)item);
		if (test_rand(&w->rng) % 16 == 0)
			sched_yield();
		__atomic_store_n(&item_owned[item], 0, __ATOMIC_RELEASE);
		buffer_push(w, item);
	}
}

static void buffer_verify(void)
{
	char *seen = calloc(BUF_ITEMS + 1, 1);
	CHECK(seen);
	int count = 0;
	for (int c = 0; c < ncpus; c++) {
		struct buf *b = oncpu_ptr(bufs, c);
		intptr_t top = b->ver & TOP_MASK;
		CHECK(top <= BUF_ITEMS);
		for (intptr_t k = 0; k < top; k++) {
			intptr_t item = b->slot[k];
			CHECK_MSG(item >= 1 && item <= BUF_ITEMS, "garbage item %ld", (long)item);
			CHECK_MSG(!seen[item], "item %ld buffered twice", (long)item);
			seen[item] = 1;
			count++;
		}
	}
	CHECK_MSG(count == BUF_ITEMS, "buffer: %d of %d items left", count, BUF_ITEMS);
	free(seen);
	free(item_owned);
	oncpu_percpu_free(bufs);
}

/* ---- per-CPU buffer of two-word items: cmpeq_memcpy_store both ways ---- */

#define MAGIC ((intptr_t)0x5a5a5a5a5a5a5a5aLL)

struct item {
	intptr_t id;
	intptr_t check; /* id ^ MAGIC: a torn or stale copy shows */
};

struct mbuf {
	intptr_t ver;
	intptr_t pad;
	struct item slot[BUF_ITEMS];
};

static struct mbuf *mbufs; /* percpu */

static void memcpy_setup(void)
{
	mbufs = oncpu_percpu_alloc(sizeof(struct mbuf), 64);
	item_owned = calloc(BUF_ITEMS + 1, sizeof(int));
	CHECK(mbufs && item_owned);
	stress_locks_init();
	for (intptr_t id = 1; id <= BUF_ITEMS; id++) {
		struct mbuf *b =
		    oncpu_ptr(mbufs, test_allowed_nth((int)(id % test_allowed_count())));
		intptr_t top = b->ver & TOP_MASK;
		b->slot[top] = (struct item){id, id ^ MAGIC};
		b->ver = version_next(b->ver, top + 1);
	}
}

/* Pops into *out; false when the current CPU's buffer is empty. */
static bool memcpy_pop(struct stress_worker *w, struct item *out)
{
	for (;;) {
		int id = oncpu_cs_id(ONCPU_CPU);
		if (id < 0) {
			count_result(w, id);
			int c = stress_fallback_cpu();
			struct mbuf *b = oncpu_ptr(mbufs, c);
			bool got = false;
			pthread_mutex_lock(&stress_locks[c]);
			intptr_t top = b->ver & TOP_MASK;
			if (top) {
				*out = b->slot[top - 1];
				b->ver = version_next(b->ver, top - 1);
				got = true;
			}
			pthread_mutex_unlock(&stress_locks[c]);
			return got;
		}
		struct mbuf *b = oncpu_ptr(mbufs, id);
		intptr_t ver = __atomic_load_n(&b->ver, __ATOMIC_RELAXED);
		intptr_t top = ver & TOP_MASK;
		if (top == 0)
			return false;
		CHECK(top <= BUF_ITEMS);
		stress_stale_id(w);
		/* the copy happens inside the section: after an abort *out is garbage */
		int r = oncpu_cs_cmpeq_memcpy_store(ONCPU_CPU, ONCPU_RELAXED, &b->ver, ver, out,
		                                    &b->slot[top - 1], sizeof(*out),
		                                    version_next(ver, top - 1), id);
		count_result(w, r);
		if (r == ONCPU_CS_COMMITTED)
			return true;
	}
}

static void memcpy_push(struct stress_worker *w, const struct item *it)
{
	for (;;) {
		int id = oncpu_cs_id(ONCPU_CPU);
		if (id < 0) {
			count_result(w, id);
			int c = stress_fallback_cpu();
			struct mbuf *b = oncpu_ptr(mbufs, c);
			pthread_mutex_lock(&stress_locks[c]);
			intptr_t top = b->ver & TOP_MASK;
			CHECK(top < BUF_ITEMS);
			b->slot[top] = *it;
			b->ver = version_next(b->ver, top + 1);
			pthread_mutex_unlock(&stress_locks[c]);
			return;
		}
		struct mbuf *b = oncpu_ptr(mbufs, id);
		intptr_t ver = __atomic_load_n(&b->ver, __ATOMIC_RELAXED);
		intptr_t top = ver & TOP_MASK;
		CHECK(top < BUF_ITEMS);
		stress_stale_id(w);
		int r = oncpu_cs_cmpeq_memcpy_store(ONCPU_CPU, ONCPU_RELEASE, &b->ver, ver,
		                                    &b->slot[top], it, sizeof(*it),
		                                    version_next(ver, top + 1), id);
		count_result(w, r);
		if (r == ONCPU_CS_COMMITTED)
			return;
	}
}

static void memcpy_work(struct stress_worker *w)
{
	for (long i = 0; i < cfg.reps; i++) {
		stress_disturb(w, i);
		struct item it;
		if (!memcpy_pop(w, &it))
			continue;
		CHECK_MSG(it.id >= 1 && it.id <= BUF_ITEMS && it.check == (it.id ^ MAGIC),
		          "torn item {%ld, %lx}", (long)it.id, (long)it.check);
		CHECK_MSG(__atomic_exchange_n(&item_owned[it.id], 1, __ATOMIC_ACQ_REL) == 0,
		          "item %ld popped twice", (long)it.id);
		if (test_rand(&w->rng) % 16 == 0)
			sched_yield();
		__atomic_store_n(&item_owned[it.id], 0, __ATOMIC_RELEASE);
		memcpy_push(w, &it);
	}
}

static void memcpy_verify(void)
{
	char *seen = calloc(BUF_ITEMS + 1, 1);
	CHECK(seen);
	int count = 0;
	for (int c = 0; c < ncpus; c++) {
		struct mbuf *b = oncpu_ptr(mbufs, c);
		intptr_t top = b->ver & TOP_MASK;
		CHECK(top <= BUF_ITEMS);
		for (intptr_t k = 0; k < top; k++) {
			struct item it = b->slot[k];
			CHECK_MSG(it.id >= 1 && it.id <= BUF_ITEMS && it.check == (it.id ^ MAGIC),
			          "torn item {%ld, %lx}", (long)it.id, (long)it.check);
			CHECK_MSG(!seen[it.id], "item %ld buffered twice", (long)it.id);
			seen[it.id] = 1;
			count++;
		}
	}
	CHECK_MSG(count == BUF_ITEMS, "memcpy buffer: %d of %d items left", count, BUF_ITEMS);
	free(seen);
	free(item_owned);
	oncpu_percpu_free(mbufs);
}

static const struct stress_test tests[] = {
    {"counters", counters_setup, counters_work, counters_verify, NULL, NULL},
    {"list", list_setup, list_work, list_verify, NULL, NULL},
    {"buffer", buffer_setup, buffer_work, buffer_verify, NULL, NULL},
    {"memcpy", memcpy_setup, memcpy_work, memcpy_verify, NULL, NULL},
};

int main(int argc, char **argv)
{
	stress_init(argc, argv, 250000);
	ncpus = oncpu_cpu_count();
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		stress_run(&tests[i]);
	printf("stress cs: all checks passed (%s, %d threads, %ld reps)\n", test_mode(),
	       cfg.threads, cfg.reps);
	return 0;
}
