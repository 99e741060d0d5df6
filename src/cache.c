/* SPDX-License-Identifier: MIT */
/*
 * cache.c - object cache: per-CPU arrays (inline paths in cache.h), the
 * depot of magazines, slabs, debug checks.
 *
 * Lock order: a slot's lock word, then the depot mutex. Threads running
 * sections never hold the depot mutex while they wait for a slot's lock.
 */
#define _GNU_SOURCE
#define _ONCPU_BUILDING_EXPORTS 1
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "slot.h"

#define LOCK_OFF  offsetof(struct _oncpu_cache_slot, lock)
#define MAX_CAP   128                 /* M for small objects */
#define CPU_BYTES (32 * 1024)         /* what one CPU's array aims to hold */
#define MIN_SLAB  ((size_t)256 << 10) /* bytes mapped at a time (at least) */
#define POISON    0xdb

enum obj_state { OBJ_NEW = 0, OBJ_ALLOCATED = 1, OBJ_FREE = 2 };

/* A depot magazine: n objects in objs[0, n). */
struct mag {
	struct mag *next;
	size_t n;
	void *objs[];
};

struct slab {
	struct slab *next;
	char *base;
	size_t bytes;
	size_t nobj;
	unsigned char *state; /* debug mode: enum obj_state per object */
};

struct cache {
	struct oncpu_cache pub; /* first: the handle the inline paths read */
	size_t size, stride, batch;
	bool debug;
	pthread_mutex_t lock; /* the depot, slabs and the registry */
	struct mag *full, *empty;
	size_t nempty, max_empty, depot_objects;
	void *loose; /* objects linked through their first word (no magazine memory) */
	size_t nloose;
	struct slab *slabs, *cur;
	size_t cur_next; /* next object of cur to carve */
	size_t objects, slab_bytes;
	struct slab **reg; /* debug mode: slabs sorted by base */
	size_t nreg, capreg;
};

static struct cache *impl(struct oncpu_cache *c)
{
	return (struct cache *)c;
}

static struct _oncpu_cache_slot *slot_of(struct cache *c, int idx)
{
	return (struct _oncpu_cache_slot *)oncpu_ptr(c->pub._pcpu, idx);
}

/* ---- creation ---- */

static bool env_debug(void)
{
	const char *e = getenv("ONCPU_CACHE_DEBUG");
	return e && *e && strcmp(e, "0") != 0;
}

struct oncpu_cache *oncpu_cache_new_flags(size_t object_size, size_t align, unsigned flags)
{
	if (align == 0) {
		align = 16;
		while (align / 2 >= object_size && align > 1)
			align /= 2;
	}
	if (object_size == 0 || object_size > ONCPU_CACHE_MAX_OBJECT_SIZE ||
	    (align & (align - 1)) || align > ONCPU_CACHE_MAX_ALIGN ||
	    (flags & ~(ONCPU_F_VCPU | ONCPU_CACHE_DEBUG))) {
		errno = EINVAL;
		return NULL;
	}
	struct cache *c =
	    aligned_alloc(ONCPU_CACHELINE, (sizeof(struct cache) + ONCPU_CACHELINE - 1) &
	                                       ~(size_t)(ONCPU_CACHELINE - 1));
	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	memset(c, 0, sizeof(*c));
	c->size = object_size;
	c->stride = (object_size + align - 1) & ~(align - 1);
	if (c->stride < sizeof(void *))
		c->stride = sizeof(void *); /* the loose list links through objects */
	size_t cap = CPU_BYTES / c->stride;
	cap = cap > MAX_CAP ? MAX_CAP : cap < 2 ? 2 : cap & ~(size_t)1;
	c->batch = cap / 2;
	c->debug = (flags & ONCPU_CACHE_DEBUG) || env_debug();
	c->max_empty = 8 + 2 * (size_t)_oncpu_ds_slots();
	pthread_mutex_init(&c->lock, NULL);
	c->pub._pcpu = oncpu_percpu_alloc(sizeof(struct _oncpu_cache_slot) + cap * sizeof(void *),
	                                  ONCPU_CACHELINE);
	if (c->pub._pcpu && !_oncpu_ds_register(c->pub._pcpu, LOCK_OFF, &c->lock)) {
		oncpu_percpu_free(c->pub._pcpu);
		c->pub._pcpu = NULL;
	}
	if (!c->pub._pcpu) {
		pthread_mutex_destroy(&c->lock);
		free(c);
		errno = ENOMEM;
		return NULL;
	}
	c->pub._mode = (flags & ONCPU_F_VCPU) ? _oncpu_mode_ONCPU_VCPU : _oncpu_mode_ONCPU_CPU;
	c->pub._flags = c->debug ? _ONCPU_CACHE_CHECKED : 0;
	c->pub._cap = (intptr_t)cap;
	return &c->pub;
}

