/*
 * oi_elf: reads and validates the rseq debug sections of an ELF image.
 * See oi_elf.h for the contract.  Nothing here trusts the file: every
 * table index, offset, size, string and relocation is checked before use.
 */
#include "oi_elf.h"

#include <elf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef EM_AARCH64
#define EM_AARCH64 183
#endif
#ifndef R_AARCH64_ABS64
#define R_AARCH64_ABS64     257
#define R_AARCH64_GLOB_DAT  1025
#define R_AARCH64_JUMP_SLOT 1026
#define R_AARCH64_RELATIVE  1027
#endif

#define OI_SIG_X86_64  0x53053053u
#define OI_SIG_AARCH64 0xd428bc00u

/* Record sizes of the section layout (struct rseq_cs is 32 bytes). */
#define OI_CS_SIZE   32u
#define OI_PTR_SIZE  8u
#define OI_EXIT_SIZE 16u

_Static_assert(sizeof(Elf64_Ehdr) == 64, "Elf64_Ehdr layout");
_Static_assert(sizeof(Elf64_Shdr) == 64, "Elf64_Shdr layout");
_Static_assert(sizeof(Elf64_Phdr) == 56, "Elf64_Phdr layout");
_Static_assert(sizeof(Elf64_Sym) == 24, "Elf64_Sym layout");
_Static_assert(sizeof(Elf64_Rela) == 24, "Elf64_Rela layout");
_Static_assert(sizeof(Elf64_Rel) == 16, "Elf64_Rel layout");

/* Bounds on hostile tables, far above what real binaries carry. */
#define OI_MAX_SECTIONS (1u << 20)
#define OI_MAX_RECORDS  (1u << 24)

struct oi_sec {
	const char *name;
	uint32_t type;
	uint64_t flags;
	uint64_t addr; /* link-time address; synthetic layout for ET_REL */
	uint64_t offset;
	uint64_t size;
	uint32_t link;
	uint32_t info;
	uint64_t addralign;
	uint64_t entsize;
};

struct oi_fixup {
	uint64_t addr;
	uint64_t value;
	const char *undefined; /* symbol it needs, when not resolvable */
	size_t seq;            /* file order: the last one at an address wins */
};

struct oi_fsym {
	uint64_t addr;
	uint64_t size;
	const char *name;
	const char *file;
	size_t seq; /* symbol table order, to break ties */
};

/*
 * Point lookup over prioritized intervals: which interval, of those added
 * to the builder, is the first one holding an address.  The address space
 * is cut into segments at every interval bound; a segment records its
 * first interval.  Built in O(n log n), queried by binary search.
 */
struct oi_stab {
	size_t nseg;
	uint64_t *from; /* segment j is [from[j], from[j + 1]); the last one ends at 2^64 */
	long *owner;    /* first interval holding segment j, -1 if none */
};

/* One inclusive interval [lo, hi] with its id, in priority order. */
struct oi_span {
	uint64_t lo;
	uint64_t hi;
	long id;
};

/* Access widths that sec_at() serves, each with its own index. */
enum oi_width { OI_W1, OI_W4, OI_W8, OI_WCS, OI_NWIDTHS };
static const uint64_t oi_width_bytes[OI_NWIDTHS] = {1, 4, 8, OI_CS_SIZE};

struct oi_ctx {
	const unsigned char *buf;
	size_t len;
	struct oi_image *img;
	int type;
	int machine;
	size_t nsec;
	struct oi_sec *sec;
	size_t nfix;
	size_t capfix;
	struct oi_fixup *fix;
	size_t nsym;
	struct oi_fsym *sym;
	struct oi_stab sec_by_width[OI_NWIDTHS]; /* section holding [a, a + width) */
	struct oi_stab sec_by_end;               /* section ending at a */
	struct oi_stab sym_by_addr;              /* function symbol holding a */
};

/* Little-endian loads from an unaligned byte buffer. */
static uint16_t le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

__attribute__((format(printf, 2, 3))) static int oi_fail(struct oi_ctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->img->error, sizeof(c->img->error), fmt, ap);
	va_end(ap);
	return -1;
}

/* True when [off, off+size) lies inside the buffer. */
static int in_file(const struct oi_ctx *c, uint64_t off, uint64_t size)
{
	return off <= c->len && size <= c->len - off;
}

static const char *sec_label(const struct oi_sec *s)
{
	return s->name ? s->name : "?";
}

