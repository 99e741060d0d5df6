/* SPDX-License-Identifier: MIT */
/*
 * mutex.c - the adaptive mutex (contract in oncpu/mutex.h).
 *
 * _state (the futex word): LOCKED, and WAITERS: a thread may sleep in
 * futex_wait() on _state. The sleeping protocol is the classic one (glibc's
 * low-level lock): a sleeper exchanges _state for LOCKED | WAITERS (taking
 * the lock if that finds it free) and sleeps while the word holds that
 * value; unlock exchanges it for 0 and wakes a sleeper when WAITERS was
 * set. A woken thread always sets WAITERS again, before it sleeps or with
 * the lock it takes, so the sleepers left behind are woken by a later
 * unlock.
 *
 * _owner: the owner's notification-block index (1 .. ONCPU_DESCHED_MAX_INDEX,
 * or ANON for an owner without a block: an exiting thread, or ENOMEM),
 * stored right after the lock is taken. Only a hint for waiters: they
 * read the owner's on-CPU word through it, and a stale value costs at most
 * a wrong spin decision.
 *
 * _handoff: the block index of the one starving sleeper, or 0; it is also
 * the futex word that sleeper waits on.
 *
 * _spins: glibc's adaptive spin estimate, for owners nobody tracks, and
 * the adaptive defer (below); its top bit is the benchmarks' "ignore the
 * provider" mark (mutex_hooks.h), which the updates keep.
 *
 * _aux: the number of long spinners, the number of wake-ups in flight
 * (woken threads that have not yet looked at the lock), SKIPPED, and the
 * fork generation they belong to (an _aux of an older generation was
 * copied by fork() and reads as zero).
 *
 * Wake-up throttling. While a wake-up is in flight, an unlock that sees
 * WAITERS wakes nobody and only sets SKIPPED: the woken thread will set
 * WAITERS again after it looked at the lock (its count goes first, both
 * sequentially consistent, so it sees the skipping unlock's release), and
 * then a later unlock wakes the next sleeper. Without this, an owner that
 * re-takes a busy lock wakes every sleeper in turn, a system call per
 * unlock, only for each to find the lock taken again. The waker takes the
 * count back itself when futex_wake() found nobody (the sleeper had not
 * fallen asleep yet, or timed out); if an unlock skipped meanwhile, it
 * relied on a wake-up that did not happen, so the waker puts WAITERS back
 * in _state and the next unlock wakes.
 *
 * Hand-off (anti-starvation). A sleeper that has waited
 * ONCPU_MUTEX_STARVATION_NS stores its index in _handoff (if no other
 * thread is there), then reads _state: free, it takes the lock; else it
 * sleeps on _handoff. Every unlock reads _handoff after its release (both
 * sequentially consistent, so one of the two sees the other) and, when it
 * names a live thread, moves the free lock to it: one 64-bit CAS of
 * {_state, _handoff} from {free, index} to {LOCKED | WAITERS, 0}, so the
 * lock goes only to a requester that still waits. If another thread took
 * the lock in between, that one's unlock does it. Spinners and sleepers
 * leave a free lock alone while _handoff is set. A _handoff that fork()
 * copied names a block that is not live in the child: whoever reads it
 * (unlock, a spinner, a sleeper) drops it.
 *
 * Spinning, as the kernel's mutex spins on owner_on_cpu(): while the
 * owner's on-CPU word says it runs, for as long as that stays true, up to
 * SPIN_CAP_ROUNDTRIPS times what a futex sleep and its wake-up cost on
 * this machine (measured once per process: sleep_roundtrip_ns()), and
 * only while the spinner itself keeps its CPU (a gap between two of its
 * clock reads as long as a sleep and wake-up means it was switched out:
 * its CPU is wanted elsewhere). Never with the owner off CPU: it cannot
 * release the lock before it runs again. For owners nobody tracks (provider
 * "none", or a thread without a block), glibc's adaptive estimate (at most
 * SPIN_UNTRACKED_MAX pauses), and not at all by a thread that was woken
 * from its sleep. At most one spinner fewer than there are CPUs spins past
 * SPIN_QUICK (the owner runs on one of them); the others sleep. A spinner
 * that sees the lock freed leaves it a while (adaptive: see spin()) to its
 * last owner, and when that owner took it back meanwhile it sleeps: a lock
 * that one running thread keeps taking is cheapest left with that thread
 * (moving the lock's and the data's lines to another CPU costs more than a
 * short critical section), and the threads that sleep leave their CPUs to
 * the threads that do not need the lock.
 *
 * Lending the CPU. A thread that goes to sleep on a lock that its running
 * owner keeps re-taking rarely falls asleep: the owner releases and
 * re-takes the lock within the system call's entry, futex_wait() finds
 * _state changed (EAGAIN), and the would-be sleeper tries again, round
 * after round, while the owner pays a futex_wake() for each. After such a
 * miss the thread calls sched_yield() before it tries again: when another
 * task waits for its CPU (another process on a loaded machine), that task
 * runs now, the owner keeps the lock's line on its own CPU meanwhile, and
 * the scheduler gives the waiter its time back later; with nothing else to
 * run, the call returns at once. The provider's check of the thread's
 * registration runs only after a real sleep (a switch it can compare).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "desched_owner.h"
#include "internal.h"
#include "mutex_hooks.h"

#define LOCKED     0x1U
#define WAITERS    0x2U
#define OWNER_ANON 0xFFFFFFFFU

/* _aux: spinners (12 bits), wake-ups in flight (8), SKIPPED (1), fork
 * generation (32). */
