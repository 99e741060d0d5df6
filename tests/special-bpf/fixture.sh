#!/bin/sh
# SPDX-License-Identifier: MIT
# The fixture of the bpf provider tests: load (and attach FILE...) or unload
# the provider under its own pin directory. Registration is granted to the
# group ONCPU_TEST_BPF_GID (the attacker test's unprivileged member).
#   fixture.sh LOADER PIN_DIR load FILE...
#   fixture.sh LOADER PIN_DIR unload
# Not root, or a kernel that refuses the programs: SKIP (77), unless
# ONCPU_TEST_REQUIRE_BPF=1 (CI), which turns that into a failure.
loader=$1 pin=$2 action=$3
shift 3
skip() {
	echo "SKIP: $*"
	if [ "${ONCPU_TEST_REQUIRE_BPF:-0}" = 1 ]; then
		echo "ONCPU_TEST_REQUIRE_BPF=1: failing instead"
		exit 1
	fi
	exit 77
}
if [ "$(id -u)" != 0 ]; then
	skip "the bpf provider tests load BPF programs: run them as root"
fi
case $action in
load)
	"$loader" --pin-dir "$pin" unload >/dev/null 2>&1
	libs=
	for f in "$@"; do libs="$libs --library $f"; done
	if ! "$loader" --pin-dir "$pin" load --group "${ONCPU_TEST_BPF_GID:?}" $libs; then
		skip "oncpu-bpfd could not load the provider here (kernel 6.13+ with BTF, CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN needed; see above)"
	fi
	"$loader" --pin-dir "$pin" status
	;;
unload)
	"$loader" --pin-dir "$pin" status
	"$loader" --pin-dir "$pin" unload
	;;
esac
