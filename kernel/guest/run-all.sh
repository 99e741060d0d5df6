#!/bin/sh
# SPDX-License-Identifier: MIT
#
# kernel/guest/run-all.sh: the project suite in the kernel/vm-test guest
# (busybox sh, static programs only), run as `cd /extra/<dir> && sh ./run-all.sh`.
# kernel/vm-suite copies it into its output directory next to what it
# generates from `ctest --show-only=json-v1` of a static build:
#   settings.sh         the defaults (VMSUITE_* in the environment win)
#   tests.sh            one `run`, `notbuilt` or `hostonly` line per test
#   bench-summary.awk   the VMTEST-BENCH lines of the mutex benchmark
#   bin/, b/            the provider probe, the build tree's programs
# Prints `VMTEST: PASS|FAIL|SKIP <name>` per test (the lines vm-test counts),
# ends with `vm-suite: N passed, N failed, N skipped (Ts)`; exit status 1 if
# anything failed.

D=$(pwd)
# shellcheck source=/dev/null
. "$D/settings.sh"
# Stress programs, scaled down for TCG (a test's own ENVIRONMENT wins).
export ONCPU_STRESS_SECONDS="${ONCPU_STRESS_SECONDS:-$VMSUITE_STRESS_SECONDS}"
export ONCPU_STRESS_REPS="${ONCPU_STRESS_REPS:-$VMSUITE_STRESS_REPS}"
T=$VMSUITE_TEST_TIMEOUT
passed=0 failed=0 skipped=0
t_start=$(cut -d. -f1 /proc/uptime)

uptime_s() { cut -d. -f1 /proc/uptime; }
pass() { echo "VMTEST: PASS $*"; passed=$((passed + 1)); }
fail() { echo "VMTEST: FAIL $*"; failed=$((failed + 1)); }
skip() { echo "VMTEST: SKIP $*"; skipped=$((skipped + 1)); }

# run NAME SKIP_RC|- WILL_FAIL(0|1) WORKDIR COMMAND...
run() {
	name=$1 skiprc=$2 willfail=$3 wd=$4
	shift 4
	echo "VMTEST: RUN $name"
	t0=$(uptime_s)
	(cd "$wd" && exec timeout -s KILL "$T" "$@") > /tmp/vmsuite.out 2>&1 < /dev/null
	rc=$?
	dt=$(($(uptime_s) - t0))
	ok=0
	[ "$rc" = 0 ] && ok=1
	[ "$willfail" = 1 ] && ok=$((1 - ok))
	if [ "$skiprc" != - ] && [ "$rc" = "$skiprc" ]; then
		sed -n '1,5s/^/  | /p' /tmp/vmsuite.out
		skip "$name (skip return code $rc, ${dt}s)"
	elif [ "$ok" = 1 ]; then
		sed -n '1,5s/^/  | /p' /tmp/vmsuite.out
		pass "$name (${dt}s)"
	else
		tail -n 80 /tmp/vmsuite.out | sed 's/^/  | /'
		why="rc=$rc"
		[ "$rc" = 137 ] && [ "$dt" -ge "$T" ] && why="timeout after ${T}s"
		fail "$name ($why, ${dt}s)"
	fi
}
notbuilt() { fail "$1 (not built: CTest has no command for it)"; }
hostonly() { echo "VMTEST: SKIP $1 (host-only: $2)"; }

# The providers that the <family>.oncpu cases of an oncpu-bench --json
# output ran with, one per line.
bench_providers() {
	sed -n 's/.*"name":"[^"]*\.oncpu".*"provider":"\([^"]*\)".*/\1/p' "$1" | sort -u
}

