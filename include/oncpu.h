/* SPDX-License-Identifier: MIT */
/*
 * oncpu.h - umbrella header: every public module of liboncpu.
 * Link with -loncpu (pkg-config oncpu, or find_package(oncpu)).
 */
#ifndef ONCPU_H
#define ONCPU_H

#include <oncpu/abi.h>
#include <oncpu/cache.h>
#include <oncpu/config.h>
#include <oncpu/counter.h>
#if ONCPU_INLINE_FASTPATHS /* critical sections exist only inline */
#include <oncpu/cs.h>
#endif
#include <oncpu/desched.h>
#include <oncpu/mutex.h>
#include <oncpu/percpu.h>
#include <oncpu/resched.h>
#include <oncpu/ring.h>
#include <oncpu/stack.h>
#include <oncpu/thread.h>
#include <oncpu/version.h>

#endif /* ONCPU_H */