#define AUX_SPINNER       1ULL
#define AUX_SPINNERS_MASK 0xFFFULL
#define AUX_WOKEN         (1ULL << 12)
#define AUX_WOKEN_SHIFT   12
#define AUX_WOKEN_MASK    0xFFULL
#define AUX_SKIPPED       (1ULL << 20)
#define AUX_GEN_SHIFT     32
#define AUX_GEN_MASK      0xFFFFFFFFULL

/* Spin bounds, in pause instructions (a pause is 10 to 150 cycles). */
#define SPIN_QUICK         32  /* spins shorter than this are not counted in _aux */
#define SPIN_BACKOFF_MAX   16  /* pauses between two reads of the lock */
#define SPIN_UNTRACKED_MAX 100 /* glibc's default max_adaptive_count */
/* Owner running: spin for at most this many sleep-and-wake-up round trips.
 * Spinning that long costs at most twice what sleeping would have (the
 * classic bound of spin-then-sleep), and waits out a section as long as
 * one round trip without a wake-up. */
#define SPIN_CAP_ROUNDTRIPS 2
/* The round trip's measurement: samples, and bounds against a clock or a
 * timer gone wrong. */
#define ROUNDTRIP_SAMPLES    3
#define ROUNDTRIP_TIMEOUT_NS 1000
#define ROUNDTRIP_MIN_NS     1000
#define ROUNDTRIP_MAX_NS     1000000
/* A spinner leaves a just-freed lock to its last owner for 2^shift pauses. */
#define DEFER_SHIFT_MIN 3 /* 8 pauses: about 0.1 to 0.5 us */
#define DEFER_SHIFT_MAX 9 /* 512 pauses: about 5 to 30 us */
#define DEFER_SHORTEN   4 /* a defer is shortened after every 4th race not lost */

/* _spins: the spin estimate (low 16 bits), the defer shift (bits 16-19;
 * 0 reads as DEFER_SHIFT_MIN, so that ONCPU_MUTEX_INIT needs no value) and
 * _ONCPU_MUTEX_SPINS_IGNORE_PROVIDER (bit 31). */
#define SPINS_EST_MASK    0xFFFFU
#define SPINS_DEFER_SHIFT 16
#define SPINS_DEFER_MASK  0xFU

static uint32_t max_spinners;
static uint64_t roundtrip_ns; /* 0 until measured */

static inline uint64_t aux_gen(void)
{
	uint32_t g = __atomic_load_n(&_oncpu_fork_generation, __ATOMIC_RELAXED);
	return ((uint64_t)g & AUX_GEN_MASK) << AUX_GEN_SHIFT;
}
/* _aux as seen by this process: the counts of an older generation are 0. */
static inline uint64_t aux_valid(uint64_t a)
{
	uint64_t gen = aux_gen();
	return (a & ~((1ULL << AUX_GEN_SHIFT) - 1)) == gen ? a : gen;
}
static inline uint32_t aux_spinners(uint64_t a)
{
	return (uint32_t)(a & AUX_SPINNERS_MASK);
}
static inline uint32_t aux_woken(uint64_t a)
{
	return (uint32_t)((a >> AUX_WOKEN_SHIFT) & AUX_WOKEN_MASK);
}

