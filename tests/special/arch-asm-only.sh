#!/bin/sh
# SPDX-License-Identifier: MIT
# The architecture contract (include/oncpu/arch/generic.h): an architecture
# header's sections stage is assembly only, as _ONCPU_ARCH_* macros; the C
# of every operation is written once, in oncpu/arch/ops.h, and generic.h's
# fallback (no rseq assembly) has the same operations. Fails when an
# architecture header's stage 2 defines a function or holds an asm
# statement of its own, when an operation's macro has no function in
# ops.h, or when ops.h and generic.h list different operations.
#	arch-asm-only.sh SOURCE_DIR
set -eu
inc=${1:?source dir}/include/oncpu/arch
fail() { echo "FAIL: $*" >&2; exit 1; }
fns() { sed -n 's/^ONCPU_INLINE int \(_oncpu_cs_[a-z_]*\)(.*/\1/p' "$1" | sort; }

n=0
for h in "$inc"/*.h; do
	case $(basename "$h") in generic.h | ops.h) continue ;; esac
	stage2=$(sed -n '/---- stage 2/,$p' "$h")
	[ -n "$stage2" ] || fail "$h: no '---- stage 2' marker"
	if echo "$stage2" | grep -n "ONCPU_INLINE\|__asm__"; then
		fail "$h: C in the sections' stage (a function or an asm statement): it belongs in ops.h"
	fi
	ops=$(echo "$stage2" | sed -n 's/^#define _ONCPU_ARCH_\([A-Z0-9_]*\).*/\1/p' | grep -Evx 'ORDERED|[A-Z0-9_]*_SECTIONS' || true)
	[ -n "$ops" ] || fail "$h: no _ONCPU_ARCH_* operation macros"
	for op in $ops; do
		fn=_oncpu_cs_$(echo "$op" | tr '[:upper:]' '[:lower:]')
		fns "$inc/ops.h" | grep -Eqx "$fn(_init)?" || fail "$h: _ONCPU_ARCH_$op has no function $fn in ops.h"
	done
	n=$((n + 1))
done
[ "$n" -gt 0 ] || fail "no architecture header in $inc"
[ "$(fns "$inc/ops.h")" = "$(fns "$inc/generic.h")" ] ||
	fail "ops.h and generic.h's fallback define different operations: $(fns "$inc/ops.h" | tr '\n' ' ') / $(fns "$inc/generic.h" | tr '\n' ' ')"
echo "arch headers ($n): assembly only; ops.h and generic.h: the same $(fns "$inc/ops.h" | wc -l) operations"
