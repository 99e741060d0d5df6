/* SPDX-License-Identifier: MIT */
/*
 * stack.c - per-CPU lists: the operations' bodies for the slot layer
 * (slot.h), pop_cpu, drain.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "slot.h"

static const struct slot_kind stack_kind =
    SLOT_KIND(struct oncpu_stack, struct _oncpu_stack_slot, sizeof(struct _oncpu_stack_slot), -1);

struct oncpu_stack *oncpu_stack_new_flags(unsigned flags)
{
	if (flags & ~ONCPU_F_VCPU) {
		errno = EINVAL;
		return NULL;
	}
	struct oncpu_stack *s =
	    _oncpu_slot_new(&stack_kind, sizeof(struct _oncpu_stack_slot), flags);
	if (s)
		s->_user_flags = flags;
	return s;
}

struct oncpu_stack *oncpu_stack_new(void)
{
	return oncpu_stack_new_flags(0);
}

void oncpu_stack_destroy(struct oncpu_stack *s)
{
	if (s)
		_oncpu_slot_delete(&stack_kind, s);
}

/* ---- push ---- */

struct push {
	struct slot_op op; /* first */
	int mode;
	struct oncpu_stack_node *n;
};

static int push_section(struct slot_op *op, void *slot, int id)
{
	struct push *o = (struct push *)op;
	return _oncpu_stack_push_step(o->mode, slot, o->n, id);
}

static void push_locked(struct slot_op *op, void *slot)
{
	struct push *o = (struct push *)op;
	struct _oncpu_stack_slot *sl = slot;
	o->n->next = (struct oncpu_stack_node *)DS_LOAD(&sl->head);
	DS_STORE(&sl->head, (intptr_t)o->n);
}

void _oncpu_stack_push_slow(struct oncpu_stack *s, struct oncpu_stack_node *n)
{
	if (!s || !n)
		ONCPU_FATAL("oncpu_stack_push(%p, %p): NULL argument", (void *)s, (void *)n);
	struct slot_set set = _oncpu_slot_set(&stack_kind, s);
	struct push o = {{push_section, push_locked}, s->_mode, n};
	_oncpu_slot_run(&set, &o.op);
}

/* ---- pop ---- */

struct pop {
	struct slot_op op; /* first */
	int mode;
	intptr_t node; /* the result: struct oncpu_stack_node *, 0 for empty */
};

static int pop_section(struct slot_op *op, void *slot, int id)
{
	struct pop *o = (struct pop *)op;
	return _oncpu_stack_pop_step(o->mode, slot, &o->node, id);
}

static void pop_locked(struct slot_op *op, void *slot)
{
	struct pop *o = (struct pop *)op;
	struct _oncpu_stack_slot *sl = slot;
	o->node = DS_LOAD(&sl->head);
	if (o->node)
		DS_STORE(&sl->head, (intptr_t)((struct oncpu_stack_node *)o->node)->next);
}

struct oncpu_stack_node *_oncpu_stack_pop_slow(struct oncpu_stack *s)
{
	if (!s) {
		errno = EINVAL;
		return NULL;
	}
	struct slot_set set = _oncpu_slot_set(&stack_kind, s);
	struct pop o = {{pop_section, pop_locked}, s->_mode, 0};
	_oncpu_slot_run(&set, &o.op);
	return (struct oncpu_stack_node *)o.node;
}

struct oncpu_stack_node *oncpu_stack_pop_cpu(struct oncpu_stack *s, int cpu)
{
	if (!s || cpu < 0 || cpu >= _oncpu_ds_slots()) {
		errno = EINVAL;
		return NULL;
	}
	struct _oncpu_stack_slot *slot = oncpu_ptr(s->_pcpu, cpu);
	if (DS_LOAD(&slot->head) == 0)
		return NULL; /* empty when read: a valid answer, and commits no memory */
	struct slot_set set = _oncpu_slot_set(&stack_kind, s);
	struct pop o = {{pop_section, pop_locked}, s->_mode, 0};
	_oncpu_slot_run_on(&set, &o.op, cpu);
	return (struct oncpu_stack_node *)o.node;
}

/* ---- drain ---- */

static bool nonempty(void *slot)
{
	return DS_LOAD(&((struct _oncpu_stack_slot *)slot)->head) != 0;
}

/* Move a locked slot's list in front of the list *arg. */
static void take_list(void *slot, void *arg)
{
	struct _oncpu_stack_slot *sl = slot;
	struct oncpu_stack_node **out = arg;
	struct oncpu_stack_node *l = (struct oncpu_stack_node *)DS_LOAD(&sl->head);
	if (!l)
		return;
	struct oncpu_stack_node *tail = l;
	while (tail->next)
		tail = tail->next;
	tail->next = *out;
	*out = l;
	DS_STORE(&sl->head, 0);
}

struct oncpu_stack_node *oncpu_stack_drain(struct oncpu_stack *s)
{
	if (!s) {
		errno = EINVAL;
		return NULL;
	}
	struct slot_set set = _oncpu_slot_set(&stack_kind, s);
	struct oncpu_stack_node *out = NULL;
	_oncpu_slot_each_locked(&set, nonempty, take_list, &out);
	return out;
}