/* A counted spinner stops (sequentially consistent); counts of an older
 * fork generation were dropped, so there is nothing to take from them. */
static void spinner_leave(oncpu_mutex_t *m)
{
	uint64_t a = __atomic_load_n(&m->_aux, __ATOMIC_RELAXED), nw;
	do {
		nw = aux_valid(a);
		if (nw != a)
			return;
		nw -= AUX_SPINNER;
	} while (!__atomic_compare_exchange_n(&m->_aux, &a, nw, true, __ATOMIC_SEQ_CST,
	                                      __ATOMIC_RELAXED));
}

/* One wake-up fewer in flight (sequentially consistent): by the woken
 * thread, or by its waker when futex_wake() found nobody. Never below 0: a
 * count too low only costs a wake-up more. SKIPPED goes with the last one;
 * returns true when this call cleared it. */
static bool woken_done(oncpu_mutex_t *m)
{
	uint64_t a = __atomic_load_n(&m->_aux, __ATOMIC_RELAXED), nw;
	do {
		nw = aux_valid(a);
		if (nw != a)
			return false; /* counts of an older fork generation: nothing to take */
		if (aux_woken(nw) > 0)
			nw -= AUX_WOKEN;
		if (aux_woken(nw) == 0)
			nw &= ~AUX_SKIPPED;
	} while (!__atomic_compare_exchange_n(&m->_aux, &a, nw, true, __ATOMIC_SEQ_CST,
	                                      __ATOMIC_RELAXED));
	return (a & AUX_SKIPPED) && !(nw & AUX_SKIPPED);
}

/*
 * {_state, _handoff} as one 64-bit value, for the two transitions that must
 * change both at once: a hand-off (free lock and request -> lock taken, no
 * request) and a requester taking the free lock itself. Every other access
 * is 32 bits wide; mixing the sizes on one naturally aligned location is
 * what the kernel's qspinlock does (xchg_tail), and x86-64 and AArch64 give
 * it single-copy atomicity.
 */
_Static_assert(offsetof(struct oncpu_mutex, _handoff) == 4, "pair layout");
_Static_assert(offsetof(struct oncpu_mutex, _aux) == 16 && sizeof(oncpu_mutex_t) == 24,
               "mutex layout");
static inline uint64_t *pair_of(oncpu_mutex_t *m)
{
	return (uint64_t *)(void *)m; /* 8-byte aligned: _aux is a uint64_t */
}
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define PAIR(state, handoff) ((uint64_t)(state) | (uint64_t)(handoff) << 32)
#define PAIR_STATE(p)        ((uint32_t)(p))
#define PAIR_HANDOFF(p)      ((uint32_t)((p) >> 32))
#else
#define PAIR(state, handoff) ((uint64_t)(handoff) | (uint64_t)(state) << 32)
#define PAIR_STATE(p)        ((uint32_t)((p) >> 32))
#define PAIR_HANDOFF(p)      ((uint32_t)(p))
#endif

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

/*
 * What a futex sleep and its wake-up cost here, measured by the first
 * spinner that needs it (concurrent first spinners may each measure; any
 * result will do): the best of ROUNDTRIP_SAMPLES futex_wait()s with a short
 * timeout, less the timeout, with the thread's timer slack at 1 ns meanwhile
 * so that the timer fires on time. Each is a system call, a switch out, an
 * interrupt that wakes the idle CPU (as a futex_wake() does) and a switch
 * back: the delay a sleeping waiter adds after the release.
 */
