/* SPDX-License-Identifier: MIT */
/*
 * cache.c - object cache: per-CPU arrays (inline paths in cache.h), the
 * depot of magazines, slabs, debug checks.
 *
 * Lock order: a slot's lock word, then the depot mutex. Threads running
 * sections never hold the depot mutex while they wait for a slot's lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "slot.h"

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

static const struct slot_kind cache_kind = SLOT_KIND(struct cache, struct _oncpu_cache_slot,
                                                     ONCPU_CACHELINE, offsetof(struct cache, lock));

/* Outside debug mode the gate publishes the array for the inline paths,
 * in the field of the cache's mode. */
static struct slot_set set_of(struct cache *c)
{
	struct slot_set set = _oncpu_slot_set(&cache_kind, c);
	if (!c->debug)
		set.fast =
		    set.mode == _oncpu_mode_ONCPU_VCPU ? &c->pub._fast_vcpu : &c->pub._fast_cpu;
	return set;
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
	size_t stride = (object_size + align - 1) & ~(align - 1);
	if (stride < sizeof(void *))
		stride = sizeof(void *); /* the loose list links through objects */
	size_t cap = CPU_BYTES / stride;
	cap = cap > MAX_CAP ? MAX_CAP : cap < 2 ? 2 : cap & ~(size_t)1;
	struct cache *c = _oncpu_slot_new(
	    &cache_kind, sizeof(struct _oncpu_cache_slot) + cap * sizeof(void *), flags);
	if (!c)
		return NULL;
	c->size = object_size;
	c->stride = stride;
	c->batch = cap / 2;
	c->debug = (flags & ONCPU_CACHE_DEBUG) || env_debug();
	c->max_empty = 8 + 2 * (size_t)_oncpu_ds_slots();
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
	_oncpu_slot_delete(&cache_kind, c);
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

/* ---- the operations on a slot's array (slot.h) ---- */

/* Take the top object; obj 0 when the array was empty. */
struct take {
	struct slot_op op; /* first */
	struct cache *c;
	intptr_t obj;
};

static int take_section(struct slot_op *op, void *slot, int id)
{
	struct take *o = (struct take *)op;
	struct _oncpu_cache_slot *sl = slot;
	intptr_t n = DS_LOAD(&sl->count);
	if (n == 0) {
		o->obj = 0;
		return SLOT_DONE;
	}
	int r = _oncpu_cs_cmpeq_cmpeq_load_store(o->c->pub._mode, &sl->lock, 0, &sl->count, n,
	                                         &_ONCPU_CACHE_OBJS(sl)[n - 1], &o->obj, n - 1, id);
	return r == ONCPU_CS_COMMITTED ? SLOT_DONE : SLOT_AGAIN;
}

static void take_locked(struct slot_op *op, void *slot)
{
	struct take *o = (struct take *)op;
	struct _oncpu_cache_slot *sl = slot;
	intptr_t n = DS_LOAD(&sl->count);
	o->obj = 0;
	if (n > 0) {
		o->obj = DS_LOAD(&_ONCPU_CACHE_OBJS(sl)[n - 1]);
		DS_STORE(&sl->count, n - 1);
	}
}

/* Copy what fits of m into the array; the rest stays in m. */
struct refill {
	struct slot_op op; /* first */
	struct cache *c;
	struct mag *m;
};

/* Objects of m that fit into an array holding n. */
static size_t fits(struct cache *c, struct mag *m, intptr_t n)
{
	intptr_t room = c->pub._cap - n;
	return room <= 0 ? 0 : (size_t)room < m->n ? (size_t)room : m->n;
}

static int refill_section(struct slot_op *op, void *slot, int id)
{
	struct refill *o = (struct refill *)op;
	struct _oncpu_cache_slot *sl = slot;
	intptr_t n = DS_LOAD(&sl->count);
	size_t k = fits(o->c, o->m, n);
	if (k == 0)
		return SLOT_DONE;
	int r = _oncpu_cs_cmpeq_cmpeq_memcpy_store(
	    o->c->pub._mode, _oncpu_mo_ONCPU_RELAXED, &sl->lock, 0, &sl->count, n,
	    &_ONCPU_CACHE_OBJS(sl)[n], &o->m->objs[o->m->n - k], k * sizeof(void *),
	    n + (intptr_t)k, id);
	if (r != ONCPU_CS_COMMITTED)
		return SLOT_AGAIN;
	o->m->n -= k;
	return SLOT_DONE;
}

static void refill_locked(struct slot_op *op, void *slot)
{
	struct refill *o = (struct refill *)op;
	struct _oncpu_cache_slot *sl = slot;
	intptr_t n = DS_LOAD(&sl->count);
	size_t k = fits(o->c, o->m, n);
	memcpy(&_ONCPU_CACHE_OBJS(sl)[n], &o->m->objs[o->m->n - k], k * sizeof(void *));
	o->m->n -= k;
	DS_STORE(&sl->count, n + (intptr_t)k);
}

/*
 * Put obj on the array. When it is full, batch - 1 of its objects and obj
 * go into the empty magazine m instead (flushed); without m, need_mag asks
 * the caller for one.
 */
struct put {
	struct slot_op op; /* first */
	struct cache *c;
	void *obj;
	struct mag *m;
	bool need_mag, flushed;
};

static int put_section(struct slot_op *op, void *slot, int id)
{
	struct put *o = (struct put *)op;
	struct _oncpu_cache_slot *sl = slot;
	int mode = o->c->pub._mode;
	intptr_t n = DS_LOAD(&sl->count);
	if (n < o->c->pub._cap)
		return _oncpu_cs_cmpeq_cmpeq_trystore_store(
		           mode, _oncpu_mo_ONCPU_RELAXED, &sl->lock, 0, &sl->count, n,
		           &_ONCPU_CACHE_OBJS(sl)[n], (intptr_t)o->obj, n + 1,
		           id) == ONCPU_CS_COMMITTED
		           ? SLOT_DONE
		           : SLOT_AGAIN;
	if (!o->m) {
		o->need_mag = true;
		return SLOT_DONE;
	}
	intptr_t k = (intptr_t)o->c->batch - 1;
	if (k > 0 && _oncpu_cs_cmpeq_cmpeq_memcpy_store(
	                 mode, _oncpu_mo_ONCPU_RELAXED, &sl->lock, 0, &sl->count, n, o->m->objs,
	                 &_ONCPU_CACHE_OBJS(sl)[n - k], (size_t)k * sizeof(void *), n - k,
	                 id) != ONCPU_CS_COMMITTED)
		return SLOT_AGAIN;
	o->m->objs[k] = o->obj;
	o->m->n = (size_t)k + 1;
	o->flushed = true;
	return SLOT_DONE;
}

static void put_locked(struct slot_op *op, void *slot)
{
	struct put *o = (struct put *)op;
	struct _oncpu_cache_slot *sl = slot;
	intptr_t n = DS_LOAD(&sl->count);
	if (n < o->c->pub._cap) {
		DS_STORE(&_ONCPU_CACHE_OBJS(sl)[n], (intptr_t)o->obj);
		DS_STORE(&sl->count, n + 1);
		return;
	}
	if (!o->m) {
		o->need_mag = true;
		return;
	}
	size_t k = o->c->batch - 1;
	memcpy(o->m->objs, &_ONCPU_CACHE_OBJS(sl)[n - (intptr_t)k], k * sizeof(void *));
	DS_STORE(&sl->count, n - (intptr_t)k);
	o->m->objs[k] = o->obj;
	o->m->n = k + 1;
	o->flushed = true;
}

/* An object from the current array, refilled from the depot when empty
 * (never holding the slot's lock across the depot). */
static void *cache_take(struct cache *c)
{
	struct slot_set set = set_of(c);
	struct take t = {{take_section, take_locked}, c, 0};
	_oncpu_slot_run(&set, &t.op);
	if (t.obj)
		return (void *)t.obj;
	struct mag *m = depot_take(c);
	if (!m)
		return NULL;
	void *obj = m->objs[--m->n];
	struct refill r = {{refill_section, refill_locked}, c, m};
	_oncpu_slot_run(&set, &r.op);
	depot_put(c, m);
	return obj;
}

/* obj onto the current array, a full array's batch to the depot. */
static void cache_put(struct cache *c, void *obj)
{
	struct slot_set set = set_of(c);
	struct put p = {{put_section, put_locked}, c, obj, NULL, false, false};
	for (;;) {
		_oncpu_slot_run(&set, &p.op);
		if (!p.need_mag)
			break;
		/* Full: get an empty magazine without holding the slot. */
		p.need_mag = false;
		if (!(p.m = depot_empty(c))) {
			depot_put_loose(c, obj);
			return;
		}
	}
	if (p.m)
		depot_put(c, p.m); /* flushed, or unused */
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

void *_oncpu_cache_alloc_slow(struct oncpu_cache *pub)
{
	if (!pub) {
		errno = EINVAL;
		return NULL;
	}
	struct cache *c = impl(pub);
	void *obj = cache_take(c);
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
	cache_put(c, obj);
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
