#!/bin/sh
# SPDX-License-Identifier: MIT
# expect_provider.sh NAME COMMAND...: runs a test program with
# ONCPU_STRESS_VERBOSE=1 and fails when it passed without reporting
# "provider NAME" (a test that silently ran with another provider proves
# nothing about this one).
want=$1
shift
out=$(ONCPU_STRESS_VERBOSE=1 "$@" 2>&1)
rc=$?
printf '%s\n' "$out"
[ $rc -ne 0 ] && exit $rc
case $out in
*"provider $want"*) exit 0 ;;
esac
echo "expect_provider.sh: the test did not run with provider $want"
exit 1
