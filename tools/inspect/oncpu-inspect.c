/*
 * oncpu-inspect: lists and validates the rseq critical sections recorded
 * in ELF files (__rseq_cs, __rseq_cs_ptr_array, __rseq_exit_point_array),
 * or in every object mapped by a live process (--pid).
 *
 * Exit status: 0 every descriptor is valid (or there are none), 1 at least
 * one descriptor would be rejected by the kernel, 2 usage error or a file
 * that could not be read or parsed (takes precedence over 1).
 */
#define _GNU_SOURCE
#include "oi_elf.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OI_VERSION       "0.1"
#define OI_MAX_FILE_SIZE ((size_t)1 << 32)

struct opts {
	int json;
	long pid;
};

struct totals {
	size_t objects;
	size_t cs;
	size_t violations;
	size_t warnings;
	size_t errors;
	int json_first;
};

/* Reads a whole file; returns 0, or -1 with a message in err. */
static int slurp(const char *path, unsigned char **out, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	unsigned char *buf;
	size_t size, got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "not a regular file");
		close(fd);
		return -1;
	}
	if ((uint64_t)st.st_size > OI_MAX_FILE_SIZE) {
		snprintf(err, errlen, "file too large");
		close(fd);
		return -1;
	}
	size = (size_t)st.st_size;
	buf = malloc(size ? size : 1);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		close(fd);
		return -1;
	}
	while (got < size) {
		ssize_t r = read(fd, buf + got, size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, errlen, "read error: %s",
			         r < 0 ? strerror(errno) : "short read");
			free(buf);
			close(fd);
			return -1;
		}
		got += (size_t)r;
	}
	close(fd);
	*out = buf;
	*len = size;
	return 0;
}

/* Prints a string from the file with non-printable bytes replaced. */
static void put_text(FILE *f, const char *s)
{
	for (; *s; s++)
		fputc(*s >= 0x20 && *s < 0x7f ? *s : '?', f);
}

static void put_json_string_raw(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
}

static void put_json_string(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	put_json_string_raw(f, s);
	fputc('"', f);
}

static const char *type_name(int type)
{
	switch (type) {
	case ET_EXEC:
		return "EXEC";
	case ET_DYN:
		return "DYN";
	case ET_REL:
		return "REL";
	default:
		return "?";
	}
}

static const char *machine_name(int m)
{
	return m == EM_X86_64 ? "x86_64" : m == EM_AARCH64 ? "aarch64" : "?";
}

/* "0x1234" for linked files, ".text+0x12" for object files. */
static const char *fmt_loc(const struct oi_image *img, const struct oi_loc *l, uint64_t bias,
                           char *buf, size_t len)
{
	if (img->type == ET_REL && l->section)
		snprintf(buf, len, "%s+0x%" PRIx64, l->section, l->offset);
	else
		snprintf(buf, len, "0x%" PRIx64, l->addr + bias);
	return buf;
}

static void print_bits_text(unsigned bits, int bad)
{
	unsigned b;

	for (b = 1; b && b <= bits; b <<= 1)
		if (bits & b)
			printf("      %s: %s\n", bad ? "VIOLATION" : "warning",
			       bad ? oi_bad_string(b) : oi_warn_string(b));
}

static int popcount(unsigned v)
{
	int n = 0;

	for (; v; v &= v - 1)
		n++;
	return n;
}

