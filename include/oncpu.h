/* SPDX-License-Identifier: MIT */
/*
 * oncpu.h - umbrella header: every public module of liboncpu.
 * Link with -loncpu (pkg-config oncpu, or find_package(oncpu)).
 */
#ifndef ONCPU_H
#define ONCPU_H

#include <oncpu/abi.h>
#include <oncpu/config.h>
#include <oncpu/counter.h>
#include <oncpu/cs.h>
#include <oncpu/percpu.h>
#include <oncpu/thread.h>
#include <oncpu/version.h>

#endif /* ONCPU_H */