struct oncpu_cache *oncpu_cache_new(size_t object_size, size_t align)
{
	return oncpu_cache_new_flags(object_size, align, 0);
}

void oncpu_cache_destroy(struct oncpu_cache *pub)
{
	if (!pub)
		return;
	struct cache *c = impl(pub);
	_oncpu_ds_unregister(pub->_pcpu);
	for (struct mag *m = c->full, *next; m; m = next) {
		next = m->next;
		free(m);
	}
	for (struct mag *m = c->empty, *next; m; m = next) {
		next = m->next;
		free(m);
	}
	for (struct slab *s = c->slabs, *next; s; s = next) {
		next = s->next;
		munmap(s->base, s->bytes);
		free(s->state);
		free(s);
	}
	free(c->reg);
	oncpu_percpu_free(pub->_pcpu);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* ---- slabs and the depot (c->lock held) ---- */

static bool register_slab(struct cache *c, struct slab *s)
{
	if (c->nreg == c->capreg) {
		size_t cap = c->capreg ? 2 * c->capreg : 16;
		struct slab **reg = realloc(c->reg, cap * sizeof(*reg));
		if (!reg)
			return false;
		c->reg = reg;
		c->capreg = cap;
	}
	size_t i = c->nreg;
	while (i > 0 && c->reg[i - 1]->base > s->base) {
		c->reg[i] = c->reg[i - 1];
		i--;
	}
	c->reg[i] = s;
	c->nreg++;
	return true;
}

static struct slab *new_slab(struct cache *c)
{
	size_t bytes = 8 * c->stride > MIN_SLAB ? 8 * c->stride : MIN_SLAB;
	bytes = (bytes + 4095) & ~(size_t)4095;
	struct slab *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		free(s);
		return NULL;
	}
	s->base = p;
	s->bytes = bytes;
	s->nobj = bytes / c->stride;
	if (c->debug && (!(s->state = calloc(s->nobj, 1)) || !register_slab(c, s))) {
		munmap(p, bytes);
		free(s->state);
		free(s);
		return NULL;
	}
	s->next = c->slabs;
	c->slabs = s;
	c->slab_bytes += bytes;
	return s;
}

static struct mag *new_mag(struct cache *c)
{
	if (c->empty) {
		struct mag *m = c->empty;
		c->empty = m->next;
		c->nempty--;
		return m;
	}
	struct mag *m = malloc(sizeof(struct mag) + c->batch * sizeof(void *));
	if (m)
		m->n = 0;
	return m;
}

/* Up to a batch of free objects: a full magazine, loose objects, or new
 * ones carved from a slab. NULL with errno ENOMEM. */
static struct mag *depot_take(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	struct mag *m = c->full;
	if (m) {
		c->full = m->next;
		c->depot_objects -= m->n;
		pthread_mutex_unlock(&c->lock);
		return m;
	}
	if (!(m = new_mag(c)))
		goto nomem;
	while (c->loose && m->n < c->batch) {
		void *obj = c->loose;
		c->loose = *(void **)obj;
		c->nloose--;
		c->depot_objects--;
		if (c->debug)
			memset(obj, POISON, sizeof(void *) < c->size ? sizeof(void *) : c->size);
		m->objs[m->n++] = obj;
	}
	while (m->n < c->batch) {
		if (!c->cur || c->cur_next == c->cur->nobj) {
			if (m->n)
				break;
			struct slab *s = new_slab(c);
			if (!s) {
				m->next = c->empty;
				c->empty = m;
				c->nempty++;
				goto nomem;
			}
			c->cur = s;
			c->cur_next = 0;
		}
		m->objs[m->n++] = c->cur->base + c->cur_next++ * c->stride;
		c->objects++;
	}
	pthread_mutex_unlock(&c->lock);
	return m;
nomem:
	pthread_mutex_unlock(&c->lock);
	errno = ENOMEM;
	return NULL;
}

/* Give a magazine back: to the full list, or the empty list (bounded). */
static void depot_put(struct cache *c, struct mag *m)
{
	pthread_mutex_lock(&c->lock);
	if (m->n) {
		m->next = c->full;
		c->full = m;
		c->depot_objects += m->n;
	} else if (c->nempty < c->max_empty) {
		m->next = c->empty;
		c->empty = m;
		c->nempty++;
	} else {
		free(m);
	}
	pthread_mutex_unlock(&c->lock);
}

