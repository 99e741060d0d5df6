#ifndef ONCPU_TESTS_INSPECT_TP_SECTIONS_H
#define ONCPU_TESTS_INSPECT_TP_SECTIONS_H

#include <stdint.h>

#include "rseq_asm.h"

int tp_registered(void);
int tp_cpu(void);
uint64_t tp_area_cs(void);
int tp_addv(intptr_t *v, intptr_t count, int cpu);
int tp_cmpeqv_storev(intptr_t *v, intptr_t expect, intptr_t newv, int cpu);

#endif
