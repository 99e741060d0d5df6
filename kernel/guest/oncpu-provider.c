/* SPDX-License-Identifier: MIT */
/*
 * oncpu-provider: prints the deschedule provider liboncpu chooses in this
 * process ("kernel", "bpf" or "none"), one line. kernel/vm-suite links it
 * statically with the build's liboncpu.a for the guest's run-all.sh.
 */
#include <stdio.h>

#include <oncpu.h>
#include <oncpu/desched.h>

int main(void)
{
	printf("%s\n", oncpu_desched_provider());
	return 0;
}