/* An empty magazine for a flush, or NULL when memory is short. */
static struct mag *depot_empty(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	struct mag *m = new_mag(c);
	pthread_mutex_unlock(&c->lock);
	return m;
}

/* Without a magazine: one object onto the loose list (free cannot fail). */
static void depot_put_loose(struct cache *c, void *obj)
{
	pthread_mutex_lock(&c->lock);
	*(void **)obj = c->loose;
	c->loose = obj;
	c->nloose++;
	c->depot_objects++;
	pthread_mutex_unlock(&c->lock);
}

/* ---- threads that run sections ---- */

static void *alloc_locked(struct cache *c);
static void free_locked(struct cache *c, void *obj);

/* Copy what fits of m into the current slot's array under its lock (any
 * thread); the rest stays in m. */
static void refill_locked(struct cache *c, struct mag *m)
{
	int idx;
	struct _oncpu_cache_slot *slot =
	    _oncpu_ds_lock_current(c->pub._pcpu, LOCK_OFF, c->pub._mode, &c->pub._flags, &idx);
	intptr_t n = DS_LOAD(&slot->count);
	size_t k = (size_t)(c->pub._cap - n) < m->n ? (size_t)(c->pub._cap - n) : m->n;
	memcpy(&_ONCPU_CACHE_OBJS(slot)[n], &m->objs[m->n - k], k * sizeof(void *));
	m->n -= k;
	DS_STORE(&slot->count, n + (intptr_t)k);
	_oncpu_ds_unlock_current(&slot->lock);
}

/* Copy what fits of m into the current CPU's array; the rest stays in m. */
static void refill_sections(struct cache *c, struct mag *m)
{
	int mode = c->pub._mode;
	intptr_t cap = c->pub._cap;
	while (m->n > 0) {
		int cpu = _oncpu_cs_id(mode);
		struct _oncpu_cache_slot *slot = slot_of(c, cpu);
		if (_oncpu_ds_parked(&slot->lock)) {
			refill_locked(c, m);
			return;
		}
		intptr_t n = DS_LOAD(&slot->count);
		intptr_t k = cap - n < (intptr_t)m->n ? cap - n : (intptr_t)m->n;
		if (k <= 0)
			return;
		int r = _oncpu_cs_cmpeq_cmpeq_memcpy_store(
		    mode, _oncpu_mo_ONCPU_RELAXED, &slot->lock, 0, &slot->count, n,
		    &_ONCPU_CACHE_OBJS(slot)[n], &m->objs[m->n - (size_t)k],
		    (size_t)k * sizeof(void *), n + k, cpu);
		if (r == ONCPU_CS_COMMITTED) {
			m->n -= (size_t)k;
			return;
		}
	}
}

static void *alloc_sections(struct cache *c)
{
	int mode = c->pub._mode;
	for (;;) {
		int cpu = _oncpu_cs_id(mode);
		struct _oncpu_cache_slot *slot = slot_of(c, cpu);
		if (_oncpu_ds_parked(&slot->lock))
			return alloc_locked(c);
		intptr_t n = DS_LOAD(&slot->count);
		if (n > 0) {
			intptr_t obj;
			int r = _oncpu_cs_cmpeq_cmpeq_load_store(mode, &slot->lock, 0, &slot->count,
			                                         n, &_ONCPU_CACHE_OBJS(slot)[n - 1],
			                                         &obj, n - 1, cpu);
			if (r == ONCPU_CS_COMMITTED)
				return (void *)obj;
			continue;
		}
		struct mag *m = depot_take(c);
		if (!m)
			return NULL;
		void *obj = m->objs[--m->n];
		refill_sections(c, m);
		depot_put(c, m);
		return obj;
	}
}

static void free_sections(struct cache *c, void *obj)
{
	int mode = c->pub._mode;
	intptr_t cap = c->pub._cap;
	struct mag *m = NULL;
	for (;;) {
		int cpu = _oncpu_cs_id(mode);
		struct _oncpu_cache_slot *slot = slot_of(c, cpu);
		if (_oncpu_ds_parked(&slot->lock)) {
			free_locked(c, obj);
			break;
		}
		intptr_t n = DS_LOAD(&slot->count);
		int r;
		if (n < cap) {
			r = _oncpu_cs_cmpeq_cmpeq_trystore_store(
			    mode, _oncpu_mo_ONCPU_RELAXED, &slot->lock, 0, &slot->count, n,
			    &_ONCPU_CACHE_OBJS(slot)[n], (intptr_t)obj, n + 1, cpu);
			if (r == ONCPU_CS_COMMITTED)
				break;
		} else {
			/* Full: batch - 1 objects and obj make one magazine. */
			if (!m && !(m = depot_empty(c))) {
				depot_put_loose(c, obj);
				return;
			}
			intptr_t k = (intptr_t)c->batch - 1;
			r = k == 0 ? ONCPU_CS_COMMITTED
			           : _oncpu_cs_cmpeq_cmpeq_memcpy_store(
			                 mode, _oncpu_mo_ONCPU_RELAXED, &slot->lock, 0,
			                 &slot->count, n, m->objs, &_ONCPU_CACHE_OBJS(slot)[n - k],
			                 (size_t)k * sizeof(void *), n - k, cpu);
			if (r == ONCPU_CS_COMMITTED) {
				m->objs[k] = obj;
				m->n = (size_t)k + 1;
				depot_put(c, m);
				return;
			}
		}
	}
	if (m)
		depot_put(c, m);
}