static void print_text(const char *file, const struct oi_image *img, uint64_t bias, int have_bias)
{
	char a[96], b2[96];
	size_t i, k;

	printf("%s: ", file);
	if (img->n_cs == 0 && img->n_exits == 0) {
		printf("no rseq critical sections found\n");
		return;
	}
	printf("ELF64 %s %s, %zu critical section%s, %zu exit point%s", machine_name(img->machine),
	       type_name(img->type), img->n_cs, img->n_cs == 1 ? "" : "s", img->n_exits,
	       img->n_exits == 1 ? "" : "s");
	if (have_bias)
		printf(", load bias 0x%" PRIx64, bias);
	printf("\n");
	for (i = 0; i < img->n_cs; i++) {
		const struct oi_cs *cs = &img->cs[i];

		printf("  #%zu", i);
		if (cs->function) {
			printf(" in ");
			put_text(stdout, cs->function);
			printf("+0x%" PRIx64, cs->start.addr - cs->function_addr);
		}
		if (cs->source) {
			printf(" (");
			put_text(stdout, cs->source);
			printf(")");
		}
		printf("\n");
		printf("      descriptor  %s\n", fmt_loc(img, &cs->desc, bias, a, sizeof(a)));
		printf("      start       %s\n", fmt_loc(img, &cs->start, bias, a, sizeof(a)));
		printf("      post-commit %s (+%" PRIu64 ")\n",
		       fmt_loc(img, &cs->post_commit, bias, a, sizeof(a)), cs->post_commit_offset);
		printf("      abort       %s", fmt_loc(img, &cs->abort, bias, a, sizeof(a)));
		if (!(cs->bad & OI_BAD_NO_SIGNATURE))
			printf(" (signature 0x%08" PRIx32 ")", cs->signature);
		printf("\n");
		for (k = 0; k < cs->n_exits; k++)
			printf("      exit        %s\n",
			       fmt_loc(img, &img->exits[img->cs_exits[cs->exits_begin + k]].exit,
			               bias, a, sizeof(a)));
		if (cs->version || cs->flags)
			printf("      version %" PRIu32 " flags 0x%" PRIx32 "\n", cs->version,
			       cs->flags);
		print_bits_text(cs->bad, 1);
		print_bits_text(cs->warn, 0);
		if (!cs->bad)
			printf("      ok\n");
	}
	for (k = 0; k < img->n_exits; k++)
		if (img->exits[k].cs_index < 0)
			printf("  warning: exit point %s -> %s matches no "
			       "critical section\n",
			       fmt_loc(img, &img->exits[k].start, bias, a, sizeof(a)),
			       fmt_loc(img, &img->exits[k].exit, bias, b2, sizeof(b2)));
}

static void json_loc(const char *key, const struct oi_image *img, const struct oi_loc *l,
                     uint64_t bias)
{
	char a[96];

	printf("\"%s\": \"0x%" PRIx64 "\", \"%s_loc\": ", key, l->addr + bias, key);
	if (l->section) {
		snprintf(a, sizeof(a), "+0x%" PRIx64, l->offset);
		printf("\"");
		put_json_string_raw(stdout, l->section);
		printf("%s\"", a);
	} else {
		printf("null");
	}
	(void)img;
}

static void print_json_object(struct totals *t, const char *file, const struct oi_image *img,
                              const char *error, uint64_t bias, int have_bias)
{
	size_t i, k;
	unsigned b;
	int first;

	printf("%s\n    {\"file\": ", t->json_first ? "" : ",");
	t->json_first = 0;
	put_json_string(stdout, file);
	if (error) {
		printf(", \"error\": ");
		put_json_string(stdout, error);
		printf("}");
		return;
	}
	printf(", \"error\": null, \"type\": \"%s\", \"machine\": \"%s\"", type_name(img->type),
	       machine_name(img->machine));
	if (have_bias)
		printf(", \"load_bias\": \"0x%" PRIx64 "\"", bias);
	printf(", \"signature\": \"0x%08" PRIx32 "\"", img->expected_signature);
	printf(",\n     \"critical_sections\": [");
	for (i = 0; i < img->n_cs; i++) {
		const struct oi_cs *cs = &img->cs[i];

		printf("%s\n      {\"index\": %zu, ", i ? "," : "", i);
		json_loc("descriptor", img, &cs->desc, bias);
		printf(", \"version\": %" PRIu32 ", \"flags\": %" PRIu32 ", ", cs->version,
		       cs->flags);
		json_loc("start_ip", img, &cs->start, bias);
		printf(", \"post_commit_offset\": %" PRIu64 ", ", cs->post_commit_offset);
		json_loc("post_commit_ip", img, &cs->post_commit, bias);
		printf(", ");
		json_loc("abort_ip", img, &cs->abort, bias);
		if (cs->bad & OI_BAD_NO_SIGNATURE)
			printf(", \"abort_signature\": null");
		else
			printf(", \"abort_signature\": \"0x%08" PRIx32 "\"", cs->signature);
		printf(", \"function\": ");
		put_json_string(stdout, cs->function);
		if (cs->function)
			printf(", \"function_offset\": %" PRIu64 ", \"function_size\": %" PRIu64,
			       cs->start.addr - cs->function_addr, cs->function_size);
		printf(", \"source\": ");
		put_json_string(stdout, cs->source);
		printf(", \"exits\": [");
		for (k = 0; k < cs->n_exits; k++)
			printf("%s\"0x%" PRIx64 "\"", k ? ", " : "",
			       img->exits[img->cs_exits[cs->exits_begin + k]].exit.addr + bias);
		printf("], \"valid\": %s, \"violations\": [", cs->bad ? "false" : "true");
		first = 1;
		for (b = 1; b && b <= cs->bad; b <<= 1)
			if (cs->bad & b) {
				printf("%s", first ? "" : ", ");
				put_json_string(stdout, oi_bad_string(b));
				first = 0;
			}
		printf("], \"warnings\": [");
		first = 1;
		for (b = 1; b && b <= cs->warn; b <<= 1)
			if (cs->warn & b) {
				printf("%s", first ? "" : ", ");
				put_json_string(stdout, oi_warn_string(b));
				first = 0;
			}
		printf("]}");
	}
	printf("%s],\n     \"exit_points\": [", img->n_cs ? "\n     " : "");
	for (k = 0; k < img->n_exits; k++)
		printf("%s{\"start_ip\": \"0x%" PRIx64 "\", \"exit_ip\": \"0x%" PRIx64
		       "\", \"critical_section\": %ld}",
		       k ? ", " : "", img->exits[k].start.addr + bias,
		       img->exits[k].exit.addr + bias, img->exits[k].cs_index);
	printf("]}");
}

