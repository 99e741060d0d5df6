#!/bin/sh
# SPDX-License-Identifier: MIT
# check-man.sh PAGE...: every page formats without a single groff warning.
# Exit 77 (skipped) when groff is not installed.
if ! command -v groff >/dev/null 2>&1; then
	echo "check-man: SKIP: groff is not installed"
	exit 77
fi
status=0
for page in "$@"; do
	out=$(groff -man -ww -z -Tutf8 "$page" 2>&1)
	if [ -n "$out" ]; then
		echo "$page:"
		echo "$out"
		status=1
	fi
done
[ $status -eq 0 ] && echo "check-man: $# pages, no warnings"
exit $status
