/*
 * libFuzzer target for the ELF reader behind oncpu-inspect.  Built with
 * -fsanitize=fuzzer,address,undefined when the compiler supports it.
 * With OI_FUZZ_REPLAY_MAIN it also builds with any compiler as a plain
 * program that replays files and directories (the regression corpus) so
 * CTest checks the corpus everywhere.
 */
#include "oi_elf.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t oi_sink;

/* Touches every string the parser returns, so ASan sees bad pointers. */
static void touch_loc(const struct oi_loc *l)
{
	if (l->section)
		oi_sink += strlen(l->section) + (size_t)l->offset;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oi_image img;
	struct oi_load loads[8];
	size_t i;

	if (oi_image_parse(data, size, &img) == 0) {
		for (i = 0; i < img.n_cs; i++) {
			const struct oi_cs *cs = &img.cs[i];

			touch_loc(&cs->desc);
			touch_loc(&cs->start);
			touch_loc(&cs->post_commit);
			touch_loc(&cs->abort);
			if (cs->function)
				oi_sink += strlen(cs->function);
			if (cs->source)
				oi_sink += strlen(cs->source);
		}
		for (i = 0; i < img.n_exits; i++) {
			touch_loc(&img.exits[i].start);
			touch_loc(&img.exits[i].exit);
		}
	} else {
		oi_sink += strlen(img.error);
	}
	oi_image_free(&img);
	oi_sink += (size_t)oi_loads(data, size, loads, 8);
	return 0;
}

#ifdef OI_FUZZ_REPLAY_MAIN
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long n;

	if (!f) {
		perror(path);
		return -1;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return -1;
	}
	buf = malloc(n > 0 ? (size_t)n : 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	/* An exact-size heap copy, so ASan catches reads past the end. */
	LLVMFuzzerTestOneInput(buf, (size_t)n);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int i, count = 0, failed = 0;

	for (i = 1; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st) != 0) {
			perror(argv[i]);
			failed++;
		} else if (S_ISDIR(st.st_mode)) {
			DIR *d = opendir(argv[i]);
			struct dirent *e;

			while (d && (e = readdir(d))) {
				char path[4096];

				if (e->d_name[0] == '.')
					continue;
				snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
				failed += replay_file(path) != 0;
				count++;
			}
			if (d)
				closedir(d);
		} else {
			failed += replay_file(argv[i]) != 0;
			count++;
		}
	}
	printf("replayed %d inputs, %d unreadable\n", count, failed);
	return failed || count == 0 ? 1 : 0;
}
#endif