/* Inspects one image; prints it and updates the totals. */
static void report(const struct opts *o, struct totals *t, const char *file,
                   const unsigned char *buf, size_t len, const char *load_error, uint64_t bias,
                   int have_bias, int quiet_empty)
{
	struct oi_image img;
	size_t i;

	if (load_error) {
		t->errors++;
		if (o->json)
			print_json_object(t, file, NULL, load_error, 0, 0);
		else
			fprintf(stderr, "oncpu-inspect: %s: %s\n", file, load_error);
		return;
	}
	if (oi_image_parse(buf, len, &img) != 0) {
		t->errors++;
		if (o->json)
			print_json_object(t, file, NULL, img.error, 0, 0);
		else
			fprintf(stderr, "oncpu-inspect: %s: %s\n", file, img.error);
		oi_image_free(&img);
		return;
	}
	t->objects++;
	t->cs += img.n_cs;
	for (i = 0; i < img.n_cs; i++) {
		t->violations += (size_t)popcount(img.cs[i].bad);
		t->warnings += (size_t)popcount(img.cs[i].warn);
	}
	t->warnings += img.n_orphan_exits;
	if (!(quiet_empty && img.n_cs == 0 && img.n_exits == 0)) {
		if (o->json)
			print_json_object(t, file, &img, NULL, bias, have_bias);
		else
			print_text(file, &img, bias, have_bias);
	}
	oi_image_free(&img);
}

static void inspect_file(const struct opts *o, struct totals *t, const char *path)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	char err[256];

	if (slurp(path, &buf, &len, err, sizeof(err)) != 0) {
		report(o, t, path, NULL, 0, err, 0, 0, 0);
		return;
	}
	report(o, t, path, buf, len, NULL, 0, 0, 0);
	free(buf);
}

/*
 * Load bias of a mapped file: the mapping of file offset off at address
 * start belongs to the PT_LOAD segment whose page-aligned offset is off.
 */
static int load_bias(const unsigned char *buf, size_t len, uint64_t start, uint64_t off,
                     uint64_t *bias)
{
	struct oi_load loads[64];
	long n = oi_loads(buf, len, loads, 64), i;
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	if (n < 0)
		return -1;
	for (i = 0; i < n && i < 64; i++)
		if ((loads[i].offset & ~(page - 1)) == off) {
			*bias = start - (loads[i].vaddr & ~(page - 1));
			return 0;
		}
	return -1;
}

struct mapped {
	char path[PATH_MAX];
	uint64_t start;
	uint64_t end;
	uint64_t offset;
};

