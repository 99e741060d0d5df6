#ifndef ONCPU_TESTS_INSPECT_TP_DSO_H
#define ONCPU_TESTS_INSPECT_TP_DSO_H

#include <stddef.h>
#include <stdint.h>

int tp_dso_inc_below(intptr_t *v, intptr_t limit, int cpu);
int tp_dso_addv_sym(intptr_t *v, intptr_t count, int cpu);
size_t tp_dso_ptr_array(const uint64_t **first);
size_t tp_dso_exit_array(const uint64_t **first);

#endif
