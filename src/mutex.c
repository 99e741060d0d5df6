/* SPDX-License-Identifier: MIT */
/*
 * mutex.c - the adaptive mutex (contract in oncpu/mutex.h).
 *
 * _word (the futex word): the owner in the low 30 bits (0: free; a block
 * index, 1 .. ONCPU_DESCHED_MAX_INDEX; ANON for an owner without a block,
 * i.e. an exiting thread or ENOMEM) and WAITERS (bit 31): a thread may
 * sleep in futex_wait() on _word.
 *
 * _handoff: the block index of the one starving sleeper, or 0; it is also
 * the futex word that sleeper waits on.
 *
 * _aux: the number of spinners, the adaptive spin estimate, and the fork
 * generation they belong to (an _aux of an older generation was copied by
 * fork() and reads as zero).
 *
 * No lost wake-up. A waiter sets WAITERS before futex_wait(), which sleeps
 * only while _word still holds the value with WAITERS. Unlock exchanges
 * _word for 0; when WAITERS was set it either wakes one sleeper (which sets
 * WAITERS again before it sleeps, or takes the lock with it set: a thread
 * that has slept always takes it with WAITERS, since others may sleep too),
 * or, when a spinner exists, leaves WAITERS in the free word and no wake-up:
 * whoever takes the lock next inherits WAITERS and wakes at its unlock. The
 * skip is safe because unlock reads the spinner count after its release and
 * a spinner drops its count before it reads _word (both sequentially
 * consistent): a spinner that unlock counted still sees the free lock.
 *
 * Hand-off (anti-starvation). A sleeper that has waited
 * ONCPU_MUTEX_STARVATION_NS stores its index in _handoff (if no other
 * thread is there), then reads _word: free, it takes the lock; else it
 * sleeps on _handoff. Every unlock reads _handoff after its release (both
 * sequentially consistent, so one of the two sees the other) and, when it
 * names a live thread, moves the free lock to it (CAS 0 -> index), clears
 * _handoff and wakes it; when another thread took the lock in between,
 * that thread's unlock does it. Spinners leave the lock alone while
 * _handoff is set. A _handoff that fork() copied names a block that is not
 * live in the child and is dropped.
 *
 * Spinning: only while the owner's on-CPU word says it runs (bounded by
 * SPIN_ONCPU_MAX); for owners nobody tracks, glibc's adaptive estimate
 * (at most SPIN_UNTRACKED_MAX); never with the owner off CPU; by at most
 * as many threads at once as there are CPUs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "desched_provider.h"
#include "internal.h"

#define OWNER_MASK 0x3FFFFFFFU
#define OWNER_ANON 0x3FFFFFFFU
#define WAITERS    0x80000000U
_Static_assert(ONCPU_DESCHED_MAX_INDEX < OWNER_ANON, "owner ids");

/* _aux: spinners (12 bits), sleepers (20), spin estimate (8), fork
 * generation (24). */
#define AUX_SPINNER        1ULL
#define AUX_SPINNERS_MASK  0xFFFULL
#define AUX_SLEEPER        (1ULL << 12)
#define AUX_SLEEPERS_SHIFT 12
#define AUX_SLEEPERS_MASK  0xFFFFFULL
#define AUX_SPINS_SHIFT    32
#define AUX_SPINS_MASK     (0xFFULL << AUX_SPINS_SHIFT)
#define AUX_GEN_SHIFT      40
#define AUX_GEN_MASK       0xFFFFFFULL

/* Spin bounds, in pause instructions. */
#define SPIN_QUICK         32   /* spins shorter than this are not counted in _aux */
#define SPIN_BACKOFF_MAX   16   /* pauses between two reads of the lock word */
#define SPIN_ONCPU_MAX     4000 /* owner running: its critical section may be long */
#define SPIN_UNTRACKED_MAX 100  /* glibc's default max_adaptive_count */

static uint32_t max_spinners;
int _oncpu_mutex_ignore_provider;