static int parse_sections(struct oi_ctx *c)
{
	const unsigned char *b = c->buf;
	uint64_t shoff = le64(b + 0x28);
	uint16_t shentsize = le16(b + 0x3a);
	uint64_t shnum = le16(b + 0x3c);
	uint64_t shstrndx = le16(b + 0x3e);
	size_t i;

	if (shoff == 0)
		return oi_fail(c, "no section header table (stripped "
		                  "with sstrip?); cannot find the rseq "
		                  "sections");
	if (shentsize != sizeof(Elf64_Shdr))
		return oi_fail(c, "section header size is %u, expected %zu", shentsize,
		               sizeof(Elf64_Shdr));
	if (!in_file(c, shoff, sizeof(Elf64_Shdr)))
		return oi_fail(c,
		               "section header table offset 0x%llx lies "
		               "past the end of the file (%zu bytes)",
		               (unsigned long long)shoff, c->len);
	if (shnum == 0) /* extended numbering: count in section 0 */
		shnum = le64(b + shoff + 0x20);
	if (shstrndx == SHN_XINDEX)
		shstrndx = le32(b + shoff + 0x28);
	if (shnum > OI_MAX_SECTIONS || shnum > c->len / sizeof(Elf64_Shdr) ||
	    !in_file(c, shoff, shnum * sizeof(Elf64_Shdr)))
		return oi_fail(c,
		               "section header table (%llu entries at "
		               "0x%llx) lies past the end of the file "
		               "(%zu bytes): truncated?",
		               (unsigned long long)shnum, (unsigned long long)shoff, c->len);
	c->nsec = (size_t)shnum;
	c->sec = calloc(c->nsec ? c->nsec : 1, sizeof(*c->sec));
	if (!c->sec)
		return oi_fail(c, "out of memory");
	for (i = 0; i < c->nsec; i++) {
		const unsigned char *h = b + shoff + i * sizeof(Elf64_Shdr);
		struct oi_sec *s = &c->sec[i];

		s->name = NULL;
		s->type = le32(h + 4);
		s->flags = le64(h + 8);
		s->addr = le64(h + 16);
		s->offset = le64(h + 24);
		s->size = le64(h + 32);
		s->link = le32(h + 40);
		s->info = le32(h + 44);
		s->addralign = le64(h + 48);
		s->entsize = le64(h + 56);
		if (s->type == SHT_NULL) { /* inactive: no content at all */
			s->size = 0;
			s->flags = 0;
		}
		if (i > 0 && s->type != SHT_NOBITS && s->type != SHT_NULL &&
		    !in_file(c, s->offset, s->size))
			return oi_fail(c,
			               "section [%zu] (offset 0x%llx, size "
			               "0x%llx) lies past the end of the "
			               "file (%zu bytes): truncated?",
			               i, (unsigned long long)s->offset,
			               (unsigned long long)s->size, c->len);
	}
	if (shstrndx == SHN_UNDEF || shstrndx >= c->nsec)
		return oi_fail(c,
		               "no valid section name table (index %llu "
		               "of %zu sections)",
		               (unsigned long long)shstrndx, c->nsec);
	{
		const struct oi_sec *st = &c->sec[shstrndx];
		const char *strs;

		if (st->type != SHT_STRTAB)
			return oi_fail(c,
			               "section name table [%llu] is not "
			               "a string table",
			               (unsigned long long)shstrndx);
		strs = (const char *)b + st->offset; /* checked above */
		for (i = 0; i < c->nsec; i++) {
			uint32_t off = le32(b + shoff + i * sizeof(Elf64_Shdr));

			if (off >= st->size || !memchr(strs + off, 0, st->size - off))
				return oi_fail(c,
				               "section [%zu] has a bad "
				               "name offset 0x%x",
				               i, off);
			c->sec[i].name = strs + off;
		}
	}
	return 0;
}

/* ET_REL: give each allocated section a distinct synthetic address. */
static int layout_relocatable(struct oi_ctx *c)
{
	uint64_t cursor = 0x10000;
	size_t i;

	for (i = 1; i < c->nsec; i++) {
		struct oi_sec *s = &c->sec[i];
		uint64_t align = 16;

		if (!(s->flags & SHF_ALLOC))
			continue;
		/* Honour sh_addralign so that alignment checks still hold. */
		if (s->addralign > align && s->addralign <= 4096)
			align = s->addralign;
		if (align & (align - 1))
			align = 16;
		cursor = (cursor + align - 1) & ~(align - 1);
		if (s->size > (UINT64_C(1) << 60) - cursor)
			return oi_fail(c,
			               "section [%zu] '%s' is too large "
			               "(0x%llx bytes)",
			               i, sec_label(s), (unsigned long long)s->size);
		s->addr = cursor;
		cursor += s->size + 16;
	}
	return 0;
}

static const struct oi_sec *find_named(const struct oi_ctx *c, const char *name)
{
	size_t i;

	for (i = 1; i < c->nsec; i++)
		if (strcmp(c->sec[i].name, name) == 0)
			return &c->sec[i];
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Index of the last element of sorted v[0..n) that is <= x, or -1. */
static long last_le(const uint64_t *v, size_t n, uint64_t x)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid] <= x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (long)lo - 1;
}

/* Next segment at or after j that no interval claimed yet (path halving). */
static size_t stab_unclaimed(size_t *next, size_t j)
{
	while (next[j] != j) {
		next[j] = next[next[j]];
		j = next[j];
	}
	return j;
}

static void stab_free(struct oi_stab *t)
{
	free(t->from);
	free(t->owner);
	memset(t, 0, sizeof(*t));
}

