/* SPDX-License-Identifier: MIT */
/*
 * desched.c - deschedule notification: the block pool, provider selection,
 * per-thread registration, tokens and the fork handling.
 *
 * Pool: blocks live in 64 KiB chunks mapped on demand (never in a huge
 * page: MADV_NOHUGEPAGE) and never unmapped,
 * so an index read from a lock word or a token always names mapped memory
 * of the right type (type-stable memory). A block is taken from a lock-free
 * free list (a Treiber stack of indices whose head carries an ABA tag) or
 * from a fresh index; it goes back when its thread exits, with its
 * generation incremented first so every token of the old thread reads
 * "gone". Allocation and release are lock-free (mmap is the only call), so
 * a thread may get its block in a signal handler.
 *
 * Per thread: the block is allocated on the thread's first use, its entry 0
 * (the on-CPU word) registered with the provider, and a pthread key
 * destructor unregisters and releases it when the thread exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "desched_owner.h"
#include "desched_pool.h"
#include "desched_provider.h"
#include "internal.h"

struct _oncpu_desched_block *_oncpu_desched_chunks[ONCPU_DESCHED_MAX_CHUNKS];
__thread uint32_t _oncpu_desched_self_index __attribute__((tls_model("initial-exec")));
uint32_t _oncpu_fork_generation;

#define CHUNK_BLOCKS (1U << ONCPU_DESCHED_CHUNK_SHIFT)
#define CHUNK_BYTES  ((size_t)CHUNK_BLOCKS * ONCPU_DESCHED_BLOCK_SIZE)

static uint32_t pool_next = 1;  /* next never-used index */
static uint64_t pool_free_head; /* ABA tag << 32 | index of the first free block */

static __thread struct _oncpu_desched_block *tls_block __attribute__((tls_model("initial-exec")));
static __thread bool tls_exiting __attribute__((tls_model("initial-exec")));

static pthread_once_t desched_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static const struct _oncpu_desched_provider *active;

/* ---- the "none" provider ---- */
static int none_probe(void)
{
	return 0;
}
static int none_register(struct _oncpu_desched_block *blk)
{
	(void)blk;
	return -ENOTSUP;
}
static int none_unregister(struct _oncpu_desched_block *blk)
{
	(void)blk;
	return 0;
}
const struct _oncpu_desched_provider _oncpu_desched_provider_none = {
    .name = "none",
    .id = ONCPU_DESCHED_PROV_NONE,
    .probe = none_probe,
    .thread_register = none_register,
    .thread_unregister = none_unregister,
};

