#!/bin/sh
# SPDX-License-Identifier: MIT
# Cross-compile liboncpu for aarch64 and prove the result is aarch64 code
# built from the aarch64 architecture header (rseq sections in liboncpu and
# in the test programs), and that the test programs compile and link
# against it. With ONCPU_INSPECT (a host oncpu-inspect), that tool must
# list and validate the sections of liboncpu.so, of an object of
# liboncpu.a and of a test program, and the GDB extension (where gdb is
# installed) must list the test program's sections. Exit 77 (skipped) when no
# aarch64-linux-gnu-gcc is installed (Debian: apt-get install gcc-aarch64-linux-gnu).
#	cross-aarch64.sh SOURCE_DIR BUILD_DIR [ONCPU_INSPECT]
set -eu
src=${1:?source dir}
build=${2:?build dir}
inspect=${3:-}
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
# the aarch64 header: rseq assembly, hence the three descriptor sections
for s in __rseq_cs __rseq_cs_ptr_array __rseq_exit_point_array; do
	$readelf -SW "$so" | grep -q " $s " || fail "liboncpu.so has no $s section"
done
# the headers select the aarch64 sections (and -DONCPU_NO_RSEQ_ASM the generic ones)
printf '#include <oncpu.h>\n#include <string.h>\n#ifndef ONCPU_HAVE_RSEQ_ASM\n#error no rseq asm\n#endif\n#ifndef _ONCPU_ARCH_AARCH64_SECTIONS\n#error aarch64 sections not used\n#endif\n_Static_assert(ONCPU_RSEQ_SIG == 0xd428bc00U, "arm64 signature");\nint x;\n' |
	$cc -std=c11 -I"$src/include" -fsyntax-only -x c - || fail "header selection"
printf '#include <oncpu.h>\n#ifdef ONCPU_HAVE_RSEQ_ASM\n#error rseq asm selected\n#endif\n#ifndef _ONCPU_ARCH_GENERIC_SECTIONS\n#error generic sections not used\n#endif\nint x;\n' |
	$cc -std=c11 -DONCPU_NO_RSEQ_ASM -I"$src/include" -fsyntax-only -x c - ||
	fail "header selection with ONCPU_NO_RSEQ_ASM"

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

# ONCPU_UNLOADABLE's variant of the sections (they clear rseq_cs) compiles too
$cc $flags -DONCPU_UNLOADABLE -c "$src"/tests/unit/cs.c -o "$build/cs-unloadable.o" ||
	fail "compiling tests/unit/cs.c with ONCPU_UNLOADABLE for aarch64"

# oncpu-inspect (a host program) reads the aarch64 files: it must find
# sections, with the arm64 signature before every abort handler, and
# validate every descriptor (exit status 0, no line other than "ok").
if [ -n "$inspect" ]; then
	obj=$build/counter.o
	(cd "$build" && aarch64-linux-gnu-ar x liboncpu.a counter.c.o && mv counter.c.o counter.o) ||
		fail "no counter.c.o in liboncpu.a"
	for f in "$so" "$obj" "$build/stress-counter"; do
		$inspect "$f" > "$build/inspect.out" || { cat "$build/inspect.out"; fail "oncpu-inspect $f"; }
		head -n 1 "$build/inspect.out" | grep -Eq "^$f: ELF64 aarch64 [A-Z]+, [1-9][0-9]* critical sections?, [1-9][0-9]* exit points?" ||
			{ cat "$build/inspect.out"; fail "oncpu-inspect $f: no aarch64 sections listed"; }
		n=$(grep -c "^  #" "$build/inspect.out")
		nok=$(grep -c "^      ok$" "$build/inspect.out" || true)
		nsig=$(grep -c "(signature 0xd428bc00)" "$build/inspect.out" || true)
		[ "$n" = "$nok" ] && [ "$n" = "$nsig" ] ||
			{ cat "$build/inspect.out"; fail "oncpu-inspect $f: $n sections, $nok valid, $nsig with the arm64 signature"; }
		echo "oncpu-inspect $(basename "$f"): $n aarch64 sections, all valid"
	done
	# The GDB extension (through oncpu-inspect) lists the same sections of
	# the aarch64 program, in a host GDB that cannot run it.
	if command -v gdb >/dev/null 2>&1 && gdb -nx -batch -ex "python import json" >/dev/null 2>&1; then
		prog=$build/stress-counter
		ONCPU_INSPECT=$inspect gdb -nx -batch -ex "source $src/gdb/oncpu.py" \
			-ex "file $prog" -ex "info rseq all" > "$build/gdb.out" 2>&1 ||
			{ cat "$build/gdb.out"; fail "gdb info rseq all $prog"; }
		want=$($inspect "$prog" | grep -c "^  #")
		got=$(grep -c " start 0x[0-9a-f]* post-commit 0x[0-9a-f]* abort 0x" "$build/gdb.out" || true)
		[ "$got" = "$want" ] ||
			{ cat "$build/gdb.out"; fail "gdb's info rseq all lists $got sections of $prog, oncpu-inspect $want"; }
		echo "gdb info rseq all $(basename "$prog"): $got aarch64 sections"
	else
		echo "note: no gdb with python: the GDB extension is not checked on aarch64"
	fi
fi
echo "aarch64 cross build OK: $(basename "$so"), $n objects in liboncpu.a, test programs link"