static inline uint64_t aux_gen(void)
{
	uint32_t g = __atomic_load_n(&_oncpu_fork_generation, __ATOMIC_RELAXED);
	return ((uint64_t)g & AUX_GEN_MASK) << AUX_GEN_SHIFT;
}
/* _aux as seen by this process: the state of an older generation is zero. */
static inline uint64_t aux_valid(uint64_t a)
{
	uint64_t gen = aux_gen();
	return (a & ~((1ULL << AUX_GEN_SHIFT) - 1)) == gen ? a : gen;
}
static inline uint32_t aux_spinners(uint64_t a)
{
	return (uint32_t)(a & AUX_SPINNERS_MASK);
}
static inline uint32_t aux_sleepers(uint64_t a)
{
	return (uint32_t)((a >> AUX_SLEEPERS_SHIFT) & AUX_SLEEPERS_MASK);
}
static inline uint32_t aux_spins(uint64_t a)
{
	return (uint32_t)((a & AUX_SPINS_MASK) >> AUX_SPINS_SHIFT);
}

/* _aux += add - sub (sequentially consistent); counts of an older fork
 * generation were dropped, so there is nothing to take from them. */
static void aux_add(oncpu_mutex_t *m, uint64_t add, uint64_t sub)
{
	uint64_t a = __atomic_load_n(&m->_aux, __ATOMIC_RELAXED), nw;
	do {
		uint64_t base = aux_valid(a);
		nw = base == a ? a + add - sub : base + add;
	} while (!__atomic_compare_exchange_n(&m->_aux, &a, nw, true, __ATOMIC_SEQ_CST,
	                                      __ATOMIC_RELAXED));
}

/*
 * {_word, _handoff} as one 64-bit value, for the two transitions that must
 * change both at once: a hand-off (free lock and request -> lock owned by
 * the requester, no request) and a requester taking the free lock itself.
 * Every other access is 32 bits wide; mixing the sizes on one naturally
 * aligned location is what the kernel's qspinlock does (xchg_tail), and
 * x86-64 and AArch64 give it single-copy atomicity.
 */
_Static_assert(offsetof(struct oncpu_mutex, _handoff) == 4 && sizeof(oncpu_mutex_t) == 16,
               "pair layout");
static inline uint64_t *pair_of(oncpu_mutex_t *m)
{
	return (uint64_t *)(void *)m; /* 8-byte aligned: _aux is a uint64_t */
}
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define PAIR(word, handoff) ((uint64_t)(word) | (uint64_t)(handoff) << 32)
#define PAIR_WORD(p)        ((uint32_t)(p))
#define PAIR_HANDOFF(p)     ((uint32_t)((p) >> 32))
#else
#define PAIR(word, handoff) ((uint64_t)(handoff) | (uint64_t)(word) << 32)
#define PAIR_WORD(p)        ((uint32_t)((p) >> 32))
#define PAIR_HANDOFF(p)     ((uint32_t)(p))
#endif

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