/* ---- threads without sections: the slot's lock (stack.h) ---- */

static void *alloc_locked(struct cache *c)
{
	int idx;
	struct _oncpu_cache_slot *slot =
	    _oncpu_ds_lock_current(c->pub._pcpu, LOCK_OFF, c->pub._mode, &c->pub._flags, &idx);
	intptr_t n = DS_LOAD(&slot->count);
	if (n > 0) {
		void *obj = (void *)DS_LOAD(&_ONCPU_CACHE_OBJS(slot)[n - 1]);
		DS_STORE(&slot->count, n - 1);
		_oncpu_ds_unlock_current(&slot->lock);
		return obj;
	}
	/* Empty: refill without holding the slot lock across the depot. */
	_oncpu_ds_unlock_current(&slot->lock);
	struct mag *m = depot_take(c);
	if (!m)
		return NULL;
	void *obj = m->objs[--m->n];
	refill_locked(c, m);
	depot_put(c, m);
	return obj;
}

static void free_locked(struct cache *c, void *obj)
{
	struct mag *m = NULL;
	for (;;) {
		int idx;
		struct _oncpu_cache_slot *slot = _oncpu_ds_lock_current(
		    c->pub._pcpu, LOCK_OFF, c->pub._mode, &c->pub._flags, &idx);
		intptr_t n = DS_LOAD(&slot->count);
		if (n < c->pub._cap) {
			DS_STORE(&_ONCPU_CACHE_OBJS(slot)[n], (intptr_t)obj);
			DS_STORE(&slot->count, n + 1);
			_oncpu_ds_unlock_current(&slot->lock);
			if (m)
				depot_put(c, m);
			return;
		}
		if (!m) {
			_oncpu_ds_unlock_current(&slot->lock);
			if (!(m = depot_empty(c))) {
				depot_put_loose(c, obj);
				return;
			}
			continue;
		}
		size_t k = c->batch - 1;
		memcpy(m->objs, &_ONCPU_CACHE_OBJS(slot)[n - (intptr_t)k], k * sizeof(void *));
		DS_STORE(&slot->count, n - (intptr_t)k);
		_oncpu_ds_unlock_current(&slot->lock);
		m->objs[k] = obj;
		m->n = k + 1;
		depot_put(c, m);
		return;
	}
}

/* ---- debug mode ---- */

