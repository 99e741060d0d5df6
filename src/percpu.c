/* SPDX-License-Identifier: MIT */
/*
 * percpu.c - per-CPU memory.
 *
 * A chunk reserves possible_cpus * ONCPU_PERCPU_STRIDE bytes of address
 * space (MAP_NORESERVE, no transparent huge pages, so a CPU's block is
 * committed page by page only when that CPU touches it). Items are carved
 * from CPU 0's block in 16-byte units, first fit; the same offset in every
 * other block is that CPU's instance. Freed items are zeroed again on the
 * CPUs whose instance is not already zero, which never commits an untouched
 * page (reading an untouched page maps the shared zero page).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define UNIT            16
#define UNITS_PER_CHUNK (ONCPU_PERCPU_STRIDE / UNIT)
#define MAX_ALIGN       4096

struct chunk {
	struct chunk *next;
	char *base;      /* CPU 0's block; CPU c's is base + c * stride */
	size_t map_size; /* possible_cpus * stride */
	size_t free_units;
	uint64_t used[UNITS_PER_CHUNK / 64]; /* bit per unit */
	uint16_t len[UNITS_PER_CHUNK];       /* units of the item starting here, or 0 */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct chunk *chunks;

/* fork() while another thread allocates must not leave the child's lock
 * held: taken around fork (slot.c's registration calls these). */
void _oncpu_percpu_fork_prepare(void)
{
	pthread_mutex_lock(&lock);
}
void _oncpu_percpu_fork_release(void)
{
	pthread_mutex_unlock(&lock);
}

static bool unit_used(const struct chunk *c, size_t u)
{
	return c->used[u / 64] >> (u % 64) & 1;
}

static void mark(struct chunk *c, size_t first, size_t n, bool used)
{
	for (size_t u = first; u < first + n; u++) {
		if (used)
			c->used[u / 64] |= (uint64_t)1 << (u % 64);
		else
			c->used[u / 64] &= ~((uint64_t)1 << (u % 64));
	}
}

/* First run of n free units starting at a multiple of step, or SIZE_MAX. */
static size_t find_run(const struct chunk *c, size_t n, size_t step)
{
	if (c->free_units < n)
		return SIZE_MAX;
	for (size_t start = 0; start + n <= UNITS_PER_CHUNK; start += step) {
		size_t u = start;
		while (u < start + n && !unit_used(c, u))
			u++;
		if (u == start + n)
			return start;
	}
	return SIZE_MAX;
}

static struct chunk *chunk_new(void)
{
	struct chunk *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->map_size = (size_t)_oncpu_possible_cpus() * ONCPU_PERCPU_STRIDE;
	void *p = mmap(NULL, c->map_size, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		free(c);
		errno = ENOMEM;
		return NULL;
	}
#ifdef MADV_NOHUGEPAGE
	/* A huge page would commit 32 CPUs' blocks at once. */
	madvise(p, c->map_size, MADV_NOHUGEPAGE);
#endif
	c->base = p;
	c->free_units = UNITS_PER_CHUNK;
	c->next = chunks;
	chunks = c;
	return c;
}

void *oncpu_percpu_alloc(size_t size, size_t align)
{
	if (align == 0)
		align = UNIT;
	if (size == 0 || size > ONCPU_PERCPU_STRIDE || align > MAX_ALIGN || (align & (align - 1))) {
		errno = EINVAL;
		return NULL;
	}
	size_t n = (size + UNIT - 1) / UNIT;
	size_t step = align > UNIT ? align / UNIT : 1;
	void *item = NULL;

	_oncpu_fork_register();
	pthread_mutex_lock(&lock);
	for (struct chunk *c = chunks;; c = c->next) {
		if (!c && !(c = chunk_new()))
			break;
		size_t start = find_run(c, n, step);
		if (start != SIZE_MAX) {
			mark(c, start, n, true);
			c->len[start] = (uint16_t)n;
			c->free_units -= n;
			item = c->base + start * UNIT;
			break;
		}
	}
	pthread_mutex_unlock(&lock);
	return item;
}

static bool all_zero(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

void oncpu_percpu_free(void *handle)
{
	if (!handle)
		return;
	char *h = handle;
	pthread_mutex_lock(&lock);
	struct chunk *c = chunks;
	while (c && !(h >= c->base && h < c->base + ONCPU_PERCPU_STRIDE))
		c = c->next;
	size_t u = c ? (size_t)(h - c->base) / UNIT : 0;
	if (!c || (size_t)(h - c->base) % UNIT || c->len[u] == 0) {
		pthread_mutex_unlock(&lock);
		ONCPU_FATAL("oncpu_percpu_free(%p): not an allocated per-CPU item "
		            "(double free or foreign pointer)",
		            handle);
	}
	size_t n = c->len[u], bytes = n * UNIT;
	int cpus = (int)(c->map_size / ONCPU_PERCPU_STRIDE);
	for (int cpu = 0; cpu < cpus; cpu++) {
		char *inst = oncpu_ptr(h, cpu);
		if (!all_zero(inst, bytes))
			memset(inst, 0, bytes);
	}
	mark(c, u, n, false);
	c->len[u] = 0;
	c->free_units += n;
	pthread_mutex_unlock(&lock);
}
