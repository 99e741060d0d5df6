#!/bin/sh
# SPDX-License-Identifier: MIT
# every_case.sh BENCH: oncpu-bench runs every case it lists at four thread
# counts (more results than its first allocations hold: 64, then 128), few
# iterations each, and prints one JSON result per case and thread count.
# MALLOC_PERTURB_ fills freed memory, so that a result read through a
# pointer into storage that was reallocated meanwhile shows.
bench=$1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() {
	echo "FAIL: $*"
	exit 1
}
"$bench" --list > "$tmp/list" || fail "oncpu-bench --list: exit $?"
cases=$(awk '{ print $1 }' "$tmp/list")
ncases=$(echo "$cases" | wc -l)
MALLOC_PERTURB_=165 "$bench" --json --iters 20 --reps 1 --threads 1,2,3,4 \
	> "$tmp/out" 2> "$tmp/err"
rc=$?
[ $rc = 0 ] || { cat "$tmp/err"; fail "oncpu-bench exited with $rc"; }
for c in $cases; do
	for t in 1 2 3 4; do
		grep -q "\"name\":\"$c\",\"threads\":$t[,}]" "$tmp/out" ||
			fail "no result for $c at $t threads"
	done
done
n=$(grep -o '"name":' "$tmp/out" | wc -l)
[ "$n" = $((4 * ncases)) ] || fail "$n results, expected $((4 * ncases))"
echo "PASS: $ncases cases x 4 thread counts, one result each"
