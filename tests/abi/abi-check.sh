#!/bin/sh
# SPDX-License-Identifier: MIT
# liboncpu's ABI line (doc/DESIGN.md, "ABI"):
#   abi-check.sh exports LIB SRCDIR   the library exports exactly the
#                                     symbols of src/liboncpu.map, each in
#                                     its version node
#   abi-check.sh symbols LIB SRCDIR   debian/liboncpu0.symbols lists exactly
#                                     those (name@VERSION)
#   abi-check.sh abidiff LIB SRCDIR   no incompatible change against the
#                                     baseline abi/liboncpu.so.0.abi
# abidiff missing: skipped (exit 77), unless ONCPU_TEST_REQUIRE_ABI=1 (CI).
# The baseline is regenerated on purpose only: scripts/abi-baseline.
set -eu
what=$1 lib=$2 src=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# name@VERSION for every exported definition, as dpkg-gensymbols writes it
# (a version node as NODE@NODE, an unversioned symbol as name@Base).
nm -D --defined-only "$lib" | awk '{n = $3; sub(/@@/, "@", n); if (n !~ /@/) n = n (n ~ /^ONCPU_/ ? "@" n : "@Base"); print n}' |
	LC_ALL=C sort >"$tmp/actual"

case "$what" in
exports)
	# The script's names, tagged with their node; comments dropped.
	sed -e 's|/\*.*\*/||g' "$src/src/liboncpu.map" | sed -e '/\/\*/,/\*\//d' |
		awk '/^[A-Za-z0-9_]+ *\{/ { node = $1; print node "@" node; next }
		     /^ *local:/ { node = "" }
		     node != "" && /^ *[A-Za-z_][A-Za-z0-9_]*;/ { gsub(/[ ;]/, ""); print $0 "@" node }' |
		LC_ALL=C sort >"$tmp/expected"
	label="src/liboncpu.map"
	;;
symbols)
	grep '^ ' "$src/debian/liboncpu0.symbols" | awk '{print $1}' | LC_ALL=C sort >"$tmp/expected"
	label="debian/liboncpu0.symbols"
	;;
abidiff)
	if ! command -v abidiff >/dev/null 2>&1; then
		echo "SKIP: abidiff not found (apt-get install abigail-tools)"
		[ "${ONCPU_TEST_REQUIRE_ABI:-0}" = 1 ] && { echo "ONCPU_TEST_REQUIRE_ABI=1: failing instead"; exit 1; }
		exit 77
	fi
	rc=0
	abidiff --headers-dir2 "$src/include" --drop-private-types "$src/abi/liboncpu.so.0.abi" "$lib" || rc=$?
	# abidiff's status bits: 1 error, 2 usage, 4 a change, 8 an incompatible change.
	if [ $((rc & 11)) -ne 0 ]; then
		echo "FAIL: abidiff exit $rc against abi/liboncpu.so.0.abi (incompatible change or error)"
		exit 1
	fi
	[ $((rc & 4)) -ne 0 ] && echo "compatible changes (refresh the baseline with scripts/abi-baseline when intended)"
	echo "PASS: no incompatible change against abi/liboncpu.so.0.abi"
	exit 0
	;;
*)
	echo "usage: abi-check.sh exports|symbols|abidiff LIB SRCDIR" >&2
	exit 2
	;;
esac
if ! diff -u "$tmp/expected" "$tmp/actual"; then
	echo "FAIL: the exports of $lib (+) differ from $label (-)"
	exit 1
fi
echo "PASS: $(wc -l <"$tmp/actual") exported symbols, as $label lists them"
