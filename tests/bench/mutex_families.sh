#!/bin/sh
# SPDX-License-Identifier: MIT
# mutex_families.sh CHECK BENCH NOLOCK_BENCH: one check of oncpu-bench's
# mutex families (see CMakeLists.txt):
#   run         every family, variant and thread count runs, keeps its data
#               consistent (exit 0) and reports cpu_ns_per_op (> 0) and,
#               except mutex_long.bound, acquire_p99_ns; no process of the
#               run is left afterwards
#   nolock      with a lock that excludes nothing, every family case fails
#               its check (needs 2 CPUs: SKIP otherwise)
#   hog_killed  mutex_hog's competing processes die with a benchmark that
#               is killed (SIGKILL) in the middle of a run
check=$1 bench=$2 nolock=$3
families="mutex_long mutex_mixed mutex_hog"
variants="oncpu oncpu_untracked pthread pthread_adaptive"
tmp=$(mktemp -d) || exit 1
sid=
# A failed check leaves nothing running: the session is the test's own.
trap '[ -n "$sid" ] && pkill -KILL -s "$sid"; rm -rf "$tmp"' EXIT
cpus=$(nproc)

fail() {
	echo "FAIL: $*"
	exit 1
}

# Runs BENCH ARGS... in a session of its own, in the background; the
# session id is in $tmp/sid once the command runs.
start_in_session() {
	rm -f "$tmp/sid"
	setsid sh -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$tmp/sid" "$@" \
		> "$tmp/out" 2> "$tmp/err" &
	bg=$!
	n=0
	until [ -s "$tmp/sid" ]; do
		n=$((n + 1))
		[ $n -le 100 ] || fail "the benchmark did not start"
		sleep 0.1
	done
	sid=$(cat "$tmp/sid")
}

# Waits up to 10 s until no process of session $sid is left.
expect_session_empty() {
	n=0
	while pgrep -s "$sid" > /dev/null; do
		n=$((n + 1))
		if [ $n -gt 100 ]; then
			ps -o pid,stat,args -s "$sid"
			fail "$1: processes of the benchmark's session are left"
		fi
		sleep 0.1
	done
}

case $check in
run)
	start_in_session "$bench" -f mutex_ --iters 1000 --reps 1 --json
	wait $bg
	rc=$?
	cat "$tmp/err"
	[ $rc = 0 ] || fail "oncpu-bench -f mutex_ exited with $rc"
	expect_session_empty "after the run"
	for f in $families; do
		for v in $variants; do
			for t in $cpus $((4 * cpus)); do
				line=$(grep "\"name\":\"$f\.$v\",\"threads\":$t," "$tmp/out") ||
					fail "no result for $f.$v at $t threads"
				echo "$line" | grep -Eq '"cpu_ns_per_op":[0-9]*[1-9]' ||
					fail "$f.$v at $t threads: no cpu_ns_per_op > 0: $line"
				echo "$line" | grep -Eq '"acquire_p99_ns":[0-9]+' ||
					fail "$f.$v at $t threads: no acquire_p99_ns: $line"
			done
		done
	done
	line=$(grep "\"name\":\"mutex_long\.bound\",\"threads\":$cpus," "$tmp/out") ||
		fail "no result for mutex_long.bound at $cpus threads"
	echo "$line" | grep -Eq '"cpu_ns_per_op":[0-9]*[1-9]' ||
		fail "mutex_long.bound: no cpu_ns_per_op > 0: $line"
	for t in $cpus $((4 * cpus)); do
		grep -q "\"name\":\"mutex_mixed\.bound\",\"threads\":$t," "$tmp/out" ||
			fail "no result for mutex_mixed.bound at $t threads"
	done
	echo "run: $(grep -c '"name":' "$tmp/out") results, every field present"
	;;
nolock)
	if [ "$cpus" -lt 2 ]; then
		echo "SKIP: needs 2 CPUs (threads of a 1-CPU run rarely overlap in short sections)"
		exit 77
	fi
	# Iterations for ~0.1 s of sections or more: threads that share their
	# CPUs with mutex_hog's processes overlap only when both run.
	# Overlap is a matter of chance (short sections, threads that share
	# their CPUs with other load): a family runs again, up to 8 times,
	# until every variant's check has caught the missing lock once.
	: > "$tmp/err"
	for run in "mutex_long 5000" "mutex_mixed 20000" "mutex_hog 10000000"; do
		set -- $run
		attempt=0
		while :; do
			attempt=$((attempt + 1))
			"$nolock" -f "$1" --threads "$cpus" --iters "$2" --reps 1 > /dev/null 2>> "$tmp/err"
			rc=$?
			[ $rc = 1 ] || [ $rc = 0 ] || { cat "$tmp/err"; fail "$1 without a lock: exit $rc"; }
			missed=
			for v in $variants; do
				grep -q "^oncpu-bench: $1\.$v with $cpus threads: the check after the run failed" \
					"$tmp/err" || missed="$missed $1.$v"
			done
			[ -z "$missed" ] && break
			[ $attempt -lt 8 ] || { cat "$tmp/err"; fail "its check passed without a lock in 8 runs:$missed"; }
		done
		echo "nolock: $1: every variant caught the missing lock ($attempt run(s))"
	done
	echo "nolock: every family case failed its check"
	;;
hog_killed)
	start_in_session "$bench" -f mutex_hog.pthread --iters 1000000000 --reps 1
	# The benchmark and one competing process per CPU.
	n=0
	until [ "$(pgrep -c -s "$sid")" -gt "$cpus" ]; do
		n=$((n + 1))
		[ $n -le 100 ] || fail "the competing processes did not start"
		sleep 0.1
	done
	kill -KILL "$sid"
	wait $bg
	expect_session_empty "after SIGKILL"
	echo "hog_killed: no competing process outlived the benchmark"
	;;
*)
	fail "unknown check '$check'"
	;;
esac
