#!/bin/sh
# SPDX-License-Identifier: MIT
# mutex_ideal.sh ROOT: scripts/mutex-mixed-ideal, the model of a perfect
# mutex in the mutex_mixed family. Its simulation gives the exact answer
# on cases worked out by hand; on the saved run doc/mutex-bench.json the
# ideal is never below the measured bound, and no measured mutex is faster
# than the ideal; bad input ends with a message, not a traceback.
root=$1
script=$root/scripts/mutex-mixed-ideal
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() {
	echo "FAIL: $*"
	exit 1
}
command -v python3 > /dev/null || { echo "SKIP: no python3"; exit 77; }

# Hand-worked cases of simulate(sections, cpus, outside_ns).
python3 - "$script" << 'PY' || fail "simulate() differs from the hand-worked cases"
import importlib.machinery, importlib.util, sys
loader = importlib.machinery.SourceFileLoader("ideal", sys.argv[1])
spec = importlib.util.spec_from_loader("ideal", loader)
m = importlib.util.module_from_spec(spec)
loader.exec_module(m)
def check(name, got, want):
    ok = abs(got - want) < 1e-6 * max(1.0, want)
    print("%s %s: %.3f (want %.3f)" % ("ok" if ok else "BAD", name, got, want))
    return ok
ok = True
# One CPU: nothing overlaps; each op is its section plus its outside work.
ok &= check("1 cpu", m.simulate([[(100.0, 0.0)] * 10] * 2, 1, 50.0), 150.0)
# Two CPUs, two threads, 100 ns sections, 100 ns outside: one thread's
# outside work hides behind the other's section; the first op's section
# and the last one's outside work stick out: (20 * 100 + 100) / 20.
ok &= check("2 cpus", m.simulate([[(100.0, 0.0)] * 10] * 2, 2, 100.0), 105.0)
# An owner asleep holds the lock without a CPU: two threads, one CPU, a
# 1000 ns sleep each, 500 ns outside: the outside work hides behind the
# other's sleep, only the last one sticks out: (2 * 1000 + 500) / 2.
ok &= check("sleep", m.simulate([[(0.0, 1000.0)], [(0.0, 1000.0)]], 1, 500.0), 1250.0)
# Outside work shares the free CPUs: 3 threads, 1 CPU, no section work,
# 300 ns outside each: 3 x 300 of CPU in 3 ops.
ok &= check("shared cpu", m.simulate([[(0.0, 0.0)]] * 3, 1, 300.0), 300.0)
sys.exit(0 if ok else 1)
PY

# The saved run: ideal >= bound, and no measured variant below the ideal.
"$script" --cpus 2 "$root/doc/mutex-bench.json" > "$tmp/out" 2>&1 ||
	{ cat "$tmp/out"; fail "exit $? on doc/mutex-bench.json"; }
cat "$tmp/out"
lines=$(grep -c 'threads: bound' "$tmp/out")
[ "$lines" -ge 1 ] || fail "no result line"
awk '/threads: bound/ {
	b = $4; i = $7
	if (i + 0 < b + 0) { print "ideal " i " below the bound " b; bad = 1 }
	if (match($0, /oncpu [0-9]+ = [0-9.]+ x ideal/)) {
		split(substr($0, RSTART, RLENGTH), f, " ")
		if (f[4] + 0 < 1) { print "oncpu faster than the ideal: " f[4]; bad = 1 }
	}
	if (match($0, /more than [0-9.]+ x/)) {
		split(substr($0, RSTART, RLENGTH), f, " ")
		if (f[3] + 0 < 1) { print "glibc faster than the ideal: " f[3]; bad = 1 }
	}
} END { exit bad }' "$tmp/out" || fail "the model contradicts the measured run"

# Bad input: a message naming the problem, exit status 1, no traceback.
echo '{"results":[]}' > "$tmp/empty.json"
"$script" "$tmp/empty.json" > "$tmp/err" 2>&1 && fail "accepted a run without mutex_mixed.bound"
grep -q "no mutex_mixed.bound" "$tmp/err" || { cat "$tmp/err"; fail "no message for a run without the bound"; }
echo 'not json' > "$tmp/bad.json"
"$script" "$tmp/bad.json" > "$tmp/err" 2>&1 && fail "accepted a file that is not JSON"
grep -q Traceback "$tmp/err" && { cat "$tmp/err"; fail "traceback on a file that is not JSON"; }
"$script" "$tmp/missing.json" > "$tmp/err" 2>&1 && fail "accepted a missing file"
grep -q Traceback "$tmp/err" && { cat "$tmp/err"; fail "traceback on a missing file"; }
if command -v pyflakes3 > /dev/null; then
	pyflakes3 "$script" || fail "pyflakes3"
fi
echo "PASS: model exact on 4 hand-worked cases, consistent with the saved run ($lines thread counts)"
