/* SPDX-License-Identifier: MIT */
/* The plugin of special.unload: per-CPU adds from inline sections. Built
 * twice: as is (pinned) and with -DONCPU_UNLOADABLE. */
#include <oncpu/counter.h>

void plugin_add(struct oncpu_counter *c, long n);

void plugin_add(struct oncpu_counter *c, long n)
{
	for (long i = 0; i < n; i++)
		oncpu_counter_add(c, 1);
}