# bench_round ROUND FILTER: oncpu-bench --json for the cases FILTER selects,
# with the process's provider (ROUND kernel) or ONCPU_DESCHED_PROVIDER=none;
# the output in /tmp/bench.ROUND.json; one PASS|FAIL bench.mutex.ROUND line.
bench_round() {
	round=$1
	bargs="--filter $2 --json $VMSUITE_BENCH_ARGS"
	echo "VMTEST: RUN bench.mutex.$round: oncpu-bench $bargs"
	b0=$(uptime_s)
	want=$round
	[ "$round" = none ] || want=$VMSUITE_EXPECT_PROVIDER
	(
		[ "$round" = none ] && export ONCPU_DESCHED_PROVIDER=none
		# shellcheck disable=SC2086 # $bargs: several options
		exec timeout -s KILL 900 "$VMSUITE_BENCHBIN" $bargs
	) > "/tmp/bench.$round.json" 2> "/tmp/bench.$round.err"
	rc=$?
	cat "/tmp/bench.$round.err" "/tmp/bench.$round.json"
	bp=$(bench_providers "/tmp/bench.$round.json")
	if [ "$rc" != 0 ]; then
		fail "bench.mutex.$round (rc=$rc)"
	elif [ "$want" != any ] && [ "$bp" != "$want" ]; then
		fail "bench.mutex.$round (the .oncpu cases ran with provider=$(echo "$bp" | tr '\n' ' ' | sed 's/ $//'))"
	else
		pass "bench.mutex.$round ($(($(uptime_s) - b0))s)"
	fi
}

# ---- the deschedule provider this guest gives liboncpu ----
if [ -x "$D/bin/oncpu-provider" ]; then
	p=$("$D/bin/oncpu-provider")
	echo "provider: $p"
	if [ "$VMSUITE_EXPECT_PROVIDER" = any ] || [ "$p" = "$VMSUITE_EXPECT_PROVIDER" ]; then
		pass "desched-provider-$VMSUITE_EXPECT_PROVIDER"
	else
		fail "desched-provider-$VMSUITE_EXPECT_PROVIDER (provider: $p)"
	fi
else
	fail "desched-provider-$VMSUITE_EXPECT_PROVIDER (oncpu-provider was not built)"
fi
echo "vm-suite: $(nproc) CPUs; ONCPU_STRESS_SECONDS=$ONCPU_STRESS_SECONDS ONCPU_STRESS_REPS=$ONCPU_STRESS_REPS; per-test timeout ${T}s"

# ---- the tests, then the host-only ones (from ctest --show-only=json-v1) ----
# shellcheck source=/dev/null
. "$D/tests.sh"

# ---- the mutex families: the process's provider, then none ----
# Every case of every mutex family (mutex, mutex_long, mutex_mixed,
# mutex_hog: --filter is a prefix) at the benchmark's own thread counts
# (CPUs and 4 x CPUs), then only the <family>.oncpu cases (and
# .oncpu_untracked, which the prefix selects too) with provider none.
if [ "$VMSUITE_BENCH" = 1 ] && [ -n "$VMSUITE_BENCHBIN" ]; then
	bench_round kernel mutex
	families=$(sed -n 's/.*"name":"\([^"]*\.oncpu\)".*/\1/p' /tmp/bench.kernel.json | sort -u | tr '\n' ',' | sed 's/,$//')
	bench_round none "${families:-mutex}"
	awk -f "$D/bench-summary.awk" /tmp/bench.kernel.json /tmp/bench.none.json
elif [ "$VMSUITE_BENCH" = 1 ]; then
	fail "bench.mutex (oncpu-bench was not built as a static program)"
fi
# ---- more benchmark cases (--bench-cases): the table, timings not judged ----
if [ "$VMSUITE_BENCH" = 1 ] && [ -n "$VMSUITE_BENCH_CASES" ] && [ -n "$VMSUITE_BENCHBIN" ]; then
	echo "VMTEST: RUN bench.$VMSUITE_BENCH_CASES"
	# shellcheck disable=SC2086 # $VMSUITE_BENCH_ARGS: several options
	if timeout -s KILL 900 "$VMSUITE_BENCHBIN" --filter "$VMSUITE_BENCH_CASES" --threads "1,$(nproc)" $VMSUITE_BENCH_ARGS; then
		pass "bench.$VMSUITE_BENCH_CASES"
	else
		fail "bench.$VMSUITE_BENCH_CASES (rc=$?)"
	fi
fi

echo "vm-suite: $passed passed, $failed failed, $skipped skipped ($(($(uptime_s) - t_start))s)"
[ "$failed" = 0 ]