/* The slab holding p and p's index in it; false for a foreign pointer. */
static bool lookup(struct cache *c, const void *p, struct slab **sp, size_t *ip, bool *interior)
{
	const char *q = p;
	bool found = false;
	pthread_mutex_lock(&c->lock);
	size_t lo = 0, hi = c->nreg;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct slab *s = c->reg[mid];
		if (q < s->base) {
			hi = mid;
		} else if (q >= s->base + s->bytes) {
			lo = mid + 1;
		} else {
			size_t off = (size_t)(q - s->base);
			*sp = s;
			*ip = off / c->stride;
			*interior = off % c->stride != 0 || *ip >= s->nobj;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return found;
}

static void debug_free(struct cache *c, void *obj, const char *file, int line)
{
	struct slab *s;
	size_t i;
	bool interior;
	if (!file) {
		file = "(unknown caller)";
		line = 0;
	}
	if (!lookup(c, obj, &s, &i, &interior))
		_oncpu_fatal(
		    file, line,
		    "oncpu_cache_free(%p, %p): foreign pointer: not an object of this cache",
		    (void *)c, obj);
	if (interior)
		_oncpu_fatal(file, line,
		             "oncpu_cache_free(%p, %p): pointer inside an object, not its start "
		             "(objects are %zu bytes apart)",
		             (void *)c, obj, c->stride);
	unsigned char old = __atomic_exchange_n(&s->state[i], OBJ_FREE, __ATOMIC_ACQ_REL);
	if (old == OBJ_FREE)
		_oncpu_fatal(file, line, "oncpu_cache_free(%p, %p): double free", (void *)c, obj);
	if (old != OBJ_ALLOCATED)
		_oncpu_fatal(file, line, "oncpu_cache_free(%p, %p): object was never allocated",
		             (void *)c, obj);
	memset(obj, POISON, c->size);
}

static void debug_alloc(struct cache *c, void *obj)
{
	struct slab *s;
	size_t i;
	bool interior;
	if (!lookup(c, obj, &s, &i, &interior) || interior)
		ONCPU_FATAL(
		    "oncpu_cache_alloc(%p): internal error: %p is not an object of this cache",
		    (void *)c, obj);
	unsigned char old = __atomic_exchange_n(&s->state[i], OBJ_ALLOCATED, __ATOMIC_ACQ_REL);
	if (old == OBJ_ALLOCATED)
		ONCPU_FATAL("oncpu_cache_alloc(%p): internal error: object %p handed out twice",
		            (void *)c, obj);
	if (old == OBJ_FREE) {
		const unsigned char *b = obj;
		for (size_t j = 0; j < c->size; j++)
			if (b[j] != POISON)
				ONCPU_FATAL(
				    "oncpu_cache_alloc(%p): object %p was written after it was "
				    "freed (byte %zu is 0x%02x, not 0x%02x)",
				    (void *)c, obj, j, b[j], POISON);
	}
}

/* ---- entry points ---- */

/*
 * True when this thread runs sections on c (the slot protocol's flag is then
 * set); then, outside debug mode, the inline paths may run them too: publish
 * the array in the field of c's mode. Release: a thread that reads it reads
 * the initialized process (_oncpu_process) and the flag after it.
 */
static bool sections(struct cache *c)
{
	struct oncpu_cache *pub = &c->pub;
	if (!_oncpu_ds_sections(&pub->_flags, pub->_mode))
		return false;
	if (!c->debug) {
		void **fast =
		    pub->_mode == _oncpu_mode_ONCPU_VCPU ? &pub->_fast_vcpu : &pub->_fast_cpu;
		if (!__atomic_load_n(fast, __ATOMIC_RELAXED))
			__atomic_store_n(fast, pub->_pcpu, __ATOMIC_RELEASE);
	}
	return true;
}

void *_oncpu_cache_alloc_slow(struct oncpu_cache *pub)
{
	if (!pub) {
		errno = EINVAL;
		return NULL;
	}
	struct cache *c = impl(pub);
	void *obj = sections(c) ? alloc_sections(c) : alloc_locked(c);
	if (obj && c->debug)
		debug_alloc(c, obj);
	return obj;
}

void _oncpu_cache_free_slow(struct oncpu_cache *pub, void *obj, const char *file, int line)
{
	if (!obj)
		return;
	if (!pub)
		_oncpu_fatal(file ? file : __FILE__, file ? line : __LINE__,
		             "oncpu_cache_free(NULL, %p): NULL cache", obj);
	struct cache *c = impl(pub);
	if (c->debug)
		debug_free(c, obj, file, line);
	if (sections(c))
		free_sections(c, obj);
	else
		free_locked(c, obj);
}

int oncpu_cache_get_stats(struct oncpu_cache *pub, struct oncpu_cache_stats *st)
{
	if (!pub || !st) {
		errno = EINVAL;
		return -1;
	}
	struct cache *c = impl(pub);
	memset(st, 0, sizeof(*st));
	st->object_size = c->size;
	st->stride = c->stride;
	st->cpu_capacity = (size_t)pub->_cap;
	st->batch = c->batch;
	st->flags = (pub->_mode == _oncpu_mode_ONCPU_VCPU ? ONCPU_F_VCPU : 0) |
	            (c->debug ? ONCPU_CACHE_DEBUG : 0);
	int slots = _oncpu_ds_slots();
	for (int cpu = 0; cpu < slots; cpu++)
		st->cached_cpu += (size_t)DS_LOAD(&slot_of(c, cpu)->count);
	pthread_mutex_lock(&c->lock);
	st->objects = c->objects;
	st->cached_depot = c->depot_objects;
	st->slab_bytes = c->slab_bytes;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* Exported copies of the inline paths. */
void *oncpu_cache_alloc(struct oncpu_cache *c)
{
	return _oncpu_cache_alloc_fast(c);
}

void oncpu_cache_free(struct oncpu_cache *c, void *obj)
{
	_oncpu_cache_free_fast(c, obj, NULL, 0);
}
