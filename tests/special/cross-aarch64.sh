#!/bin/sh
# SPDX-License-Identifier: MIT
# Cross-compile liboncpu for aarch64 and prove the result is aarch64 code
# built from the generic architecture header (no rseq sections), and that
# the test programs compile and link against it. Exit 77 (skipped) when no
# aarch64-linux-gnu-gcc is installed (Debian: apt-get install gcc-aarch64-linux-gnu).
#	cross-aarch64.sh SOURCE_DIR BUILD_DIR
set -eu
src=${1:?source dir}
build=${2:?build dir}
cc=aarch64-linux-gnu-gcc
if ! command -v $cc >/dev/null 2>&1; then
	echo "SKIP: $cc not found (apt-get install gcc-aarch64-linux-gnu)"
	exit 77
fi
fail() { echo "FAIL: $*" >&2; exit 1; }

rm -rf "$build"
cmake -S "$src" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$src/cmake/aarch64-linux-gnu.cmake" \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo -DONCPU_WERROR=ON -DBUILD_TESTING=OFF \
	-DONCPU_BUILD_TOOLS=OFF >"$build.configure.log" 2>&1 ||
	{ cat "$build.configure.log"; fail "configure"; }
cmake --build "$build" --target oncpu oncpu_static -j2 >"$build.build.log" 2>&1 ||
	{ cat "$build.build.log"; fail "build"; }

readelf=aarch64-linux-gnu-readelf
command -v $readelf >/dev/null 2>&1 || readelf=readelf
so=$(ls "$build"/liboncpu.so.*.*.* | head -1)
[ -f "$so" ] || fail "no liboncpu.so built"
for f in "$so" "$build/liboncpu.a"; do
	$readelf -h "$f" | grep -q "Machine:.*AArch64" || fail "$f is not aarch64"
done
n=$($readelf -h "$build/liboncpu.a" | grep -c "Machine:")
[ "$n" -gt 0 ] || fail "no objects in liboncpu.a"
$readelf -h "$build/liboncpu.a" | grep "Machine:" | grep -vq "AArch64" &&
	fail "liboncpu.a holds objects of another architecture"
# generic header: no rseq assembly, hence no descriptor sections
if $readelf -S "$so" | grep -q "__rseq_cs"; then
	fail "liboncpu.so has __rseq_cs: the x86 assembly was used?"
fi
# the headers select the generic implementation for aarch64
printf '#include <oncpu.h>\n#ifdef ONCPU_HAVE_RSEQ_ASM\n#error rseq asm selected\n#endif\n#ifndef ONCPU_ARCH_GENERIC_H\n#error generic.h not used\n#endif\nint x;\n' |
	$cc -std=c11 -I"$src/include" -fsyntax-only -x c - || fail "header selection"

# the test programs (unit and stress) compile and link for aarch64
flags="-std=c11 -O2 -Wall -Wextra -Werror -I$src/include -I$src/tests/support"
for t in "$src"/tests/unit/thread.c "$src"/tests/unit/cs.c "$src"/tests/unit/percpu.c \
	"$src"/tests/unit/counter.c "$src"/tests/stress/cs.c "$src"/tests/stress/counter.c; do
	out="$build/$(basename "$(dirname "$t")")-$(basename "$t" .c)"
	extra=""
	case $t in */stress/*) extra="-DONCPU_INJECT" ;; esac
	$cc $flags $extra "$t" -o "$out" -L"$build" -loncpu -lpthread ||
		fail "compiling $t for aarch64"
	$readelf -h "$out" | grep -q "Machine:.*AArch64" || fail "$out is not aarch64"
done
echo "aarch64 cross build OK: $(basename "$so"), $n objects in liboncpu.a, test programs link"
