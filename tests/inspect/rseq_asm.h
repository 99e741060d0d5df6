/*
 * Hand-written x86-64 rseq critical sections in the layout that the Linux
 * kernel selftests and librseq emit (__rseq_cs, __rseq_cs_ptr_array,
 * __rseq_exit_point_array, abort stubs in __rseq_failure preceded by the
 * signature).  These are test producers independent of liboncpu: they prove
 * that oncpu-inspect and the GDB extension read any producer of the layout.
 */
#ifndef ONCPU_TESTS_INSPECT_RSEQ_ASM_H
#define ONCPU_TESTS_INSPECT_RSEQ_ASM_H

#include <stddef.h>
#include <stdint.h>

#if !defined(__x86_64__)
#error "tests/inspect/rseq_asm.h supports x86-64 only"
#endif

#define TP_RSEQ_SIG 0x53053053

/* One out-of-line copy per function, so global labels stay unique. */
#if defined(__clang__)
#define TP_NOINLINE __attribute__((noinline))
#else
#define TP_NOINLINE __attribute__((noinline, noipa))
#endif

/* struct rseq field offsets (include/uapi/linux/rseq.h). */
#define TP_RSEQ_CPU_ID_OFF 4
#define TP_RSEQ_CS_OFF 8

/* Descriptor, pointer-array entry and the store into rseq->rseq_cs. */
#define TP_DEFINE_CS(label, start, post, abort)                               \
	".pushsection __rseq_cs, \"aw\"\n\t"                                 \
	".balign 32\n\t" #label ":\n\t"                                      \
	".long 0x0, 0x0\n\t"                                                 \
	".quad " #start "f, (" #post "f - " #start "f), " #abort "f\n\t"     \
	".popsection\n\t"                                                    \
	".pushsection __rseq_cs_ptr_array, \"aw\"\n\t"                       \
	".quad " #label "b\n\t"                                              \
	".popsection\n\t"

#define TP_EXIT_POINT(start, exit)                                           \
	".pushsection __rseq_exit_point_array, \"aw\"\n\t"                   \
	".quad " #start "f, " #exit "\n\t"                                   \
	".popsection\n\t"

/* ud1 whose last four bytes are the signature, then the abort label. */
#define TP_ABORT_STUB(label, target)                                         \
	".pushsection __rseq_failure, \"ax\"\n\t"                            \
	".byte 0x0f, 0xb9, 0x3d\n\t"                                         \
	".long 0x53053053\n\t" #label ":\n\t"                                \
	"jmp " #target "\n\t"                                                \
	".popsection\n\t"

#endif