static int inspect_pid(const struct opts *o, struct totals *t)
{
	char maps[64], line[PATH_MAX + 256];
	struct mapped *seen = NULL;
	size_t nseen = 0, cap = 0, i;
	FILE *f;

	snprintf(maps, sizeof(maps), "/proc/%ld/maps", o->pid);
	f = fopen(maps, "re");
	if (!f) {
		fprintf(stderr, "oncpu-inspect: %s: %s\n", maps, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		unsigned long long s, e, off;
		int pathpos = 0;
		char *path, *nl;

		if (sscanf(line, "%llx-%llx %*s %llx %*s %*s %n", &s, &e, &off, &pathpos) != 3 ||
		    pathpos == 0)
			continue;
		path = line + pathpos;
		nl = strchr(path, '\n');
		if (nl)
			*nl = 0;
		if (path[0] != '/')
			continue; /* anonymous, [heap], [vdso], ... */
		for (i = 0; i < nseen; i++)
			if (strcmp(seen[i].path, path) == 0)
				break;
		if (i < nseen)
			continue; /* first (lowest) mapping decides */
		if (nseen == cap) {
			struct mapped *n;

			cap = cap ? cap * 2 : 32;
			n = realloc(seen, cap * sizeof(*n));
			if (!n) {
				fclose(f);
				free(seen);
				fprintf(stderr, "oncpu-inspect: out of memory\n");
				return -1;
			}
			seen = n;
		}
		snprintf(seen[nseen].path, sizeof(seen[nseen].path), "%s", path);
		seen[nseen].start = s;
		seen[nseen].end = e;
		seen[nseen].offset = off;
		nseen++;
	}
	fclose(f);
	for (i = 0; i < nseen; i++) {
		const struct mapped *m = &seen[i];
		unsigned char *buf = NULL;
		size_t len = 0;
		char err[256], alt[128];
		uint64_t bias = 0;

		if (slurp(m->path, &buf, &len, err, sizeof(err)) != 0) {
			/* deleted or in another mount namespace */
			snprintf(alt, sizeof(alt), "/proc/%ld/map_files/%" PRIx64 "-%" PRIx64,
			         o->pid, m->start, m->end);
			if (slurp(alt, &buf, &len, err, sizeof(err)) != 0)
				continue;
		}
		if (len < SELFMAG || memcmp(buf, ELFMAG, SELFMAG) != 0) {
			free(buf); /* data files: locale archive, ... */
			continue;
		}
		if (load_bias(buf, len, m->start, m->offset, &bias) != 0) {
			report(o, t, m->path, NULL, 0,
			       "cannot compute the load bias from the "
			       "program headers",
			       0, 0, 0);
			free(buf);
			continue;
		}
		report(o, t, m->path, buf, len, NULL, bias, 1, 1);
		free(buf);
	}
	free(seen);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: oncpu-inspect [--json] FILE...\n"
	           "       oncpu-inspect [--json] --pid PID\n"
	           "Lists and validates the rseq critical sections recorded in "
	           "ELF files\n(__rseq_cs, __rseq_cs_ptr_array, "
	           "__rseq_exit_point_array).\n"
	           "  --json     machine-readable output\n"
	           "  --pid PID  inspect every object mapped by a running "
	           "process\n            (addresses are run-time addresses)\n"
	           "Exit status: 0 valid or none found, 1 a descriptor violates "
	           "the\nkernel's rules, 2 usage error or unreadable/malformed "
	           "file.\n");
}

int main(int argc, char **argv)
{
	struct opts o = {0, -1};
	struct totals t = {0, 0, 0, 0, 0, 1};
	int i, nfiles = 0, only_files = 0;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (only_files || a[0] != '-' || a[1] == 0) {
			nfiles++;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_files = 1;
		} else if (strcmp(a, "--json") == 0) {
			o.json = 1;
		} else if (strcmp(a, "--pid") == 0 || strncmp(a, "--pid=", 6) == 0) {
			const char *v = a[5] == '=' ? a + 6 : argv[++i];
			char *end;

			if (!v) {
				usage(stderr);
				return 2;
			}
			errno = 0;
			o.pid = strtol(v, &end, 10);
			if (errno || *end || o.pid <= 0) {
				fprintf(stderr, "oncpu-inspect: bad pid '%s'\n", v);
				return 2;
			}
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--version") == 0) {
			printf("oncpu-inspect " OI_VERSION "\n");
			return 0;
		} else {
			fprintf(stderr, "oncpu-inspect: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if ((nfiles == 0) == (o.pid < 0)) {
		usage(stderr);
		return 2;
	}
	if (o.json)
		printf("{\"tool\": \"oncpu-inspect\", \"format\": 1,\n"
		       " \"objects\": [");
	if (o.pid > 0) {
		if (inspect_pid(&o, &t) != 0)
			t.errors++;
	} else {
		only_files = 0;
		for (i = 1; i < argc; i++) {
			const char *a = argv[i];

			if (!only_files && strcmp(a, "--") == 0) {
				only_files = 1;
				continue;
			}
			if (!only_files && a[0] == '-' && a[1] != 0) {
				if (strcmp(a, "--pid") == 0)
					i++;
				continue;
			}
			inspect_file(&o, &t, a);
		}
	}
	if (o.json)
		printf("\n  ],\n \"summary\": {\"objects\": %zu, "
		       "\"critical_sections\": %zu, \"violations\": %zu, "
		       "\"warnings\": %zu, \"errors\": %zu}}\n",
		       t.objects, t.cs, t.violations, t.warnings, t.errors);
	else if (t.objects + t.errors > 1 || o.pid > 0)
		printf("summary: %zu object%s, %zu critical section%s, %zu "
		       "violation%s, %zu warning%s, %zu error%s\n",
		       t.objects, t.objects == 1 ? "" : "s", t.cs, t.cs == 1 ? "" : "s",
		       t.violations, t.violations == 1 ? "" : "s", t.warnings,
		       t.warnings == 1 ? "" : "s", t.errors, t.errors == 1 ? "" : "s");
	if (t.errors)
		return 2;
	return t.violations ? 1 : 0;
}