static uint64_t sleep_roundtrip_ns(void)
{
	uint64_t best = __atomic_load_n(&roundtrip_ns, __ATOMIC_RELAXED);
	if (ONCPU_LIKELY(best != 0))
		return best;
	int saved = errno;
	int slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
	prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
	best = UINT64_MAX;
	for (int i = 0; i < ROUNDTRIP_SAMPLES; i++) {
		uint32_t word = 0;
		struct timespec ts = {0, ROUNDTRIP_TIMEOUT_NS};
		uint64_t t0 = now_ns();
		long r = futex(&word, FUTEX_WAIT_PRIVATE, 0, &ts);
		uint64_t d = now_ns() - t0;
		/* a signal cut the sleep short: no sample */
		if (r != 0 && errno == ETIMEDOUT && d >= ROUNDTRIP_TIMEOUT_NS &&
		    d - ROUNDTRIP_TIMEOUT_NS < best)
			best = d - ROUNDTRIP_TIMEOUT_NS;
	}
	if (slack > 0)
		prctl(PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);
	errno = saved;
	if (best == UINT64_MAX)
		return ROUNDTRIP_MIN_NS; /* no sample: spin briefly, measure next time */
	best = best < ROUNDTRIP_MIN_NS   ? ROUNDTRIP_MIN_NS
	       : best > ROUNDTRIP_MAX_NS ? ROUNDTRIP_MAX_NS
	                                 : best;
	__atomic_store_n(&roundtrip_ns, best, __ATOMIC_RELAXED);
	return best;
}

static uint32_t self_id(void)
{
	uint32_t id = _oncpu_desched_self_id();
	return id ? id : OWNER_ANON;
}

/* Is index's thread alive in this process (a fork child's copy of another
 * thread's block is not)? Out of line: unlock needs it only for a pending
 * hand-off, off its common path. */
__attribute__((noinline)) static bool index_live(uint32_t index)
{
	return _oncpu_desched_id_live(index);
}

/* h, a hand-off request read from m, or 0 when it names a thread that does
 * not exist here (fork() copied it): such a request is dropped (only that
 * value, so a newer request stays), else every waiter defers to it for ever. */
