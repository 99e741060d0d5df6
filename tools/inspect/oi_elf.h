/*
 * oi_elf: the ELF reader behind oncpu-inspect and its fuzz target.
 *
 * Reads the rseq debug sections (__rseq_cs, __rseq_cs_ptr_array,
 * __rseq_exit_point_array, __rseq_failure) from an ELF64 little-endian
 * image held in memory, applies the relocations that fill the arrays in
 * position-independent code and object files, and validates every
 * descriptor the way the kernel does.  No I/O and no output: the caller
 * owns the buffer, which must outlive the result (names point into it).
 * Every offset and size read from the file is bounds-checked; a malformed
 * image yields -1 and a message, never a crash.
 */
#ifndef ONCPU_TOOLS_INSPECT_OI_ELF_H
#define ONCPU_TOOLS_INSPECT_OI_ELF_H

#include <stddef.h>
#include <stdint.h>

/* Kernel validation failures (the kernel would SIGSEGV the thread). */
enum {
	OI_BAD_VERSION = 1u << 0,      /* version != 0 */
	OI_BAD_FLAGS = 1u << 1,        /* flags != 0 */
	OI_BAD_ABORT_IN_CS = 1u << 2,  /* abort_ip in [start, post-commit) */
	OI_BAD_SIGNATURE = 1u << 3,    /* 4 bytes before abort_ip != signature */
	OI_BAD_NO_SIGNATURE = 1u << 4, /* those 4 bytes are not in the file */
	OI_BAD_RANGE = 1u << 5,        /* start + post_commit_offset overflows */
};

/* Suspicious but accepted by the kernel. */
enum {
	OI_WARN_ALIGN = 1u << 0,          /* descriptor not 32-byte aligned */
	OI_WARN_START_NOT_EXEC = 1u << 1, /* start_ip not in code */
	OI_WARN_ABORT_NOT_EXEC = 1u << 2, /* abort_ip not in code */
	OI_WARN_EMPTY = 1u << 3,          /* post_commit_offset == 0 */
	OI_WARN_EXIT_INSIDE = 1u << 4,    /* an exit point lies inside */
};

/* A code location: address, and the section it falls in (if any). */
struct oi_loc {
	uint64_t addr;
	const char *section; /* NULL when outside every section */
	uint64_t offset;     /* addr - section start */
};

struct oi_exit {
	struct oi_loc start; /* start_ip of the section it leaves */
	struct oi_loc exit;
	long cs_index; /* matching critical section, -1 if none */
};

struct oi_cs {
	struct oi_loc desc; /* the descriptor itself */
	uint32_t version;
	uint32_t flags;
	struct oi_loc start;
	uint64_t post_commit_offset;
	struct oi_loc post_commit;
	struct oi_loc abort;
	uint32_t signature;   /* the 4 bytes before abort_ip, when readable */
	const char *function; /* enclosing function of start_ip, or NULL */
	uint64_t function_addr;
	uint64_t function_size; /* st_size of that function's symbol */
	const char *source;     /* STT_FILE of that function, or NULL */
	unsigned bad;           /* OI_BAD_* */
	unsigned warn;          /* OI_WARN_* */
	size_t exits_begin;     /* its exit points: img->cs_exits[exits_begin..] */
	size_t n_exits;
};

struct oi_image {
	int type;    /* ET_EXEC, ET_DYN, ET_REL */
	int machine; /* EM_X86_64, EM_AARCH64 */
	uint32_t expected_signature;
	int has_cs_section; /* __rseq_cs present */
	int has_ptr_array;  /* __rseq_cs_ptr_array present */
	int from_ptr_array; /* descriptors found through the pointer array */
	size_t n_cs;
	struct oi_cs *cs;
	size_t n_exits;
	struct oi_exit *exits;
	size_t *cs_exits;          /* indexes into exits, grouped by descriptor, in table order */
	size_t n_orphan_exits;     /* exit points matching no descriptor */
	uint64_t first_load_vaddr; /* lowest PT_LOAD p_vaddr (page aligned) */
	char error[256];
};

/*
 * Parses buf[0..len) into img.  Returns 0 on success (img may hold zero
 * sections), -1 on malformed or unsupported input with img->error set.
 * Call oi_image_free() in both cases.
 */
int oi_image_parse(const unsigned char *buf, size_t len, struct oi_image *img);
void oi_image_free(struct oi_image *img);

/* Short description of one OI_BAD_ / OI_WARN_ bit. */
const char *oi_bad_string(unsigned bit);
const char *oi_warn_string(unsigned bit);

/* Program headers, for mapping runtime addresses (--pid). */
struct oi_load {
	uint64_t vaddr;
	uint64_t offset;
	uint64_t filesz;
	uint64_t memsz;
};

/*
 * Fills at most max PT_LOAD entries of buf, returns how many there are
 * (possibly more than max), or -1 on malformed input.
 */
long oi_loads(const unsigned char *buf, size_t len, struct oi_load *out, size_t max);

#endif
