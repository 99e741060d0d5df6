#!/bin/sh
# SPDX-License-Identifier: MIT
#
# kernel/lint.sh [REPO]: lint the VM harness, each language with its own
# checker (the CTest test lint.kernel):
#   shell   kernel/vm-test, kernel/guest/run-all.sh, kernel/guest/init, this
#           script: shellcheck
#           (every finding fixed or annotated in place)
#   Python  kernel/vm-suite: pyflakes3, and compiled
#   awk     kernel/guest/bench-summary.awk: run on no input by busybox awk, the
#           guest's awk (any awk without busybox)
# Exit status 0 when all are clean, 1 otherwise, 77 (skipped) when shellcheck
# or pyflakes3 is not installed (scripts/install-deps installs both).

repo=${1:-$(dirname "$0")/..}
k=$repo/kernel
for tool in shellcheck pyflakes3 python3; do
	if ! command -v "$tool" > /dev/null; then
		echo "lint.kernel: SKIP: $tool is not installed (scripts/install-deps)"
		exit 77
	fi
done
status=0
check() {
	what=$1
	shift
	if "$@"; then
		echo "lint.kernel: $what: clean"
	else
		echo "lint.kernel: $what: FAILED"
		status=1
	fi
}
check "shellcheck vm-test guest/run-all.sh guest/init lint.sh" \
	shellcheck "$k/vm-test" "$k/guest/run-all.sh" "$k/guest/init" "$k/lint.sh"
check "pyflakes3 vm-suite" pyflakes3 "$k/vm-suite"
check "python3 compiles vm-suite" \
	python3 -c 'import sys; compile(open(sys.argv[1]).read(), sys.argv[1], "exec")' "$k/vm-suite"
if command -v busybox > /dev/null; then
	check "busybox awk guest/bench-summary.awk" busybox awk -f "$k/guest/bench-summary.awk" /dev/null
else
	check "awk guest/bench-summary.awk" awk -f "$k/guest/bench-summary.awk" /dev/null
fi
exit $status