static long futex(uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, uaddr, op, val, ts, NULL, 0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint32_t self_id(void)
{
	uint32_t id = _oncpu_desched_self_index;
	if (ONCPU_UNLIKELY(id == 0)) {
		_oncpu_desched_block_self();
		id = _oncpu_desched_self_index;
	}
	return id == ONCPU_DESCHED_INDEX_NONE || id == 0 ? OWNER_ANON : id;
}

/* The owner's on-CPU word, or UNTRACKED for owners without a block. */
static inline uint32_t owner_state(const struct _oncpu_desched_block *blk)
{
	return blk ? __atomic_load_n(&blk->oncpu, __ATOMIC_RELAXED) : ONCPU_DESCHED_WORD_UNTRACKED;
}

/* Take the free lock from state w. A thread that has slept keeps WAITERS
 * set: other sleepers may remain, and its unlock must look for them. */
static inline bool take(oncpu_mutex_t *m, uint32_t w, uint32_t self, bool slept)
{
	uint32_t nw = self | (w & WAITERS) | (slept ? WAITERS : 0);
	return __atomic_compare_exchange_n(&m->_word, &w, nw, false, __ATOMIC_ACQUIRE,
	                                   __ATOMIC_RELAXED);
}

/* Count the caller as a spinner, unless enough threads spin already. */
static bool spinner_enter(oncpu_mutex_t *m)
{
	uint64_t a = __atomic_load_n(&m->_aux, __ATOMIC_RELAXED), nw;
	do {
		nw = aux_valid(a);
		if (aux_spinners(nw) >= max_spinners)
			return false;
		nw += AUX_SPINNER;
	} while (!__atomic_compare_exchange_n(&m->_aux, &a, nw, true, __ATOMIC_SEQ_CST,
	                                      __ATOMIC_RELAXED));
	return true;
}

/* Fold a spin of `spun` pauses on an untracked owner into the estimate
 * (glibc's: est += (spun - est) / 8), leaving the spinner count if
 * `counted`. Writes _aux only when something changes. */
static void spin_done(oncpu_mutex_t *m, bool counted, bool untracked, uint32_t spun)
{
	uint64_t a = __atomic_load_n(&m->_aux, __ATOMIC_RELAXED), nw;
	do {
		uint64_t base = aux_valid(a);
		nw = base;
		if (counted && base == a)
			nw -= AUX_SPINNER;
		if (untracked) {
			uint32_t est = aux_spins(nw);
			est += (uint32_t)((int32_t)(spun - est) / 8);
			nw = (nw & ~AUX_SPINS_MASK) | ((uint64_t)(est & 0xFF) << AUX_SPINS_SHIFT);
		}
		if (nw == a)
			return;
	} while (!__atomic_compare_exchange_n(&m->_aux, &a, nw, true, __ATOMIC_SEQ_CST,
	                                      __ATOMIC_RELAXED));
}

/*
 * Spin while spinning can pay off. Returns true with the lock held. The
 * first SPIN_QUICK pauses are not announced in _aux (most spins end there,
 * and announcing costs two atomic operations on the lock's line); a longer
 * spin counts itself as a spinner, which lets unlock skip a wake-up.
 */
static bool spin(oncpu_mutex_t *m, uint32_t self, bool slept)
{
	uint64_t a = aux_valid(__atomic_load_n(&m->_aux, __ATOMIC_RELAXED));
	uint32_t untracked_max = aux_spins(a) * 2 + 10;
	if (untracked_max > SPIN_UNTRACKED_MAX)
		untracked_max = SPIN_UNTRACKED_MAX;
	uint32_t owner = 0, spun = 0, backoff = 1;
	const struct _oncpu_desched_block *blk = NULL;
	bool got = false, counted = false, untracked = false;
	while (spun < SPIN_ONCPU_MAX) {
		uint32_t w = __atomic_load_n(&m->_word, __ATOMIC_RELAXED);
		if ((w & OWNER_MASK) == 0) {
			/* A starving sleeper is owed the lock: leave it. */
			if (__atomic_load_n(&m->_handoff, __ATOMIC_RELAXED) != 0)
				break;
			if (take(m, w, self, slept)) {
				got = true;
				break;
			}
			continue;
		}
		if ((w & OWNER_MASK) != owner) {
			owner = w & OWNER_MASK;
			blk = owner == OWNER_ANON || _oncpu_mutex_ignore_provider
			          ? NULL
			          : _oncpu_desched_block_at(owner);
		}
		uint32_t st = owner_state(blk);
		if (st == ONCPU_DESCHED_WORD_OFF)
			break; /* the owner cannot release it before it runs again */
		if (st != ONCPU_DESCHED_WORD_ON) {
			untracked = true;
			if (spun >= untracked_max)
				break;
		}
		if (!counted && spun >= SPIN_QUICK) {
			if (!spinner_enter(m))
				break; /* enough threads spin: sleep */
			counted = true;
		}
		/* Exponential backoff: fewer reads of a line the owner writes. */
		for (uint32_t i = 0; i < backoff; i++)
			cpu_relax();
		spun += backoff;
		if (backoff < SPIN_BACKOFF_MAX)
			backoff <<= 1;
	}
	/* Leave the count (sequentially consistent, before the caller reads
	 * _word again: see unlock_slow). */
	if (counted || untracked)
		spin_done(m, counted, untracked, spun);
	return got;
}

/* Is blk's thread alive in this process (a fork child's copy of another
 * thread's block is not)? */
static bool index_live(uint32_t index)
{
	const struct _oncpu_desched_block *blk = _oncpu_desched_block_at(index);
	return blk && __atomic_load_n(&blk->state, __ATOMIC_RELAXED) == ONCPU_DESCHED_BLOCK_LIVE;
}

/*
 * The starving sleeper's wait, after it stored self in _handoff. Returns
 * with the lock held: handed over by an unlock, or taken free (clearing the
 * request in the same CAS, so that no unlock can hand the lock over to a
 * thread that no longer waits).
 */
static void wait_handoff(oncpu_mutex_t *m, uint32_t self)
{
	uint64_t *pair = pair_of(m);
	for (;;) {
		/* Seq-cst after the request store: an unlock that did not see the
		 * request released the lock before this load. */
		uint64_t p = __atomic_load_n(pair, __ATOMIC_SEQ_CST);
		uint32_t w = PAIR_WORD(p);
		if ((w & OWNER_MASK) == self)
			return; /* handed over; the request went with it */
		if ((w & OWNER_MASK) == 0) {
			if (__atomic_compare_exchange_n(pair, &p, PAIR(self | WAITERS, 0), false,
			                                __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
				return;
			continue;
		}
		futex(&m->_handoff, FUTEX_WAIT_PRIVATE, self, NULL);
	}
}

static void lock_slow(oncpu_mutex_t *m)
{
	uint32_t self = self_id();
	bool slept = false;
	uint64_t since = 0;

	if (ONCPU_UNLIKELY(max_spinners == 0)) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		uint32_t cpus = n < 1                         ? 1U
		                : n > (long)AUX_SPINNERS_MASK ? (uint32_t)AUX_SPINNERS_MASK
		                                              : (uint32_t)n;
		__atomic_store_n(&max_spinners, cpus, __ATOMIC_RELAXED);
	}
	for (;;) {
		if (spin(m, self, slept))
			return;
		/* Sleep until woken; a wake-up goes back to spinning. */
		for (;;) {
			uint32_t w = __atomic_load_n(&m->_word, __ATOMIC_SEQ_CST);
			/* Free: take it, unless a starving sleeper is owed it (then
			 * sleep until that one's unlock). */
			if ((w & OWNER_MASK) == 0 &&
			    __atomic_load_n(&m->_handoff, __ATOMIC_RELAXED) == 0) {
				if (take(m, w, self, true))
					return;
				continue;
			}
			/* WAITERS before sleeping: the owner's unlock wakes. */
			if (!(w & WAITERS)) {
				if (!__atomic_compare_exchange_n(&m->_word, &w, w | WAITERS, false,
				                                 __ATOMIC_RELAXED,
				                                 __ATOMIC_RELAXED))
					continue;
				w |= WAITERS;
			}
			uint64_t now = now_ns();
			if (since == 0) {
				since = now;
			} else if (now - since >= ONCPU_MUTEX_STARVATION_NS && self != OWNER_ANON) {
				uint32_t none = 0;
				if (__atomic_compare_exchange_n(&m->_handoff, &none, self, false,
				                                __ATOMIC_SEQ_CST,
				                                __ATOMIC_RELAXED)) {
					wait_handoff(m, self);
					return;
				}
				/* another sleeper is owed the lock first: wait normally */
			}
			/* Counted after WAITERS is set and before the futex reads
			 * _word: an unlock that saw this WAITERS and reads the count
			 * after its release sees this sleeper, or this futex_wait()
			 * sees that release. Timed, so that a sleeper passed over by
			 * spinners notices that it starves. */
			struct timespec ts = {0, ONCPU_MUTEX_STARVATION_NS};
			aux_add(m, AUX_SLEEPER, 0);
			long r = futex(&m->_word, FUTEX_WAIT_PRIVATE, w, &ts);
			aux_add(m, 0, AUX_SLEEPER);
			slept = true;
			if (r == 0)
				break; /* woken: spin again if the owner runs */
		}
	}
}

void oncpu_mutex_lock(oncpu_mutex_t *m)
{
	uint32_t self = _oncpu_desched_self_index, free_word = 0;
	if (ONCPU_LIKELY(self - 1 < ONCPU_DESCHED_MAX_INDEX) &&
	    __atomic_compare_exchange_n(&m->_word, &free_word, self, false, __ATOMIC_ACQUIRE,
	                                __ATOMIC_RELAXED))
		return;
	lock_slow(m);
}

int oncpu_mutex_trylock(oncpu_mutex_t *m)
{
	uint32_t self = self_id(), w = __atomic_load_n(&m->_word, __ATOMIC_RELAXED);
	if ((w & OWNER_MASK) == 0 && take(m, w, self, false))
		return 0;
	return EBUSY;
}

/* After a release that saw a hand-off request or WAITERS. */
static void unlock_slow(oncpu_mutex_t *m, uint32_t old, uint32_t handoff)
{
	if (handoff != 0) {
		if (!index_live(handoff)) {
			/* a request fork() copied from a thread that is not here */
			__atomic_compare_exchange_n(&m->_handoff, &handoff, 0, false,
			                            __ATOMIC_RELAXED, __ATOMIC_RELAXED);
		} else {
			/* Move the free lock to the requester, only while its request
			 * stands (it may have taken the lock itself meanwhile).
			 * Seq-cst: its critical section follows ours. If someone
			 * else took the lock, that one's unlock serves it. */
			uint64_t *pair = pair_of(m);
			uint64_t p = __atomic_load_n(pair, __ATOMIC_RELAXED);
			while ((PAIR_WORD(p) & OWNER_MASK) == 0 && PAIR_HANDOFF(p) == handoff) {
				if (__atomic_compare_exchange_n(
				        pair, &p, PAIR(handoff | WAITERS, 0), false,
				        __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
					/* WAITERS travels with the lock */
					futex(&m->_handoff, FUTEX_WAKE_PRIVATE, 1, NULL);
					return;
				}
			}
		}
	}
	if (!(old & WAITERS))
		return;
	/* Sequentially consistent after the release (see the sleep loop and
	 * spin_done()): a sleeper or spinner missing from these counts sees the
	 * release itself. */
	uint64_t a = aux_valid(__atomic_load_n(&m->_aux, __ATOMIC_SEQ_CST));
	if (aux_sleepers(a) == 0)
		return; /* a stale WAITERS: nobody sleeps; it is dropped */
	if (aux_spinners(a) > 0) {
		/* Leave the wake-up to a spinner: free, WAITERS kept, so whoever
		 * takes it next looks again at its unlock. */
		uint32_t zero = 0;
		if (__atomic_compare_exchange_n(&m->_word, &zero, WAITERS, false, __ATOMIC_SEQ_CST,
		                                __ATOMIC_RELAXED))
			return;
	}
	/* WAITERS is clear now: the woken thread sets it again before it
	 * sleeps, or takes the lock with it. */
	futex(&m->_word, FUTEX_WAKE_PRIVATE, 1, NULL);
}

void oncpu_mutex_unlock(oncpu_mutex_t *m)
{
	uint32_t old = __atomic_exchange_n(&m->_word, 0, __ATOMIC_SEQ_CST);
	/* Sequentially consistent after the release: a starving sleeper
	 * stores _handoff and then reads _word (see wait_handoff). */
	uint32_t handoff = __atomic_load_n(&m->_handoff, __ATOMIC_SEQ_CST);
	if (ONCPU_UNLIKELY((old & WAITERS) | handoff))
		unlock_slow(m, old, handoff);
}

int oncpu_mutex_init(oncpu_mutex_t *m)
{
	*m = (oncpu_mutex_t)ONCPU_MUTEX_INIT;
	return 0;
}

int oncpu_mutex_destroy(oncpu_mutex_t *m)
{
	return __atomic_load_n(&m->_word, __ATOMIC_RELAXED) != 0 ? EBUSY : 0;
}
