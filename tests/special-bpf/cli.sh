#!/bin/sh
# SPDX-License-Identifier: MIT
# oncpu-bpfd refuses bad command lines with a message, before it touches
# anything (no root needed):
#   1. a pin directory too long for its paths (it used to be cut short, and
#      a shortened path names another directory): every command refuses it,
#      and load creates nothing;
#   2. cost --seconds that is not a number of seconds in (0, 3600].
#   cli.sh LOADER
loader=$1
fail() {
	echo "FAIL: $*"
	exit 1
}
top=$(mktemp -d /tmp/oncpu-bpfd-cli-XXXXXX) || fail "mktemp"
trap 'rm -rf "$top"' EXIT

# refuses LABEL EXPECTED-TEXT COMMAND...: non-zero exit, EXPECTED-TEXT on stderr.
refuses() {
	label=$1 text=$2
	shift 2
	if "$@" >"$top/out" 2>"$top/err"; then
		fail "$label: exit status 0"
	fi
	grep -qF -- "$text" "$top/err" || fail "$label: no '$text' in: $(cat "$top/err")"
	echo "ok: $label: $(head -c 100 "$top/err")"
}

long=$top/$(printf '%4100s' '' | tr ' ' a)
for cmd in status load unload refresh "attach /nonexistent"; do
	# shellcheck disable=SC2086 # the attach line is two words
	refuses "pin dir of ${#long} bytes, $cmd" "pin directory is too long" \
		"$loader" --pin-dir "$long" $cmd
done
refuses "the same in ONCPU_BPF_PIN_DIR" "pin directory is too long" \
	env ONCPU_BPF_PIN_DIR="$long" "$loader" status
made=$(find "$top" -mindepth 1 ! -name out ! -name err)
[ -z "$made" ] || fail "load created: $made"

for s in abc 0 -1 1e9 nan 2x ""; do
	refuses "cost --seconds '$s'" "--seconds $s:" "$loader" cost --seconds "$s"
done
echo "cli: all checks passed"