/* ---- pool ---- */
static pid_t gettid_raw(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static struct _oncpu_desched_block *pool_pop_free(void)
{
	uint64_t head = __atomic_load_n(&pool_free_head, __ATOMIC_ACQUIRE);
	for (;;) {
		uint32_t i = (uint32_t)head;
		if (i == 0)
			return NULL;
		struct _oncpu_desched_block *blk = _oncpu_desched_block_at(i);
		/* The block may be popped and reused meanwhile: its next_free is
		 * then garbage, but the tag makes the CAS fail. Type-stable
		 * memory makes the read itself safe. */
		uint32_t next = __atomic_load_n(&blk->next_free, __ATOMIC_RELAXED);
		uint64_t nhead = (((head >> 32) + 1) << 32) | next;
		/* Acquire: the releasing thread's writes (gen, state) are seen. */
		if (__atomic_compare_exchange_n(&pool_free_head, &head, nhead, true,
		                                __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE))
			return blk;
	}
}

static void pool_push_free(struct _oncpu_desched_block *blk)
{
	uint64_t head = __atomic_load_n(&pool_free_head, __ATOMIC_RELAXED);
	uint64_t nhead;
	do {
		__atomic_store_n(&blk->next_free, (uint32_t)head, __ATOMIC_RELAXED);
		nhead = (((head >> 32) + 1) << 32) | blk->index;
		/* Release: gen and state are written before the block is visible. */
	} while (!__atomic_compare_exchange_n(&pool_free_head, &head, nhead, true, __ATOMIC_RELEASE,
	                                      __ATOMIC_RELAXED));
}

static struct _oncpu_desched_block *pool_fresh(void)
{
	uint32_t i = __atomic_fetch_add(&pool_next, 1, __ATOMIC_RELAXED);
	if (i > ONCPU_DESCHED_MAX_INDEX) {
		__atomic_store_n(&pool_next, ONCPU_DESCHED_MAX_INDEX + 1, __ATOMIC_RELAXED);
		return NULL;
	}
	uint32_t c = i >> ONCPU_DESCHED_CHUNK_SHIFT;
	if (!__atomic_load_n(&_oncpu_desched_chunks[c], __ATOMIC_ACQUIRE)) {
		void *mem = mmap(NULL, CHUNK_BYTES, PROT_READ | PROT_WRITE,
		                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			return NULL;
		/* Never in a transparent huge page: a provider that pins a
		 * block (bpf) would pin the whole 2 MiB. Fails only where the
		 * kernel has no huge pages. */
		madvise(mem, CHUNK_BYTES, MADV_NOHUGEPAGE);
		struct _oncpu_desched_block *expect = NULL;
		/* Release: the zeroed chunk is published whole. A loser never
		 * published its chunk, so unmapping it is safe. */
		if (!__atomic_compare_exchange_n(&_oncpu_desched_chunks[c], &expect, mem, false,
		                                 __ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
			munmap(mem, CHUNK_BYTES);
	}
	struct _oncpu_desched_block *blk = _oncpu_desched_block_at(i);
	blk->index = i;
	blk->self = (uint64_t)(uintptr_t)blk;
	return blk;
}

/* ---- provider selection ---- */
static const struct _oncpu_desched_provider *provider_by_name(const char *name)
{
	if (strcmp(name, "kernel") == 0)
		return &_oncpu_desched_provider_kernel;
	if (strcmp(name, "bpf") == 0)
		return &_oncpu_desched_provider_bpf;
	if (strcmp(name, "none") == 0)
		return &_oncpu_desched_provider_none;
	return NULL;
}

static void desched_thread_exit(void *blk);

static void desched_init(void)
{
	const struct _oncpu_desched_provider *order[] = {
	    &_oncpu_desched_provider_kernel,
	    &_oncpu_desched_provider_bpf,
	    &_oncpu_desched_provider_none,
	};
	const struct _oncpu_desched_provider *chosen = &_oncpu_desched_provider_none;
	const char *want = getenv("ONCPU_DESCHED_PROVIDER");

	if (want && *want && strcmp(want, "auto") != 0) {
		const struct _oncpu_desched_provider *p = provider_by_name(want);
		if (p && p->probe() == 0)
			chosen = p;
	} else {
		for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
			if (order[i]->probe() == 0) {
				chosen = order[i];
				break;
			}
		}
	}
	pthread_key_create(&exit_key, desched_thread_exit);
	_oncpu_fork_register(); /* calls _oncpu_desched_fork_child */
	__atomic_store_n(&active, chosen, __ATOMIC_RELEASE);
}

const struct _oncpu_desched_provider *_oncpu_desched_active(void)
{
	const struct _oncpu_desched_provider *p = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
	if (ONCPU_LIKELY(p))
		return p;
	pthread_once(&desched_once, desched_init);
	return active;
}

const char *oncpu_desched_provider(void)
{
	return _oncpu_desched_active()->name;
}

/* ---- per-thread registration ---- */
static void set_lib_entry(struct _oncpu_desched_block *blk)
{
	blk->entries[0] = (struct _oncpu_desched_kentry){
	    .addr = (uint64_t)(uintptr_t)&blk->oncpu,
	    .value = ONCPU_DESCHED_WORD_OFF,
	    .resume_value = ONCPU_DESCHED_WORD_ON,
	    .size = sizeof(blk->oncpu),
	    .flags = ONCPU_DESCHED_ENTRY_F_RESUME,
	};
}

/* (Re)registers blk's entries with the active provider; 0 or -errno. The
 * on-CPU word says afterwards whether the provider tracks the thread. */
static int block_register(struct _oncpu_desched_block *blk, const struct _oncpu_desched_provider *p)
{
	int r = p->thread_register(blk);
	if (r == 0) {
		blk->provider = p->id;
		/* The thread runs now; from here on the provider keeps the word
		 * true (a switch-out before this store is followed by its own
		 * switch-in write, and this store only says what is true). */
		__atomic_store_n(&blk->oncpu, ONCPU_DESCHED_WORD_ON, __ATOMIC_RELEASE);
	} else {
		blk->provider = ONCPU_DESCHED_PROV_NONE;
		__atomic_store_n(&blk->oncpu, ONCPU_DESCHED_WORD_UNTRACKED, __ATOMIC_RELEASE);
	}
	return r;
}

static struct _oncpu_desched_block *block_self_slow(void)
{
	if (tls_exiting)
		return NULL;
	const struct _oncpu_desched_provider *p = _oncpu_desched_active();
	struct _oncpu_desched_block *blk = pool_pop_free();
	if (!blk)
		blk = pool_fresh();
	if (!blk) {
		_oncpu_desched_self_index = ONCPU_DESCHED_INDEX_NONE;
		errno = ENOMEM;
		return NULL;
	}
	/* Untracked until the provider accepts the thread; release: a token
	 * reader that sees this value also sees the state below. */
	__atomic_store_n(&blk->oncpu, ONCPU_DESCHED_WORD_UNTRACKED, __ATOMIC_RELEASE);
	blk->tid = (uint32_t)gettid_raw();
	memset(blk->provider_data, 0, sizeof(blk->provider_data));
	memset(blk->words, 0, sizeof(blk->words));
	memset(&blk->entries[1], 0, sizeof(blk->entries) - sizeof(blk->entries[0]));
	set_lib_entry(blk);
	blk->nr_entries = 1;
	blk->provider = ONCPU_DESCHED_PROV_NONE;
	__atomic_store_n(&blk->state, ONCPU_DESCHED_BLOCK_LIVE, __ATOMIC_RELEASE);
	if (p->id != ONCPU_DESCHED_PROV_NONE)
		block_register(blk, p);
	tls_block = blk;
	_oncpu_desched_self_index = blk->index;
	pthread_setspecific(exit_key, blk);
	return blk;
}

void _oncpu_desched_recheck(void)
{
	struct _oncpu_desched_block *blk = tls_block;
	const struct _oncpu_desched_provider *p = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
	if (!blk || !p || !p->thread_check || blk->provider != p->id)
		return;
	if (p->thread_check(blk) != 0)
		block_register(blk, p);
}

struct _oncpu_desched_block *_oncpu_desched_block_self(void)
{
	struct _oncpu_desched_block *blk = tls_block;
	return ONCPU_LIKELY(blk != NULL) ? blk : block_self_slow();
}

static void desched_thread_exit(void *arg)
{
	struct _oncpu_desched_block *blk = arg;
	if (blk != tls_block)
		return;
	/* A provider that failed to let go may still write the block: it
	 * must never reach another thread. */
	bool reusable =
	    blk->provider == ONCPU_DESCHED_PROV_NONE || active->thread_unregister(blk) == 0;
	tls_exiting = true;
	tls_block = NULL;
	_oncpu_desched_self_index = ONCPU_DESCHED_INDEX_NONE;
	/* A waiter that still reads this block sees "off CPU" (sleep, do not
	 * spin), then a new generation: its token is stale from here on. */
	__atomic_store_n(&blk->oncpu, ONCPU_DESCHED_WORD_OFF, __ATOMIC_RELEASE);
	__atomic_store_n(&blk->gen, blk->gen + 1, __ATOMIC_RELEASE);
	blk->provider = ONCPU_DESCHED_PROV_NONE;
	blk->tid = 0;
	if (!reusable) {
		__atomic_store_n(&blk->state, ONCPU_DESCHED_BLOCK_GHOST, __ATOMIC_RELEASE);
		return;
	}
	blk->nr_entries = 0;
	__atomic_store_n(&blk->state, ONCPU_DESCHED_BLOCK_FREE, __ATOMIC_RELEASE);
	pool_push_free(blk);
}

/* In the child after fork(): only the forking thread exists. */
void _oncpu_desched_fork_child(void)
{
	if (!active)
		return; /* never initialized: nothing to fix */
	_oncpu_fork_generation++;
	uint32_t n = __atomic_load_n(&pool_next, __ATOMIC_RELAXED);
	for (uint32_t i = 1; i < n && i <= ONCPU_DESCHED_MAX_INDEX; i++) {
		struct _oncpu_desched_block *blk = _oncpu_desched_block_at(i);
		if (!blk || blk == tls_block || blk->state != ONCPU_DESCHED_BLOCK_LIVE)
			continue;
		/* A thread that was not copied: never runs, never reused (locks it
		 * held in the parent stay held; waiters sleep instead of spin). */
		blk->oncpu = ONCPU_DESCHED_WORD_OFF;
		blk->gen++;
		blk->state = ONCPU_DESCHED_BLOCK_GHOST;
		blk->provider = ONCPU_DESCHED_PROV_NONE;
		blk->tid = 0;
	}
	struct _oncpu_desched_block *self = tls_block;
	if (self) {
		self->tid = (uint32_t)gettid_raw();
		if (self->provider != ONCPU_DESCHED_PROV_NONE) {
			int r = active->atfork_child ? active->atfork_child(self)
			                             : active->thread_register(self);
			if (r != 0) {
				self->provider = ONCPU_DESCHED_PROV_NONE;
				self->oncpu = ONCPU_DESCHED_WORD_UNTRACKED;
			}
		}
	}
}

/* ---- public API ---- */
void *oncpu_desched_words(void)
{
	struct _oncpu_desched_block *blk = _oncpu_desched_block_self();
	if (!blk) {
		errno = ENOMEM;
		return NULL;
	}
	return blk->words;
}

static bool entry_valid(const struct _oncpu_desched_block *blk, const struct oncpu_desched_entry *e)
{
	uintptr_t a = (uintptr_t)e->addr, lo = (uintptr_t)blk->words;
	if (e->size != 1 && e->size != 2 && e->size != 4 && e->size != 8)
		return false;
	if (a % e->size != 0 || a < lo || a + e->size > lo + sizeof(blk->words) || a + e->size < a)
		return false;
	if (e->flags & ~ONCPU_DESCHED_F_RESUME)
		return false;
	if (e->size < 8 &&
	    ((e->value >> (8 * e->size)) != 0 || (e->resume_value >> (8 * e->size)) != 0))
		return false;
	return true;
}

int oncpu_desched_register(const struct oncpu_desched_entry *entries, unsigned int count)
{
	if (count > ONCPU_DESCHED_MAX_ENTRIES) {
		errno = E2BIG;
		return -1;
	}
	if (count > 0 && !entries) {
		errno = EINVAL;
		return -1;
	}
	struct _oncpu_desched_block *blk = _oncpu_desched_block_self();
	if (!blk) {
		errno = ENOMEM;
		return -1;
	}
	for (unsigned int i = 0; i < count; i++) {
		if (!entry_valid(blk, &entries[i])) {
			errno = EINVAL;
			return -1;
		}
	}
	const struct _oncpu_desched_provider *p = _oncpu_desched_active();
	/* A provider may read the entries at any switch of this thread: shrink
	 * to the library's entry, rewrite, then grow. The signal fences keep
	 * the compiler's order; the switch itself orders the CPU's. */
	__atomic_store_n(&blk->nr_entries, 1, __ATOMIC_RELAXED);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	for (unsigned int i = 0; i < count; i++) {
		blk->entries[1 + i] = (struct _oncpu_desched_kentry){
		    .addr = (uint64_t)(uintptr_t)entries[i].addr,
		    .value = entries[i].value,
		    .resume_value = entries[i].resume_value,
		    .size = entries[i].size,
		    .flags = entries[i].flags,
		};
	}
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (p->id == ONCPU_DESCHED_PROV_NONE) {
		if (count == 0)
			return 0;
		errno = ENOTSUP;
		return -1;
	}
	__atomic_store_n(&blk->nr_entries, 1 + count, __ATOMIC_RELAXED);
	int r = block_register(blk, p);
	if (r != 0 && count > 0) {
		/* Keep at least the on-CPU word tracked. */
		__atomic_store_n(&blk->nr_entries, 1, __ATOMIC_RELAXED);
		block_register(blk, p);
	}
	if (r != 0) {
		errno = -r;
		return -1;
	}
	return 0;
}

int oncpu_desched_unregister(void)
{
	return oncpu_desched_register(NULL, 0);
}

oncpu_desched_token_t oncpu_desched_self(void)
{
	struct _oncpu_desched_block *blk = _oncpu_desched_block_self();
	if (!blk) {
		errno = ENOMEM;
		return 0;
	}
	return ((uint64_t)blk->gen << 32) | blk->index;
}

int oncpu_desched_state(oncpu_desched_token_t token)
{
	struct _oncpu_desched_block *blk = _oncpu_desched_block_at((uint32_t)token);
	if (!blk)
		return ONCPU_DESCHED_GONE;
	/* Acquire: the generation read below is not older than the word (a
	 * word written by the block's next thread comes with its new gen). */
	uint32_t w = __atomic_load_n(&blk->oncpu, __ATOMIC_ACQUIRE);
	uint32_t gen = __atomic_load_n(&blk->gen, __ATOMIC_RELAXED);
	uint32_t state = __atomic_load_n(&blk->state, __ATOMIC_RELAXED);
	if (gen != (uint32_t)(token >> 32) || state != ONCPU_DESCHED_BLOCK_LIVE)
		return ONCPU_DESCHED_GONE;
	if (w == ONCPU_DESCHED_WORD_OFF)
		return ONCPU_DESCHED_OFF_CPU;
	if (w == ONCPU_DESCHED_WORD_ON)
		return ONCPU_DESCHED_ON_CPU;
	return ONCPU_DESCHED_UNTRACKED;
}
