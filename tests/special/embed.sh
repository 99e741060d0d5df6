#!/bin/sh
# SPDX-License-Identifier: MIT
# embed.sh SOURCE_DIR: oncpu built inside another project (examples/embed),
# through add_subdirectory() and through FetchContent. Checks that the
# parent's settings stay its own (no build type forced on it, none of
# oncpu's tests or tools in its build) and that its program links and runs.
set -eu
src=$(cd "$1" && pwd)
CMAKE=${CMAKE:-cmake}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/oncpu-embed.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() {
	echo "embed: FAIL: $*" >&2
	exit 1
}
for how in subdirectory fetch; do
	b=$tmp/$how
	"$CMAKE" -S "$src/examples/embed" -B "$b" -DONCPU_SOURCE_DIR="$src" -DONCPU_EMBED=$how \
		>"$tmp/$how.log" 2>&1 || { cat "$tmp/$how.log"; fail "$how: configure"; }
	bt=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$b/CMakeCache.txt")
	[ -z "$bt" ] || fail "$how: oncpu set the parent's CMAKE_BUILD_TYPE to '$bt'"
	"$CMAKE" --build "$b" -j2 >>"$tmp/$how.log" 2>&1 || { cat "$tmp/$how.log"; fail "$how: build"; }
	[ -z "$(find "$b" -name 'oncpu-bench' -o -name 'unit.*' -type f)" ] ||
		fail "$how: oncpu's tools or tests were built inside the parent project"
	[ ! -f "$b/CTestTestfile.cmake" ] || ! grep -rq 'add_test' "$b" --include=CTestTestfile.cmake ||
		fail "$how: oncpu registered tests in the parent project"
	"$b/counter" || fail "$how: the parent's program failed"
	echo "embed: $how: built and ran the parent's program; no build type, tests or tools leaked"
done
