/* SPDX-License-Identifier: MIT */
/*
 * layout.c - where oncpu-bench puts the data that every thread of a case
 * touches on every op (contract in bench.h).
 *
 * Where such data sits relative to the threads' stacks matters: with
 * mutex_hog's lock at the page offset of a stack slot that the loop writes
 * on every op (4 KiB apart, or any multiple), every mutex in it ran 1.4 to
 * 2.2 times slower, and which processes hit it depended on how the heap
 * happened to be laid out; moving the stacks by 64 bytes moved the slow
 * offset by 64 bytes. Most likely 4 KiB aliasing: a load that matches an
 * older store in address bits 0-11 waits until the CPU has told them apart.
 * So the data goes half a page, in page offset, from a worker thread's
 * first frame, where the hottest stack slots are (a loop's frames lie a few
 * hundred bytes below it), the same layout in every process.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define PAGE_BYTES   4096
#define SHARED_ALIGN 128 /* a pair of lines, which some CPUs fetch together */

/* Page offset of a worker thread's first frame: the workers and the probe
 * all start on stacks of the default size, laid out alike. */
static uintptr_t worker_frame_offset;

static void *frame_probe(void *arg)
{
	(void)arg;
	return __builtin_frame_address(0);
}

void bench_layout_init(void)
{
	pthread_t t;
	void *frame = NULL;
	if (pthread_create(&t, NULL, frame_probe, NULL) == 0)
		pthread_join(t, &frame);
	worker_frame_offset = (uintptr_t)frame % PAGE_BYTES;
}

void *bench_alloc_shared(size_t size)
{
	uintptr_t off = (worker_frame_offset + PAGE_BYTES / 2) % PAGE_BYTES;
	off &= ~(uintptr_t)(SHARED_ALIGN - 1);
	if (off < sizeof(void *))
		off += PAGE_BYTES; /* room for the block's address, below */
	if (size > SIZE_MAX - off - PAGE_BYTES)
		return NULL;
	size_t total = (off + size + PAGE_BYTES - 1) & ~(size_t)(PAGE_BYTES - 1);
	char *block = aligned_alloc(PAGE_BYTES, total);
	if (!block)
		return NULL;
	char *p = block + off;
	memcpy(p - sizeof(block), &block, sizeof(block));
	return p;
}

void bench_free_shared(void *p)
{
	char *block;
	if (!p)
		return;
	memcpy(&block, (char *)p - sizeof(block), sizeof(block));
	free(block);
}
