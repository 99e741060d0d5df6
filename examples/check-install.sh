#!/bin/sh
# SPDX-License-Identifier: MIT
# Flags (EXAMPLE_CFLAGS, EXAMPLE_LDFLAGS, pkg-config output) and word lists
# are split on purpose:
# shellcheck disable=SC2046,SC2086
#
# check-install.sh BUILD_DIR SOURCE_DIR [CONFIG]
#
# Installs the build tree into a temporary prefix with `cmake --install`,
# checks what was installed (SONAME, static library, headers, pkg-config
# file, CMake package, exported symbols, man pages, and that each installed
# program runs from the prefix without LD_LIBRARY_PATH), then builds
# every example against that prefix twice, through pkg-config (examples/
# Makefile) and through find_package(oncpu) (examples/CMakeLists.txt), and
# runs them. Registered in CTest as install.examples (doc/CMakeLists.txt).
#
# Environment: CMAKE (cmake), CC (cc), PKG_CONFIG (pkg-config), CMAKE_GENERATOR (for the examples
# project), EXAMPLE_CFLAGS and EXAMPLE_LDFLAGS (e.g. sanitizer flags that the
# installed library needs), ONCPU_KEEP_TMP=1 keeps the temporary directory.
set -eu

if [ $# -lt 2 ]; then
	echo "usage: $0 BUILD_DIR SOURCE_DIR [CONFIG]" >&2
	exit 2
fi
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
config=${3:-}
CMAKE=${CMAKE:-cmake}
CC=${CC:-cc}
EXAMPLE_CFLAGS=${EXAMPLE_CFLAGS:-}
EXAMPLE_LDFLAGS=${EXAMPLE_LDFLAGS:-}
PKG_CONFIG=${PKG_CONFIG:-pkg-config}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/oncpu-install.XXXXXX")
if [ -n "${ONCPU_KEEP_TMP:-}" ]; then
	echo "check-install: keeping $tmp"
else
	trap 'rm -rf "$tmp"' EXIT
fi
prefix=$tmp/prefix

say() { echo "check-install: $*"; }
fail() {
	echo "check-install: FAIL: $*" >&2
	exit 1
}
# run LOG CMD...: run quietly, show the log on failure.
run() {
	log=$1
	shift
	if ! "$@" >"$log" 2>&1; then
		cat "$log" >&2
		fail "$*"
	fi
}

# ---- install ----
set -- "$CMAKE" --install "$build" --prefix "$prefix"
[ -n "$config" ] && set -- "$@" --config "$config"
run "$tmp/install.log" "$@"
say "installed $build into $prefix"

# The install components (runtime, development, tools) together install
# exactly what a plain install does, and runtime only the shared library.
for c in runtime development tools; do
	set -- "$CMAKE" --install "$build" --prefix "$tmp/component" --component $c
	[ -n "$config" ] && set -- "$@" --config "$config"
	run "$tmp/install-$c.log" "$@"
done
# (GDB's auto-load path contains the prefix itself.)
(cd "$prefix" && find . ! -type d | sed "s|$prefix|PREFIX|" | sort) >"$tmp/all.list"
(cd "$tmp/component" && find . ! -type d | sed "s|$tmp/component|PREFIX|" | sort) >"$tmp/components.list"
cmp -s "$tmp/all.list" "$tmp/components.list" ||
	fail "install components differ from a plain install: $(diff "$tmp/all.list" "$tmp/components.list" | tr '\n' ' ')"
rm -rf "$tmp/component"
set -- "$CMAKE" --install "$build" --prefix "$tmp/component" --component runtime
[ -n "$config" ] && set -- "$@" --config "$config"
run "$tmp/install-runtime.log" "$@"
rt=$(cd "$tmp/component" && find . ! -type d | grep -v -E '/liboncpu\.so\.[0-9.]+$' || true)
[ -z "$rt" ] || fail "component runtime installs more than the shared library:" $rt
say "install components runtime, development, tools: $(wc -l <"$tmp/all.list") files in all"

so=$(find "$prefix" -name 'liboncpu.so.0' | head -n 1)
[ -n "$so" ] || fail "no liboncpu.so.0 (the SONAME link) under $prefix"
libdir=$(dirname "$so")
[ -e "$libdir/liboncpu.so" ] || fail "no liboncpu.so (the link for -loncpu) in $libdir"
[ -f "$libdir/liboncpu.a" ] || fail "no static library liboncpu.a in $libdir"
[ -f "$prefix/include/oncpu.h" ] || fail "no include/oncpu.h"
[ -f "$prefix/include/oncpu/cs.h" ] || fail "no include/oncpu/cs.h"
[ -f "$libdir/pkgconfig/oncpu.pc" ] || fail "no $libdir/pkgconfig/oncpu.pc"
[ -f "$libdir/cmake/oncpu/oncpuConfig.cmake" ] || fail "no $libdir/cmake/oncpu/oncpuConfig.cmake"
say "libraries in $libdir:" "$(cd "$libdir" && echo liboncpu*)"

# ---- SONAME and exports ----
real=$(find "$libdir" -name 'liboncpu.so.*.*' | head -n 1)
[ -n "$real" ] || fail "no versioned liboncpu.so.X.Y in $libdir"
soname=
if command -v readelf >/dev/null 2>&1; then
	soname=$(readelf -d "$real" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
elif command -v objdump >/dev/null 2>&1; then
	soname=$(objdump -p "$real" | awk '$1 == "SONAME" { print $2 }')
fi
if [ -z "$soname" ] && ! command -v readelf >/dev/null 2>&1 && ! command -v objdump >/dev/null 2>&1; then
	say "SKIP: SONAME not read (neither readelf nor objdump is installed)"
else
	[ "$soname" = "liboncpu.so.0" ] || fail "SONAME of $real is '$soname', not liboncpu.so.0"
	say "SONAME liboncpu.so.0"
fi
if command -v nm >/dev/null 2>&1; then
	# Names without their @@VERSION; the version nodes (ONCPU_0 ...) are
	# symbols too. Sanitizer builds add their own symbols (__odr_asan.*),
	# musl's crti _init and _fini: not part of the ABI.
	foreign=$(nm -D --defined-only "$real" | awk '{ sub(/@.*/, "", $NF); print $NF }' |
		grep -v -E '^(_?oncpu_|ONCPU_[0-9A-Z_]+$|__odr_asan|__asan|__ubsan|__sanitizer|_init$|_fini$)' || true)
	[ -z "$foreign" ] || fail "liboncpu.so exports symbols outside oncpu_/_oncpu_:" $foreign
	say "exports: $(nm -D --defined-only "$real" | grep -c -E ' _?oncpu_') symbols, all oncpu_* or _oncpu_*"
fi
if command -v ar >/dev/null 2>&1; then
	ar t "$libdir/liboncpu.a" | grep -q 'thread\.c\.o' || fail "liboncpu.a lacks thread.c.o"
fi

# ---- man pages and tools, when this build has them ----
if ls "$src"/doc/*.[1-8] >/dev/null 2>&1; then
	for page in "$src"/doc/*.[1-8]; do
		name=$(basename "$page")
		sec=${name##*.}
		[ -n "$(find "$prefix" -path "*/man$sec/$name")" ] || fail "man page $name not installed"
	done
	set -- "$src"/doc/*.[1-8]
	say "man pages installed: $# (and their aliases)"
fi
if [ -x "$build/tools/bench/oncpu-bench" ]; then
	bench=$prefix/bin/oncpu-bench
	[ -x "$bench" ] || fail "oncpu-bench not installed in $prefix/bin"
	# No LD_LIBRARY_PATH: the installed program finds liboncpu by its RUNPATH.
	run "$tmp/bench-help.log" "$bench" --help
	run "$tmp/bench.log" "$bench" --filter counter.oncpu --threads 1 --iters 1000 --reps 1
	say "installed oncpu-bench runs"
fi
# Every other installed program runs from the prefix too, with no
# LD_LIBRARY_PATH (each finds liboncpu by its RUNPATH, if it needs it).
if [ -x "$build/tools/inspect/oncpu-inspect" ]; then
	inspect=$prefix/bin/oncpu-inspect
	[ -x "$inspect" ] || fail "oncpu-inspect not installed in $prefix/bin"
	run "$tmp/inspect.log" "$inspect" "$real"
	grep -q 'critical section' "$tmp/inspect.log" || fail "installed oncpu-inspect listed no section of $real"
	say "installed oncpu-inspect runs: $(head -n 1 "$tmp/inspect.log")"
fi
if [ -x "$build/tools/bpfd/oncpu-bpfd" ]; then
	bpfd=$(find "$prefix" -path '*bin/oncpu-bpfd' | head -n 1)
	[ -n "$bpfd" ] || fail "oncpu-bpfd not installed under $prefix"
	"$bpfd" --help >"$tmp/bpfd.log" 2>&1 || true
	grep -q '^usage: oncpu-bpfd' "$tmp/bpfd.log" || { cat "$tmp/bpfd.log" >&2; fail "installed $bpfd does not run"; }
	say "installed oncpu-bpfd runs"
fi

# ---- the examples, through pkg-config ----
examples=
for f in "$src"/examples/*.c; do
	examples="$examples $(basename "$f" .c)"
done
# The shared objects PROGRAM loads (musl's loader lists them itself: glibc's
# ldd cannot read a musl program).
list_libs() { # PROGRAM
	interp=$(readelf -l "$1" 2>/dev/null | sed -n 's/.*interpreter: \(.*\)]/\1/p')
	case $interp in
	*ld-musl*) LD_LIBRARY_PATH=$libdir "$interp" --list "$1" ;;
	*) LD_LIBRARY_PATH=$libdir ldd "$1" ;;
	esac
}
run_examples() { # DIR HOW
	for ex in $examples counter_static; do
		[ -x "$1/$ex" ] || fail "$2: $ex was not built"
		if command -v ldd >/dev/null 2>&1 && [ "$ex" != counter_static ]; then
			list_libs "$1/$ex" | grep -q "$libdir/liboncpu.so.0" ||
				fail "$2: $ex does not load liboncpu from $libdir"
		fi
		run "$1/$ex.log" env LD_LIBRARY_PATH="$libdir" "$1/$ex"
		say "$2: $ex: $(tail -n 1 "$1/$ex.log")"
	done
}

if command -v "$PKG_CONFIG" >/dev/null 2>&1; then
	PKG_CONFIG_PATH=$libdir/pkgconfig
	export PKG_CONFIG_PATH
	version=$("$PKG_CONFIG" --modversion oncpu) || fail "$PKG_CONFIG cannot read oncpu.pc"
	for var in includedir libdir; do
		value=$("$PKG_CONFIG" --variable=$var oncpu)
		case $value in
		"$prefix"/*) ;;
		*) fail "oncpu.pc: $var=$value is outside the install prefix $prefix (the .pc file must follow cmake --install --prefix)" ;;
		esac
	done
	mkdir "$tmp/pkgconfig"
	if command -v make >/dev/null 2>&1; then
		run "$tmp/pkgconfig/build.log" make -C "$tmp/pkgconfig" -f "$src/examples/Makefile" \
			PKG_CONFIG="$PKG_CONFIG" CC="$CC" CFLAGS="-O2 -Wall -Wextra -Werror $EXAMPLE_CFLAGS" LDFLAGS="$EXAMPLE_LDFLAGS"
	else
		say "make not found: compiling the examples directly with pkg-config's flags"
		for ex in $examples; do
			run "$tmp/pkgconfig/build.log" "$CC" -std=c11 -O2 -Wall -Wextra -Werror $EXAMPLE_CFLAGS \
				$("$PKG_CONFIG" --cflags oncpu) "$src/examples/$ex.c" -o "$tmp/pkgconfig/$ex" \
				$EXAMPLE_LDFLAGS $("$PKG_CONFIG" --libs oncpu) -pthread
		done
		run "$tmp/pkgconfig/build.log" "$CC" -std=c11 -O2 $EXAMPLE_CFLAGS $("$PKG_CONFIG" --cflags oncpu) \
			"$src/examples/counter.c" -o "$tmp/pkgconfig/counter_static" $EXAMPLE_LDFLAGS \
			"$libdir/liboncpu.a" -pthread
	fi
	say "pkg-config: oncpu $version, built:$examples counter_static"
	run_examples "$tmp/pkgconfig" pkg-config
else
	say "SKIP: $PKG_CONFIG is not installed, so oncpu.pc and examples/Makefile were NOT checked" \
		"(install pkg-config, e.g. apt-get install pkg-config, to check them)"
fi

# ---- the examples, through find_package(oncpu) ----
set -- "$CMAKE" -S "$src/examples" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
	-DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	"-DCMAKE_C_FLAGS=-Wall -Wextra -Werror $EXAMPLE_CFLAGS" \
	"-DCMAKE_EXE_LINKER_FLAGS=$EXAMPLE_LDFLAGS"
run "$tmp/cmake-configure.log" "$@"
found=$(sed -n 's/^oncpu_DIR:PATH=//p' "$tmp/cmake/CMakeCache.txt")
[ "$found" = "$libdir/cmake/oncpu" ] || fail "find_package(oncpu) found '$found', not $libdir/cmake/oncpu"
run "$tmp/cmake-build.log" "$CMAKE" --build "$tmp/cmake"
say "find_package: oncpu from $found, built:$examples counter_static"
run_examples "$tmp/cmake" find_package

say "OK"
