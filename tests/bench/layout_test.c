/* SPDX-License-Identifier: MIT */
/*
 * layout_test - oncpu-bench's bench_alloc_shared() (tools/bench/layout.c):
 * the data it returns is 128-byte aligned, usable to its last byte, and
 * half a page, in page offset, from the first frame of every thread that
 * starts afterwards (what keeps it from being 4 KiB apart from a hot stack
 * slot); a size it cannot serve gives NULL. No time is measured.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define PAGE 4096
/* A frame's page offset may differ from the probe's by a few words between
 * C libraries' start routines; the data is 128-aligned below the middle. */
#define SLACK 256

static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "layout_test: %s:%d: ", __FILE__, __LINE__);               \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

static void *first_frame(void *arg)
{
	(void)arg;
	return __builtin_frame_address(0);
}

/* Page-offset distance from a new thread's first frame up to p. */
static long distance_from_frames(const void *p)
{
	pthread_t t;
	void *frame = NULL;
	if (pthread_create(&t, NULL, first_frame, NULL) != 0 || pthread_join(t, &frame) != 0)
		return -1;
	return (long)(((uintptr_t)p - (uintptr_t)frame) % PAGE);
}

int main(void)
{
	static const size_t sizes[] = {1, 24, 384, 4095, 4096, 10000};
	bench_layout_init();
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t size = sizes[i];
		unsigned char *p = bench_alloc_shared(size);
		CHECK(p != NULL, "size %zu: NULL", size);
		if (!p)
			continue;
		CHECK((uintptr_t)p % 128 == 0, "size %zu: %p is not 128-byte aligned", size,
		      (void *)p);
		memset(p, 0xa5, size); /* ASan: every byte is the caller's */
		CHECK(p[0] == 0xa5 && p[size - 1] == 0xa5, "size %zu: bytes not kept", size);
		long d = distance_from_frames(p);
		CHECK(d >= PAGE / 2 - SLACK && d <= PAGE / 2 + SLACK,
		      "size %zu: %ld bytes (page offset) from a new thread's first frame, not"
		      " about %d",
		      size, d, PAGE / 2);
		bench_free_shared(p);
	}
	/* Two live blocks at once: each placed the same way, not overlapping. */
	char *a = bench_alloc_shared(512), *b = bench_alloc_shared(512);
	CHECK(a && b && (a + 512 <= b || b + 512 <= a), "two blocks overlap");
	CHECK(a && b && (uintptr_t)a % PAGE == (uintptr_t)b % PAGE,
	      "two blocks at different page offsets");
	bench_free_shared(a);
	bench_free_shared(b);
	bench_free_shared(NULL);
	CHECK(bench_alloc_shared(SIZE_MAX) == NULL, "SIZE_MAX bytes: not NULL");
	CHECK(bench_alloc_shared(SIZE_MAX - PAGE) == NULL, "SIZE_MAX - 4096 bytes: not NULL");
	if (failures) {
		fprintf(stderr, "layout_test: %d checks failed\n", failures);
		return 1;
	}
	printf("layout_test: ok\n");
	return 0;
}