/* Builds t from span[0..n), earlier spans taking precedence; 0 or -1. */
static int stab_build(struct oi_ctx *c, struct oi_stab *t, const struct oi_span *span, size_t n)
{
	size_t i, j, m = 0, *next;

	t->from = malloc((2 * n + 1) * sizeof(*t->from));
	t->owner = malloc((2 * n + 1) * sizeof(*t->owner));
	next = malloc((2 * n + 2) * sizeof(*next));
	if (!t->from || !t->owner || !next) {
		free(next);
		stab_free(t);
		return oi_fail(c, "out of memory");
	}
	for (i = 0; i < n; i++) {
		t->from[m++] = span[i].lo;
		if (span[i].hi != UINT64_MAX)
			t->from[m++] = span[i].hi + 1;
	}
	if (m > 1)
		qsort(t->from, m, sizeof(*t->from), cmp_u64);
	for (i = 0; i < m; i++) /* unique */
		if (t->nseg == 0 || t->from[t->nseg - 1] != t->from[i])
			t->from[t->nseg++] = t->from[i];
	for (j = 0; j <= t->nseg; j++) {
		next[j] = j;
		if (j < t->nseg)
			t->owner[j] = -1;
	}
	for (i = 0; i < n; i++) {
		size_t a = (size_t)last_le(t->from, t->nseg, span[i].lo);
		size_t b = span[i].hi == UINT64_MAX
		               ? t->nseg
		               : (size_t)last_le(t->from, t->nseg, span[i].hi + 1);

		for (j = stab_unclaimed(next, a); j < b; j = stab_unclaimed(next, j)) {
			t->owner[j] = span[i].id;
			next[j] = j + 1;
		}
	}
	free(next);
	return 0;
}

static long stab_find(const struct oi_stab *t, uint64_t addr)
{
	long j = last_le(t->from, t->nseg, addr);

	return j < 0 ? -1 : t->owner[j];
}

/* Allocated sections (index > 0, not SHT_NULL), for the section indexes. */
static int sec_allocated(const struct oi_sec *s)
{
	return (s->flags & SHF_ALLOC) && s->type != SHT_NULL;
}

/*
 * The section indexes: for each access width w, the lowest-numbered
 * allocated section holding all of [a, a + w); and the lowest-numbered
 * non-empty allocated section that ends exactly at a.
 */
static int index_sections(struct oi_ctx *c)
{
	struct oi_span *span = malloc((c->nsec ? c->nsec : 1) * sizeof(*span));
	size_t i, n;
	int w, rc;

	if (!span)
		return oi_fail(c, "out of memory");
	for (w = 0; w < OI_NWIDTHS; w++) {
		uint64_t width = oi_width_bytes[w];

		for (i = 1, n = 0; i < c->nsec; i++) {
			const struct oi_sec *s = &c->sec[i];
			uint64_t last = s->size - width; /* offset of the last fit */

			if (!sec_allocated(s) || s->size < width)
				continue;
			span[n].lo = s->addr;
			span[n].hi = last > UINT64_MAX - s->addr ? UINT64_MAX : s->addr + last;
			span[n++].id = (long)i;
		}
		if (stab_build(c, &c->sec_by_width[w], span, n)) {
			free(span);
			return -1;
		}
	}
	for (i = 1, n = 0; i < c->nsec; i++) {
		const struct oi_sec *s = &c->sec[i];

		if (!(s->flags & SHF_ALLOC) || s->size == 0 || s->size > UINT64_MAX - s->addr)
			continue;
		span[n].lo = span[n].hi = s->addr + s->size;
		span[n++].id = (long)i;
	}
	rc = stab_build(c, &c->sec_by_end, span, n);
	free(span);
	return rc;
}

/* The allocated section holding [addr, addr + width), NULL if none. */
static const struct oi_sec *sec_at(const struct oi_ctx *c, uint64_t addr, enum oi_width w)
{
	long i = stab_find(&c->sec_by_width[w], addr);

	return i < 0 ? NULL : &c->sec[i];
}

static struct oi_loc loc_of(const struct oi_ctx *c, uint64_t addr)
{
	struct oi_loc l = {addr, NULL, 0};
	const struct oi_sec *s = sec_at(c, addr, OI_W1);

	if (!s) { /* a label at the very end of a section */
		long i = stab_find(&c->sec_by_end, addr);

		s = i < 0 ? NULL : &c->sec[i];
	}
	if (s) {
		l.section = s->name;
		l.offset = addr - s->addr;
	}
	return l;
}

/* Raw file bytes at a link-time address; NULL when not in the file. */
static const unsigned char *bytes_at(const struct oi_ctx *c, uint64_t addr, enum oi_width w)
{
	const struct oi_sec *s = sec_at(c, addr, w);

	if (!s || s->type == SHT_NOBITS)
		return NULL;
	return c->buf + s->offset + (addr - s->addr);
}

