#!/bin/sh
# SPDX-License-Identifier: MIT
# oncpu-bpfd as root trusts only what only root can change:
#   1. load on a bpffs whose mode lacks search permission for others adds
#      it, and the unload of the last provider there restores the mode;
#   2. attach refuses a library file owned by another user, and a root-owned
#      file in a directory another user may write (it could be swapped);
#   3. refresh refuses a recorded path whose file was replaced by another
#      user's file.
# Runs on a bpffs mounted for the test, so /sys/fs/bpf is never changed.
#   loader.sh LOADER LIBRARY [STEP...]   (default: all steps)
loader=$1 lib=$2
shift 2
steps=${*:-1 2 3}
step() { case " $steps " in *" $1 "*) return 0 ;; esac; return 1; }
skip() {
	echo "SKIP: $*"
	[ "${ONCPU_TEST_REQUIRE_BPF:-0}" = 1 ] && { echo "ONCPU_TEST_REQUIRE_BPF=1: failing instead"; exit 1; }
	exit 77
}
fail() {
	echo "FAIL: $*"
	exit 1
}
[ "$(id -u)" = 0 ] || skip "oncpu-bpfd loads BPF programs: run as root"

top=$(mktemp -d /tmp/oncpu-bpfd-test-XXXXXX) || fail "mktemp"
fs=$top/bpffs pin=$top/bpffs/oncpu
cleanup() {
	"$loader" --pin-dir "$pin" unload >/dev/null 2>&1
	"$loader" --pin-dir "$pin-2" unload >/dev/null 2>&1
	umount "$fs" 2>/dev/null
	rm -rf "$top"
}
trap cleanup EXIT
mkdir "$fs" && mount -t bpf -o mode=0700 bpf "$fs" || skip "cannot mount a bpffs at $fs"
chmod 0700 "$fs"

# 1. The mode of the bpffs directory.
"$loader" --pin-dir "$pin" load --no-attach || skip "oncpu-bpfd cannot load the provider here"
if step 1; then
mode=$(stat -c %a "$fs")
[ "$mode" = 711 ] || fail "load: $fs has mode $mode, expected 711 (search for others added)"
"$loader" --pin-dir "$pin" unload || fail "unload"
mode=$(stat -c %a "$fs")
[ "$mode" = 700 ] || fail "unload: $fs has mode $mode, expected 700 restored"
# Two providers there: the mode comes back with the last one only.
"$loader" --pin-dir "$pin" load --no-attach >/dev/null || fail "load again"
"$loader" --pin-dir "$pin-2" load --no-attach >/dev/null || fail "load a second provider"
"$loader" --pin-dir "$pin" unload >/dev/null || fail "unload the first"
mode=$(stat -c %a "$fs")
[ "$mode" = 711 ] || fail "unload with another provider left: mode $mode, expected 711"
"$loader" --pin-dir "$pin-2" unload >/dev/null || fail "unload the second"
mode=$(stat -c %a "$fs")
[ "$mode" = 700 ] || fail "unload of the last provider: mode $mode, expected 700 restored"
echo "1. bpffs mode 0700 -> 0711 while loaded -> 0700 after the last unload"
"$loader" --pin-dir "$pin" load --no-attach >/dev/null || fail "load again"
fi

# 2. Which files attach accepts.
mkdir -m 0755 "$top/root" "$top/user"
chown nobody "$top/user"
cp "$lib" "$top/root/liboncpu.so.0"
cp "$lib" "$top/root/user-owned.so"
chown nobody "$top/root/user-owned.so"
cp "$lib" "$top/user/liboncpu.so.0"
if step 2; then
"$loader" --pin-dir "$pin" attach "$top/root/user-owned.so" &&
	fail "attach accepted a file owned by user nobody"
"$loader" --pin-dir "$pin" attach "$top/user/liboncpu.so.0" &&
	fail "attach accepted a root-owned file in a directory user nobody may write"
ln -s "$top/user/liboncpu.so.0" "$top/root/link.so"
"$loader" --pin-dir "$pin" attach "$top/root/link.so" &&
	fail "attach accepted a link to a file in a directory user nobody may write"
"$loader" --pin-dir "$pin" attach "$top/root/liboncpu.so.0" ||
	fail "attach refused a root-owned file in a root-owned directory"
echo "2. attach: refused another user's file and a file in another user's directory"
fi
"$loader" --pin-dir "$pin" attach "$top/root/liboncpu.so.0" >/dev/null || fail "attach"

# 3. refresh after the attached file was replaced by another user's file.
if step 3; then
cp "$lib" "$top/root/new.so"
chown nobody "$top/root/new.so"
mv "$top/root/new.so" "$top/root/liboncpu.so.0"
"$loader" --pin-dir "$pin" refresh && fail "refresh re-attached a file owned by user nobody"
"$loader" --pin-dir "$pin" status | grep -q "liboncpu.so.0.*REPLACED" ||
	fail "status does not report the replaced file"
echo "3. refresh: refused the replacement owned by user nobody"
fi
echo ok