static uint32_t handoff_checked(oncpu_mutex_t *m, uint32_t h)
{
	if (ONCPU_LIKELY(h == 0) || ONCPU_LIKELY(index_live(h)))
		return h;
	__atomic_compare_exchange_n(&m->_handoff, &h, 0, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
	return 0;
}

/* The pending hand-off request of a live thread, or 0. */
static uint32_t handoff_pending(oncpu_mutex_t *m)
{
	return handoff_checked(m, __atomic_load_n(&m->_handoff, __ATOMIC_RELAXED));
}

/* Take the free lock from state s. A thread that has slept sets WAITERS:
 * other sleepers may remain, and its unlock must look for them. */
static inline bool take(oncpu_mutex_t *m, uint32_t s, uint32_t self, bool slept)
{
	uint32_t ns = LOCKED | (s & WAITERS) | (slept ? WAITERS : 0);
	if (!__atomic_compare_exchange_n(&m->_state, &s, ns, false, __ATOMIC_ACQUIRE,
	                                 __ATOMIC_RELAXED))
		return false;
	__atomic_store_n(&m->_owner, self, __ATOMIC_RELAXED);
	return true;
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

/* Store a new estimate or defer shift into _spins (racy like glibc's
 * estimate: a lost update costs one less accurate guess). */
static void spins_store(oncpu_mutex_t *m, uint32_t est, uint32_t shift, uint32_t mark)
{
	if (est > SPINS_EST_MASK)
		est = SPINS_EST_MASK;
	__atomic_store_n(&m->_spins, est | shift << SPINS_DEFER_SHIFT | mark, __ATOMIC_RELAXED);
}

/*
 * Spin while spinning can pay off. Returns true with the lock held. The
 * first SPIN_QUICK pauses are not announced in _aux (most spins end there,
 * and announcing costs two atomic operations on the lock's line); a longer
 * spin counts itself, so that at most max_spinners threads spin at once.
 *
 * A spinner that sees the lock free leaves it to its last owner for a
 * while (the defer) and looks again: still free, it takes it; taken back,
 * the lock is hot (its owner re-takes it at once) and the spinner sleeps
 * rather than drag the lock's and the data's lines to its CPU. The defer
 * adapts per mutex: twice as long after each race the owner won (a hot
 * lock: the waiters stay away longer, and each sleep-and-wake cycle that
 * costs the owner a system call comes more rarely), half as long after
 * every DEFER_SHORTEN races it did not (so the defer settles where about
 * one race in five is lost; a lock handed from thread to thread, which its
 * last owner does not take back, soon defers only DEFER_SHIFT_MIN).
 *
 * Spinning on a running owner is bounded in time (see the top of this
 * file): the clock is read once per backoff round, and only once the spin
 * is counted (past SPIN_QUICK pauses).
 */
static __thread uint32_t defer_wins __attribute__((tls_model("initial-exec")));

static bool spin(oncpu_mutex_t *m, uint32_t self, bool slept)
{
	uint32_t spins = __atomic_load_n(&m->_spins, __ATOMIC_RELAXED);
	uint32_t est = spins & SPINS_EST_MASK;
	uint32_t shift = spins >> SPINS_DEFER_SHIFT & SPINS_DEFER_MASK;
	uint32_t mark = spins & _ONCPU_MUTEX_SPINS_IGNORE_PROVIDER;
	if (shift < DEFER_SHIFT_MIN)
		shift = DEFER_SHIFT_MIN;
	uint32_t untracked_max = est * 2 + 10;
	if (untracked_max > SPIN_UNTRACKED_MAX)
		untracked_max = SPIN_UNTRACKED_MAX;
	/* A woken sleeper spins only on an owner it knows to run: otherwise,
	 * like glibc's normal mutex, one look and back to sleep, which leaves
	 * a busy lock with the thread that runs with it. */
	if (slept)
		untracked_max = 0;
	uint32_t owner = 0, spun = 0, backoff = 1;
	uint64_t roundtrip = 0, deadline = 0, last = 0; /* ns, while the owner runs */
	const uint32_t *word = NULL;                    /* the owner's on-CPU word */
	bool got = false, counted = false, untracked = false, deferred = false;
	for (;;) {
		uint32_t s = __atomic_load_n(&m->_state, __ATOMIC_RELAXED);
		if (!(s & LOCKED)) {
			/* A starving sleeper is owed the lock: leave it. */
			if (handoff_pending(m) != 0)
				break;
			if (!deferred) {
				deferred = true;
				for (uint32_t i = 0; i < 1U << shift; i++)
					_oncpu_cpu_relax();
				s = __atomic_load_n(&m->_state, __ATOMIC_RELAXED);
				if (s & LOCKED) {
					if (shift < DEFER_SHIFT_MAX)
						spins_store(m, est, shift + 1, mark);
					break; /* hot: sleep */
				}
				if (shift > DEFER_SHIFT_MIN && ++defer_wins % DEFER_SHORTEN == 0)
					spins_store(m, est, shift - 1, mark);
			}
			if (take(m, s, self, slept)) {
				got = true;
				break;
			}
			continue;
		}
		uint32_t o = __atomic_load_n(&m->_owner, __ATOMIC_RELAXED);
		if (o != owner) {
			owner = o;
			word = mark ? NULL : _oncpu_desched_oncpu_word(o);
		}
		uint32_t st = _oncpu_desched_word_state(word);
		if (st == ONCPU_DESCHED_WORD_OFF)
			break; /* the owner cannot release it before it runs again */
		if (st != ONCPU_DESCHED_WORD_ON) {
			untracked = true;
			if (spun >= untracked_max)
				break;
		}
		if (!counted && spun >= SPIN_QUICK) {
			if (st == ONCPU_DESCHED_WORD_ON)
				roundtrip = sleep_roundtrip_ns(); /* before it takes a slot */
			if (!spinner_enter(m))
				break; /* enough threads spin: sleep */
			counted = true;
		}
		if (counted && st == ONCPU_DESCHED_WORD_ON) {
			uint64_t now = now_ns();
			if (deadline == 0) {
				if (roundtrip == 0)
					roundtrip = sleep_roundtrip_ns();
				deadline = now + SPIN_CAP_ROUNDTRIPS * roundtrip;
			} else if (now >= deadline || now - last >= roundtrip) {
				break; /* spun long enough, or this spinner was switched out */
			}
			last = now;
		}
		/* Exponential backoff: fewer reads of a line the owner writes. */
		for (uint32_t i = 0; i < backoff; i++)
			_oncpu_cpu_relax();
		spun += backoff;
		if (backoff < SPIN_BACKOFF_MAX)
			backoff <<= 1;
	}
	/* glibc's estimate of a new arrival's spin: est += (spun - est) / 8. */
	if (untracked && !slept) {
		uint32_t nest = est + (uint32_t)((int32_t)(spun - est) / 8);
		if (nest != est) {
			uint32_t now = __atomic_load_n(&m->_spins, __ATOMIC_RELAXED);
			spins_store(m, nest, now >> SPINS_DEFER_SHIFT & SPINS_DEFER_MASK, mark);
		}
	}
	if (counted)
		spinner_leave(m);
	return got;
}

/*
 * The starving sleeper's wait, after it stored self in _handoff. Returns
 * with the lock held: handed over by an unlock (which cleared the request
 * in the same CAS), or taken free (clearing the request in the same CAS,
 * so that no unlock can hand the lock to a thread that no longer waits).
 */
static void wait_handoff(oncpu_mutex_t *m, uint32_t self)
{
	uint64_t *pair = pair_of(m);
	for (;;) {
		/* Seq-cst after the request store: an unlock that did not see the
		 * request released the lock before this load. */
		uint64_t p = __atomic_load_n(pair, __ATOMIC_SEQ_CST);
		if (PAIR_HANDOFF(p) != self) {
			/* Only a hand-off removes our request: the lock is ours.
			 * Acquire: the releasing owner's critical section precedes. */
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			break;
		}
		if (!(PAIR_STATE(p) & LOCKED)) {
			if (__atomic_compare_exchange_n(pair, &p, PAIR(LOCKED | WAITERS, 0), false,
			                                __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
				break;
			continue;
		}
		futex(&m->_handoff, FUTEX_WAIT_PRIVATE, self, NULL);
	}
	__atomic_store_n(&m->_owner, self, __ATOMIC_RELAXED);
}

static void lock_slow(oncpu_mutex_t *m)
{
	uint32_t self = self_id();
	bool slept = false;
	uint64_t since = 0;

	if (ONCPU_UNLIKELY(max_spinners == 0)) {
		/* The owner runs on one CPU; a spinner each on the others. */
		long n = sysconf(_SC_NPROCESSORS_ONLN) - 1;
		uint32_t spinners = n < 1                         ? 1U
		                    : n > (long)AUX_SPINNERS_MASK ? (uint32_t)AUX_SPINNERS_MASK
		                                                  : (uint32_t)n;
		__atomic_store_n(&max_spinners, spinners, __ATOMIC_RELAXED);
	}
	for (;;) {
		if (spin(m, self, slept))
			return;
		/*
		 * Sleep until woken; a wake-up goes back to spinning. Between
		 * setting WAITERS and futex_wait() there is nothing more: a longer
		 * window lets a busy owner change _state meanwhile, and the
		 * would-be sleeper never falls asleep.
		 */
		for (;;) {
			uint64_t now = now_ns();
			uint32_t s;
			if (handoff_pending(m) == 0) {
				s = __atomic_exchange_n(&m->_state, LOCKED | WAITERS,
				                        __ATOMIC_SEQ_CST);
				if (!(s & LOCKED)) {
					__atomic_store_n(&m->_owner, self, __ATOMIC_RELAXED);
					return;
				}
				s = LOCKED | WAITERS;
			} else {
				/* A starving sleeper is owed the lock: leave it, and
				 * sleep with WAITERS so that its unlock looks. */
				s = __atomic_load_n(&m->_state, __ATOMIC_SEQ_CST);
				if (!(s & WAITERS)) {
					if (!__atomic_compare_exchange_n(
					        &m->_state, &s, s | WAITERS, false,
					        __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
						continue;
					s |= WAITERS;
				}
			}
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
			}
			/* Timed, so that a sleeper passed over by running threads
			 * notices that it starves. */
			struct timespec ts = {0, ONCPU_MUTEX_STARVATION_NS};
			long r = futex(&m->_state, FUTEX_WAIT_PRIVATE, s, &ts);
			int err = r == 0 ? 0 : errno;
			slept = true;
			if (err == EAGAIN) {
				/* _state changed before this thread fell asleep: the
				 * owner released the lock and, most often, took it
				 * again. Lend the CPU to whatever else waits for it
				 * (see "Lending the CPU" above) before trying again. */
				sched_yield();
				continue;
			}
			/* It was switched out: a lost registration would freeze
			 * its on-CPU word for its waiters, the provider checks. */
			_oncpu_desched_recheck();
			if (r == 0) {
				/* Woken: no longer in flight; look at the lock (and
				 * spin if its owner runs), then set WAITERS again. */
				woken_done(m);
				break;
			}
		}
	}
}

void oncpu_mutex_lock(oncpu_mutex_t *m)
{
	uint32_t self = _oncpu_desched_self_cached(), free_state = 0;
	if (ONCPU_LIKELY(_oncpu_desched_id_valid(self)) &&
	    __atomic_compare_exchange_n(&m->_state, &free_state, LOCKED, false, __ATOMIC_ACQUIRE,
	                                __ATOMIC_RELAXED)) {
		__atomic_store_n(&m->_owner, self, __ATOMIC_RELAXED);
		return;
	}
	lock_slow(m);
}

int oncpu_mutex_trylock(oncpu_mutex_t *m)
{
	uint32_t self = self_id(), s = __atomic_load_n(&m->_state, __ATOMIC_RELAXED);
	if (!(s & LOCKED) && take(m, s, self, false))
		return 0;
	return EBUSY;
}

/* After a release that saw WAITERS: wake one sleeper, unless a wake-up is
 * in flight (see "Wake-up throttling" above). */
static void wake_one(oncpu_mutex_t *m)
{
	uint64_t a = __atomic_load_n(&m->_aux, __ATOMIC_SEQ_CST), nw;
	bool counted, skip;
	do {
		nw = aux_valid(a);
		skip = aux_woken(nw) > 0;
		counted = aux_woken(nw) < AUX_WOKEN_MASK;
		if (skip)
			nw |= AUX_SKIPPED;
		else if (counted)
			nw += AUX_WOKEN;
		else
			break;
	} while (!__atomic_compare_exchange_n(&m->_aux, &a, nw, true, __ATOMIC_SEQ_CST,
	                                      __ATOMIC_RELAXED));
	if (skip)
		return;
	long woke = futex(&m->_state, FUTEX_WAKE_PRIVATE, 1, NULL);
	if (!counted || woke > 0)
		return; /* the woken thread takes its count back */
	/* Nobody was woken. An unlock that skipped meanwhile relied on this
	 * wake-up: put WAITERS back, so that the next unlock wakes (on a free
	 * word, whoever takes it keeps WAITERS). */
	if (!woken_done(m))
		return;
	uint32_t s = __atomic_load_n(&m->_state, __ATOMIC_RELAXED);
	while (!(s & WAITERS) && !__atomic_compare_exchange_n(&m->_state, &s, s | WAITERS, true,
	                                                      __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
		;
}

/* After a release that saw a hand-off request or WAITERS. */
static void unlock_slow(oncpu_mutex_t *m, uint32_t old, uint32_t handoff)
{
	if (handoff_checked(m, handoff) != 0) {
		/* Move the free lock to the requester, only while its request
		 * stands (it may have taken the lock itself meanwhile). Seq-cst:
		 * its critical section follows ours. If someone else took the
		 * lock, that one's unlock serves it. */
		uint64_t *pair = pair_of(m);
		uint64_t p = __atomic_load_n(pair, __ATOMIC_RELAXED);
		while (!(PAIR_STATE(p) & LOCKED) && PAIR_HANDOFF(p) == handoff) {
			if (__atomic_compare_exchange_n(pair, &p, PAIR(LOCKED | WAITERS, 0), false,
			                                __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
				/* WAITERS travels with the lock. Name the new owner
				 * before it runs, so that waiters see it is off CPU;
				 * wake all: a later requester may be queued there. */
				__atomic_store_n(&m->_owner, handoff, __ATOMIC_RELAXED);
				futex(&m->_handoff, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL);
				return;
			}
		}
	}
	if (!(old & WAITERS))
		return;
	wake_one(m);
}

void oncpu_mutex_unlock(oncpu_mutex_t *m)
{
	uint32_t old = __atomic_exchange_n(&m->_state, 0, __ATOMIC_SEQ_CST);
	/* Sequentially consistent after the release: a starving sleeper
	 * stores _handoff and then reads _state (see wait_handoff). */
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
	return __atomic_load_n(&m->_state, __ATOMIC_RELAXED) & LOCKED ? EBUSY : 0;
}
