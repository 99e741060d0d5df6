/* SPDX-License-Identifier: MIT */
/*
 * check.h - minimal assertions for oncpu's test programs. A test program
 * returns 0 when every CHECK held; a failed CHECK prints where and why and
 * exits 1 at once (tests are small programs run by CTest).
 */
#ifndef ONCPU_TEST_CHECK_H
#define ONCPU_TEST_CHECK_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define CHECK_MSG(cond, ...)                                                                       \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);   \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

/* Expect a call to fail with a given errno: an integer result must be -1,
 * a pointer result NULL (0 is success for an integer, not a failure). */
#define CHECK_ERRNO(expr, err)                                                                     \
	do {                                                                                       \
		errno = 0;                                                                         \
		__typeof__(expr) _r = (expr);                                                      \
		long long _v = (long long)(intptr_t)_r;                                            \
		long long _fail = __builtin_classify_type(_r) == 5 /* pointer */ ? 0 : -1;         \
		CHECK_MSG(_v == _fail && errno == (err), "%s: got %lld errno %d (%s)", #expr, _v,  \
		          errno, strerror(errno));                                                 \
	} while (0)

/* The mode this test process runs in, as set by CTest (see tests/CMakeLists.txt). */
static inline const char *test_mode(void)
{
	const char *m = getenv("ONCPU_TEST_MODE");
	return m ? m : "rseq-libc";
}
/* True when the mode promises real rseq sections. */
static inline int test_expect_rseq(void)
{
	return strncmp(test_mode(), "rseq", 4) == 0;
}

#endif /* ONCPU_TEST_CHECK_H */