static int cmp_fixup(const void *a, const void *b)
{
	const struct oi_fixup *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static const struct oi_fixup *fixup_at(const struct oi_ctx *c, uint64_t addr)
{
	size_t lo = 0, hi = c->nfix;

	/* Several relocations at one address: the last one wins. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (c->fix[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && c->fix[lo - 1].addr == addr ? &c->fix[lo - 1] : NULL;
}

/*
 * The 64-bit value at addr as the loader would leave it (relative to a
 * load bias of 0).  Returns 0 on success, -1 with an error set.
 */
static int read_u64(struct oi_ctx *c, uint64_t addr, uint64_t *out, const char *what)
{
	const struct oi_fixup *f = fixup_at(c, addr);
	const unsigned char *p;

	if (f) {
		if (f->undefined)
			return oi_fail(c,
			               "%s at 0x%llx is relocated against "
			               "the undefined symbol '%s'",
			               what, (unsigned long long)addr, f->undefined);
		*out = f->value;
		return 0;
	}
	p = bytes_at(c, addr, OI_W8);
	if (!p)
		return oi_fail(c,
		               "%s at 0x%llx is outside the file's "
		               "sections",
		               what, (unsigned long long)addr);
	*out = le64(p);
	return 0;
}

static int push_fixup(struct oi_ctx *c, uint64_t addr, uint64_t value, const char *undefined)
{
	if (c->nfix == c->capfix) {
		size_t cap = c->capfix ? c->capfix * 2 : 64;
		struct oi_fixup *n = realloc(c->fix, cap * sizeof(*n));

		if (!n)
			return oi_fail(c, "out of memory");
		c->fix = n;
		c->capfix = cap;
	}
	c->fix[c->nfix].addr = addr;
	c->fix[c->nfix].value = value;
	c->fix[c->nfix].undefined = undefined;
	c->fix[c->nfix].seq = c->nfix;
	c->nfix++;
	return 0;
}

static int is_target(const struct oi_sec *s)
{
	return strcmp(s->name, "__rseq_cs") == 0 || strcmp(s->name, "__rseq_cs_ptr_array") == 0 ||
	       strcmp(s->name, "__rseq_exit_point_array") == 0;
}

/* Symbol value S for a relocation; *undef names an unresolvable symbol. */
static int reloc_symbol(struct oi_ctx *c, const struct oi_sec *rs, uint64_t symidx, uint64_t *value,
                        const char **undef)
{
	const struct oi_sec *st, *strs;
	const unsigned char *e;
	uint32_t name;
	uint16_t shndx;

	*value = 0;
	*undef = NULL;
	if (symidx == 0)
		return 0;
	if (rs->link == 0 || rs->link >= c->nsec)
		return oi_fail(c,
		               "relocation section '%s' links to no "
		               "symbol table (link %u)",
		               sec_label(rs), rs->link);
	st = &c->sec[rs->link];
	if ((st->type != SHT_SYMTAB && st->type != SHT_DYNSYM) || st->entsize != sizeof(Elf64_Sym))
		return oi_fail(c,
		               "relocation section '%s' links to '%s', "
		               "which is not a symbol table",
		               sec_label(rs), sec_label(st));
	if (symidx >= st->size / sizeof(Elf64_Sym))
		return oi_fail(c,
		               "relocation in '%s' uses symbol %llu, past "
		               "the end of '%s'",
		               sec_label(rs), (unsigned long long)symidx, sec_label(st));
	e = c->buf + st->offset + symidx * sizeof(Elf64_Sym);
	name = le32(e);
	shndx = le16(e + 6);
	*value = le64(e + 8);
	if (shndx == SHN_UNDEF) {
		*undef = "?";
		if (st->link > 0 && st->link < c->nsec) {
			strs = &c->sec[st->link];
			if (strs->type == SHT_STRTAB && name < strs->size &&
			    memchr(c->buf + strs->offset + name, 0, strs->size - name))
				*undef = (const char *)c->buf + strs->offset + name;
		}
		return 0;
	}
	if (c->type == ET_REL && shndx != SHN_ABS) {
		if (shndx >= c->nsec || shndx >= SHN_LORESERVE)
			return oi_fail(c,
			               "relocation symbol %llu refers to "
			               "section %u, which does not exist",
			               (unsigned long long)symidx, shndx);
		*value += c->sec[shndx].addr;
	}
	return 0;
}

/*
 * Collects the relocations that write into the three data sections:
 * .rela.dyn style (ET_EXEC/ET_DYN, r_offset is an address) and
 * .rela<section> style (ET_REL, r_offset relative to sh_info's section).
 */
static int collect_fixups(struct oi_ctx *c)
{
	size_t i, j;

	for (i = 1; i < c->nsec; i++) {
		const struct oi_sec *rs = &c->sec[i];
		int rela = rs->type == SHT_RELA;
		size_t ent = rela ? sizeof(Elf64_Rela) : sizeof(Elf64_Rel);
		const struct oi_sec *target = NULL;
		size_t n;

		if (rs->type != SHT_RELA && rs->type != SHT_REL)
			continue;
		if (c->type == ET_REL) {
			if (rs->info == 0 || rs->info >= c->nsec)
				return oi_fail(c,
				               "relocation section '%s' "
				               "applies to section %u, "
				               "which does not exist",
				               sec_label(rs), rs->info);
			target = &c->sec[rs->info];
			if (!is_target(target))
				continue;
		}
		if (rs->entsize != ent || rs->size % ent != 0)
			return oi_fail(c,
			               "relocation section '%s' has entry "
			               "size %llu and size %llu (expected "
			               "multiples of %zu)",
			               sec_label(rs), (unsigned long long)rs->entsize,
			               (unsigned long long)rs->size, ent);
		n = (size_t)(rs->size / ent);
		for (j = 0; j < n; j++) {
			const unsigned char *e = c->buf + rs->offset + j * ent;
			uint64_t off = le64(e), info = le64(e + 8);
			uint32_t type = (uint32_t)info;
			uint64_t addr = off, s, a, v;
			const struct oi_sec *ts;
			const char *undef;

			if (target) {
				if (off >= target->size || target->size - off < 8) {
					if (type == R_X86_64_NONE)
						continue;
					return oi_fail(c,
					               "relocation %zu of '%s' "
					               "writes at offset 0x%llx, "
					               "outside '%s'",
					               j, sec_label(rs), (unsigned long long)off,
					               sec_label(target));
				}
				addr = target->addr + off;
			} else {
				ts = sec_at(c, addr, OI_W1);
				if (!ts || !is_target(ts))
					continue;
				if (!sec_at(c, addr, OI_W8))
					return oi_fail(c,
					               "relocation %zu of '%s' at "
					               "0x%llx crosses the end of "
					               "'%s'",
					               j, sec_label(rs), (unsigned long long)addr,
					               sec_label(ts));
			}
			if (rela) {
				a = le64(e + 16);
			} else {
				const unsigned char *p = bytes_at(c, addr, OI_W8);

				a = p ? le64(p) : 0;
			}
			if (reloc_symbol(c, rs, info >> 32, &s, &undef))
				return -1;
			if (c->machine == EM_X86_64) {
				switch (type) {
				case R_X86_64_NONE:
					continue;
				case R_X86_64_RELATIVE:
					v = a; /* load bias 0 */
					undef = NULL;
					break;
				case R_X86_64_64:
					v = s + a;
					break;
				case R_X86_64_GLOB_DAT:
				case R_X86_64_JUMP_SLOT:
					v = s;
					break;
				default:
					return oi_fail(c,
					               "unsupported relocation type "
					               "%u at 0x%llx (in '%s')",
					               type, (unsigned long long)addr,
					               sec_label(rs));
				}
			} else {
				switch (type) {
				case 0:
					continue;
				case R_AARCH64_RELATIVE:
					v = a;
					undef = NULL;
					break;
				case R_AARCH64_ABS64:
					v = s + a;
					break;
				case R_AARCH64_GLOB_DAT:
				case R_AARCH64_JUMP_SLOT:
					v = s + a;
					break;
				default:
					return oi_fail(c,
					               "unsupported relocation type "
					               "%u at 0x%llx (in '%s')",
					               type, (unsigned long long)addr,
					               sec_label(rs));
				}
			}
			if (push_fixup(c, addr, v, undef))
				return -1;
		}
	}
	if (c->nfix > 1)
		qsort(c->fix, c->nfix, sizeof(*c->fix), cmp_fixup);
	return 0;
}

static int cmp_fsym(const void *a, const void *b)
{
	const struct oi_fsym *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	if (x->size != y->size)
		return x->size > y->size ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Indexes the sorted symbols for symbol_for(): later ones take precedence. */
static int index_symbols(struct oi_ctx *c)
{
	struct oi_span *span = malloc((c->nsym ? c->nsym : 1) * sizeof(*span));
	size_t i;
	int rc;

	if (!span)
		return oi_fail(c, "out of memory");
	for (i = 0; i < c->nsym; i++) {
		const struct oi_fsym *s = &c->sym[c->nsym - 1 - i];
		uint64_t last = s->size ? s->size - 1 : 0;

		span[i].lo = s->addr;
		span[i].hi = last > UINT64_MAX - s->addr ? UINT64_MAX : s->addr + last;
		span[i].id = (long)(c->nsym - 1 - i);
	}
	rc = stab_build(c, &c->sym_by_addr, span, c->nsym);
	free(span);
	return rc;
}

/* Function symbols from .symtab, else .dynsym, for naming locations. */
static int collect_symbols(struct oi_ctx *c)
{
	const struct oi_sec *st = NULL, *strs;
	const char *file = NULL;
	size_t i, n, nfiles = 0;
	const char *only_file = NULL;

	for (i = 1; i < c->nsec && !st; i++)
		if (c->sec[i].type == SHT_SYMTAB)
			st = &c->sec[i];
	for (i = 1; i < c->nsec && !st; i++)
		if (c->sec[i].type == SHT_DYNSYM)
			st = &c->sec[i];
	if (!st)
		return 0;
	if (st->entsize != sizeof(Elf64_Sym) || st->link == 0 || st->link >= c->nsec ||
	    c->sec[st->link].type != SHT_STRTAB)
		return oi_fail(c,
		               "symbol table '%s' is malformed (entry size "
		               "%llu, string table %u)",
		               sec_label(st), (unsigned long long)st->entsize, st->link);
	strs = &c->sec[st->link];
	n = (size_t)(st->size / sizeof(Elf64_Sym));
	if (n > OI_MAX_RECORDS)
		return oi_fail(c, "symbol table '%s' is too large", sec_label(st));
	c->sym = calloc(n ? n : 1, sizeof(*c->sym));
	if (!c->sym)
		return oi_fail(c, "out of memory");
	for (i = 1; i < n; i++) {
		const unsigned char *e = c->buf + st->offset + i * 24;
		uint32_t name = le32(e);
		unsigned char stinfo = e[4];
		uint16_t shndx = le16(e + 6);
		uint64_t value = le64(e + 8), size = le64(e + 16);
		const char *nm;

		if (name >= strs->size ||
		    !memchr(c->buf + strs->offset + name, 0, strs->size - name))
			continue; /* a bad name only loses the name */
		nm = (const char *)c->buf + strs->offset + name;
		if (ELF64_ST_TYPE(stinfo) == STT_FILE) {
			file = nm;
			nfiles++;
			only_file = nm;
			continue;
		}
		if (ELF64_ST_TYPE(stinfo) != STT_FUNC && ELF64_ST_TYPE(stinfo) != STT_GNU_IFUNC)
			continue;
		if (shndx == SHN_UNDEF || shndx >= SHN_LORESERVE || shndx >= c->nsec || !*nm)
			continue;
		if (c->type == ET_REL)
			value += c->sec[shndx].addr;
		c->sym[c->nsym].addr = value;
		c->sym[c->nsym].size = size;
		c->sym[c->nsym].name = nm;
		c->sym[c->nsym].file = ELF64_ST_BIND(stinfo) == STB_LOCAL ? file : NULL;
		c->sym[c->nsym].seq = i;
		c->nsym++;
	}
	/* An object file has one source: globals come from it too. */
	if (c->type == ET_REL && nfiles == 1)
		for (i = 0; i < c->nsym; i++)
			c->sym[i].file = only_file;
	if (c->nsym > 1)
		qsort(c->sym, c->nsym, sizeof(*c->sym), cmp_fsym);
	return index_symbols(c);
}

/*
 * The function symbol naming addr: of those whose [addr, addr + size)
 * holds it (or that sit exactly at it with size 0), the last in sorted
 * order, so the smallest of several starting at one address.
 */
static const struct oi_fsym *symbol_for(const struct oi_ctx *c, uint64_t addr)
{
	long i = stab_find(&c->sym_by_addr, addr);

	return i < 0 ? NULL : &c->sym[i];
}

static int is_exec(const struct oi_ctx *c, uint64_t addr)
{
	const struct oi_sec *s = sec_at(c, addr, OI_W1);

	return s && (s->flags & SHF_EXECINSTR);
}

static int add_cs(struct oi_ctx *c, uint64_t desc, size_t cap)
{
	struct oi_image *img = c->img;
	struct oi_cs *cs;
	const unsigned char *raw = bytes_at(c, desc, OI_WCS);
	uint64_t start, pco, abort_ip;
	const struct oi_fsym *fs;
	const unsigned char *sig;

	if (!raw)
		return oi_fail(c,
		               "descriptor pointer 0x%llx does not point "
		               "into the file's sections (32 bytes needed)",
		               (unsigned long long)desc);
	if (img->n_cs >= cap)
		return oi_fail(c, "too many descriptors");
	if (read_u64(c, desc + 8, &start, "descriptor start_ip") ||
	    read_u64(c, desc + 16, &pco, "descriptor post_commit_offset") ||
	    read_u64(c, desc + 24, &abort_ip, "descriptor abort_ip"))
		return -1;
	cs = &img->cs[img->n_cs++];
	memset(cs, 0, sizeof(*cs));
	cs->desc = loc_of(c, desc);
	cs->version = le32(raw);
	cs->flags = le32(raw + 4);
	cs->start = loc_of(c, start);
	cs->post_commit_offset = pco;
	cs->post_commit = loc_of(c, start + pco);
	cs->abort = loc_of(c, abort_ip);
	if (cs->version != 0)
		cs->bad |= OI_BAD_VERSION;
	if (cs->flags != 0)
		cs->bad |= OI_BAD_FLAGS;
	if (start + pco < start)
		cs->bad |= OI_BAD_RANGE;
	if (abort_ip - start < pco)
		cs->bad |= OI_BAD_ABORT_IN_CS;
	sig = abort_ip >= 4 ? bytes_at(c, abort_ip - 4, OI_W4) : NULL;
	if (!sig) {
		cs->bad |= OI_BAD_NO_SIGNATURE;
	} else {
		cs->signature = le32(sig);
		if (cs->signature != img->expected_signature)
			cs->bad |= OI_BAD_SIGNATURE;
	}
	if (desc % 32 != 0)
		cs->warn |= OI_WARN_ALIGN;
	if (pco == 0)
		cs->warn |= OI_WARN_EMPTY;
	if (!is_exec(c, start))
		cs->warn |= OI_WARN_START_NOT_EXEC;
	if (!is_exec(c, abort_ip))
		cs->warn |= OI_WARN_ABORT_NOT_EXEC;
	fs = symbol_for(c, start);
	if (fs) {
		cs->function = fs->name;
		cs->function_addr = fs->addr;
		cs->function_size = fs->size;
		cs->source = fs->file;
	}
	return 0;
}

struct oi_cs_start {
	uint64_t addr;
	size_t index;
};

static int cmp_cs_start(const void *a, const void *b)
{
	const struct oi_cs_start *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Lowest descriptor index whose start_ip is addr, in sorted v[0..n); or -1. */
static long first_cs_at(const struct oi_cs_start *v, size_t n, uint64_t addr)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo].addr == addr ? (long)v[lo].index : -1;
}

/* Fills img->cs_exits and each descriptor's slice of it (a counting sort). */
static int group_exits(struct oi_ctx *c)
{
	struct oi_image *img = c->img;
	size_t i, pos = 0;

	img->cs_exits = malloc((img->n_exits ? img->n_exits : 1) * sizeof(*img->cs_exits));
	if (!img->cs_exits)
		return oi_fail(c, "out of memory");
	for (i = 0; i < img->n_exits; i++)
		if (img->exits[i].cs_index >= 0)
			img->cs[img->exits[i].cs_index].n_exits++;
	for (i = 0; i < img->n_cs; i++) {
		img->cs[i].exits_begin = pos;
		pos += img->cs[i].n_exits;
		img->cs[i].n_exits = 0;
	}
	for (i = 0; i < img->n_exits; i++) {
		struct oi_cs *d;

		if (img->exits[i].cs_index < 0)
			continue;
		d = &img->cs[img->exits[i].cs_index];
		img->cs_exits[d->exits_begin + d->n_exits++] = i;
	}
	return 0;
}

static int collect_descriptors(struct oi_ctx *c)
{
	struct oi_image *img = c->img;
	struct oi_cs_start *by_start;
	const struct oi_sec *cs = find_named(c, "__rseq_cs");
	const struct oi_sec *pa = find_named(c, "__rseq_cs_ptr_array");
	const struct oi_sec *ea = find_named(c, "__rseq_exit_point_array");
	size_t i, n;

	img->has_cs_section = cs != NULL;
	img->has_ptr_array = pa != NULL;
	if (pa && pa->type != SHT_NOBITS && pa->size > 0) {
		if (pa->size % OI_PTR_SIZE != 0)
			return oi_fail(c,
			               "__rseq_cs_ptr_array size %llu is "
			               "not a multiple of 8",
			               (unsigned long long)pa->size);
		n = (size_t)(pa->size / OI_PTR_SIZE);
		if (n > OI_MAX_RECORDS)
			return oi_fail(c, "__rseq_cs_ptr_array is too large");
		img->cs = calloc(n, sizeof(*img->cs));
		if (!img->cs)
			return oi_fail(c, "out of memory");
		img->from_ptr_array = 1;
		for (i = 0; i < n; i++) {
			uint64_t p;

			if (read_u64(c, pa->addr + i * OI_PTR_SIZE, &p,
			             "__rseq_cs_ptr_array entry"))
				return -1;
			if (p == 0)
				return oi_fail(c,
				               "__rseq_cs_ptr_array entry "
				               "%zu is 0 (missing "
				               "relocation?)",
				               i);
			if (add_cs(c, p, n))
				return -1;
		}
	} else if (cs && cs->type != SHT_NOBITS && cs->size >= OI_CS_SIZE) {
		/* No pointer array: every 32-byte record is a descriptor. */
		n = (size_t)(cs->size / OI_CS_SIZE);
		if (n > OI_MAX_RECORDS)
			return oi_fail(c, "__rseq_cs is too large");
		img->cs = calloc(n, sizeof(*img->cs));
		if (!img->cs)
			return oi_fail(c, "out of memory");
		for (i = 0; i < n; i++) {
			uint64_t a = cs->addr + i * OI_CS_SIZE, s, p, ab;

			if (read_u64(c, a + 8, &s, "descriptor start_ip") ||
			    read_u64(c, a + 16, &p,
			             "descriptor "
			             "post_commit_offset") ||
			    read_u64(c, a + 24, &ab, "descriptor abort_ip"))
				return -1;
			if (s == 0 && p == 0 && ab == 0 && bytes_at(c, a, OI_W8) &&
			    le64(bytes_at(c, a, OI_W8)) == 0)
				continue; /* padding */
			if (add_cs(c, a, n))
				return -1;
		}
	}
	if (ea && ea->type != SHT_NOBITS && ea->size > 0) {
		if (ea->size % OI_EXIT_SIZE != 0)
			return oi_fail(c,
			               "__rseq_exit_point_array size %llu "
			               "is not a multiple of 16",
			               (unsigned long long)ea->size);
		n = (size_t)(ea->size / OI_EXIT_SIZE);
		if (n > OI_MAX_RECORDS)
			return oi_fail(c, "__rseq_exit_point_array is too "
			                  "large");
		img->exits = calloc(n, sizeof(*img->exits));
		if (!img->exits)
			return oi_fail(c, "out of memory");
		by_start = malloc((img->n_cs ? img->n_cs : 1) * sizeof(*by_start));
		if (!by_start)
			return oi_fail(c, "out of memory");
		for (i = 0; i < img->n_cs; i++) {
			by_start[i].addr = img->cs[i].start.addr;
			by_start[i].index = i;
		}
		if (img->n_cs > 1)
			qsort(by_start, img->n_cs, sizeof(*by_start), cmp_cs_start);
		for (i = 0; i < n; i++) {
			struct oi_exit *x = &img->exits[img->n_exits];
			uint64_t a = ea->addr + i * OI_EXIT_SIZE, s, e;
			long k;

			if (read_u64(c, a, &s, "exit point start_ip") ||
			    read_u64(c, a + 8, &e, "exit point exit_ip")) {
				free(by_start);
				return -1;
			}
			x->start = loc_of(c, s);
			x->exit = loc_of(c, e);
			k = first_cs_at(by_start, img->n_cs, s);
			x->cs_index = k;
			if (k >= 0 && e - s < img->cs[k].post_commit_offset)
				img->cs[k].warn |= OI_WARN_EXIT_INSIDE;
			if (k < 0)
				img->n_orphan_exits++;
			img->n_exits++;
		}
		free(by_start);
	}
	return group_exits(c);
}

static int check_header(struct oi_ctx *c)
{
	const unsigned char *b = c->buf;

	if (c->len < 4 || memcmp(b, ELFMAG, SELFMAG) != 0)
		return oi_fail(c, "not an ELF file");
	if (c->len < sizeof(Elf64_Ehdr))
		return oi_fail(c, "truncated ELF header (%zu bytes)", c->len);
	if (b[EI_CLASS] != ELFCLASS64)
		return oi_fail(c,
		               "unsupported ELF class %u (only 64-bit "
		               "ELF is supported)",
		               b[EI_CLASS]);
	if (b[EI_DATA] != ELFDATA2LSB)
		return oi_fail(c,
		               "unsupported data encoding %u (only "
		               "little-endian is supported)",
		               b[EI_DATA]);
	c->type = le16(b + 16);
	c->machine = le16(b + 18);
	if (c->type != ET_EXEC && c->type != ET_DYN && c->type != ET_REL)
		return oi_fail(c,
		               "unsupported ELF type %d (expected an "
		               "executable, shared object or object file)",
		               c->type);
	if (c->machine == EM_X86_64)
		c->img->expected_signature = OI_SIG_X86_64;
	else if (c->machine == EM_AARCH64)
		c->img->expected_signature = OI_SIG_AARCH64;
	else
		return oi_fail(c,
		               "unsupported machine %d (x86-64 and "
		               "aarch64 are supported)",
		               c->machine);
	c->img->type = c->type;
	c->img->machine = c->machine;
	return 0;
}

long oi_loads(const unsigned char *buf, size_t len, struct oi_load *out, size_t max)
{
	uint64_t phoff;
	uint16_t phentsize, phnum;
	size_t i, n = 0;

	if (len < sizeof(Elf64_Ehdr) || memcmp(buf, ELFMAG, SELFMAG) != 0 ||
	    buf[EI_CLASS] != ELFCLASS64 || buf[EI_DATA] != ELFDATA2LSB)
		return -1;
	phoff = le64(buf + 0x20);
	phentsize = le16(buf + 0x36);
	phnum = le16(buf + 0x38);
	if (phnum == 0)
		return 0;
	if (phentsize != sizeof(Elf64_Phdr) || phoff > len ||
	    (uint64_t)phnum * sizeof(Elf64_Phdr) > len - phoff)
		return -1;
	for (i = 0; i < phnum; i++) {
		const unsigned char *p = buf + phoff + i * sizeof(Elf64_Phdr);

		if (le32(p) != PT_LOAD)
			continue;
		if (n < max) {
			out[n].offset = le64(p + 8);
			out[n].vaddr = le64(p + 16);
			out[n].filesz = le64(p + 32);
			out[n].memsz = le64(p + 40);
		}
		n++;
	}
	return (long)n;
}

int oi_image_parse(const unsigned char *buf, size_t len, struct oi_image *img)
{
	struct oi_ctx c;
	int rc, i;

	memset(img, 0, sizeof(*img));
	memset(&c, 0, sizeof(c));
	c.buf = buf;
	c.len = len;
	c.img = img;
	rc = check_header(&c);
	if (!rc)
		rc = parse_sections(&c);
	if (!rc && c.type == ET_REL)
		rc = layout_relocatable(&c);
	if (!rc)
		rc = index_sections(&c);
	if (!rc)
		rc = collect_fixups(&c);
	if (!rc)
		rc = collect_symbols(&c);
	if (!rc)
		rc = collect_descriptors(&c);
	free(c.sec);
	free(c.fix);
	free(c.sym);
	for (i = 0; i < OI_NWIDTHS; i++)
		stab_free(&c.sec_by_width[i]);
	stab_free(&c.sec_by_end);
	stab_free(&c.sym_by_addr);
	return rc;
}

void oi_image_free(struct oi_image *img)
{
	free(img->cs);
	free(img->exits);
	free(img->cs_exits);
	img->cs = NULL;
	img->exits = NULL;
	img->cs_exits = NULL;
	img->n_cs = 0;
	img->n_exits = 0;
}

const char *oi_bad_string(unsigned bit)
{
	switch (bit) {
	case OI_BAD_VERSION:
		return "version is not 0";
	case OI_BAD_FLAGS:
		return "flags are not 0";
	case OI_BAD_ABORT_IN_CS:
		return "abort_ip lies inside [start_ip, post-commit)";
	case OI_BAD_SIGNATURE:
		return "the 4 bytes before abort_ip are not the signature";
	case OI_BAD_NO_SIGNATURE:
		return "the 4 bytes before abort_ip are not in the file";
	case OI_BAD_RANGE:
		return "start_ip + post_commit_offset overflows";
	default:
		return "?";
	}
}

const char *oi_warn_string(unsigned bit)
{
	switch (bit) {
	case OI_WARN_ALIGN:
		return "descriptor is not 32-byte aligned";
	case OI_WARN_START_NOT_EXEC:
		return "start_ip is not in an executable section";
	case OI_WARN_ABORT_NOT_EXEC:
		return "abort_ip is not in an executable section";
	case OI_WARN_EMPTY:
		return "post_commit_offset is 0 (empty section)";
	case OI_WARN_EXIT_INSIDE:
		return "an exit point lies inside the section";
	default:
		return "?";
	}
}
