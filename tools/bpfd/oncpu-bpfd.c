/* SPDX-License-Identifier: MIT */
/*
 * oncpu-bpfd - loads, pins and unloads the BPF programs of liboncpu's "bpf"
 * deschedule-notification provider (bpf/oncpu_desched.bpf.c), and reports
 * their state and cost. Run once as root (CAP_BPF, CAP_PERFMON and, for the
 * uprobe, CAP_SYS_ADMIN); the programs stay loaded, pinned under a bpffs
 * directory, after it exits. Registering threads is for root and the
 * members of the group given to load --group (the pins' modes).
 *
 *   oncpu-bpfd load    [--pin-dir DIR] [--group NAME|GID] [--library FILE]...
 *   oncpu-bpfd attach  [--pin-dir DIR] FILE...
 *   oncpu-bpfd refresh [--pin-dir DIR] [--prune]
 *   oncpu-bpfd unload  [--pin-dir DIR]
 *   oncpu-bpfd status  [--pin-dir DIR]
 *   oncpu-bpfd cost    [--pin-dir DIR] [--seconds S] [--registered]
 *
 * The pinned layout and the registration protocol are in common/oncpu_bpf.h;
 * the man page is doc/oncpu-bpfd.8.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <oncpu.h>
#include <oncpu/desched.h>

#include "desched_block.h"
#include "oncpu_bpf.h"
#include "oncpu_desched.skel.h"
#include "oncpu_noop.skel.h"

#ifndef ONCPU_BPFD_DEFAULT_LIBRARY
#define ONCPU_BPFD_DEFAULT_LIBRARY "/usr/local/lib/liboncpu.so.0"
#endif
#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

/* The tracepoint programs and the names of their link pins. */
static const struct {
	const char *pin;
	const char *what;
} tp_links[] = {
    {"switch", "tp_btf/sched_switch"},
    {"resume", "tp_btf/rseq_update"},
    {"exit", "tp_btf/sched_process_exit"},
    {"exec", "tp_btf/sched_process_exec"},
};

static struct bpf_program *tp_prog(struct oncpu_desched *s, size_t i)
{
	struct bpf_program *p[] = {s->progs.oncpu_switch, s->progs.oncpu_resume,
	                           s->progs.oncpu_exit, s->progs.oncpu_exec};
	return p[i];
}

static const char *pin_dir = ONCPU_BPF_PIN_DIR;
/* The kernel has the rseq_update tracepoint (the backstop's hook). */
static bool have_rseq_update = true;
static bool verbose;

/* libbpf's messages (its format strings are not literals here). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !verbose)
		return 0;
	return vfprintf(stderr, fmt, ap);
}
#pragma GCC diagnostic pop

__attribute__((format(printf, 1, 2))) static void die(const char *fmt, ...)
{
	va_list ap;
	fputs("oncpu-bpfd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* The most that a path adds after pin_dir: "/links/new-" and a link's name
 * (link_name(): 63 bytes at most); main() refuses a longer pin_dir. */
#define PIN_SUFFIX_MAX 128
_Static_assert(sizeof("/" ONCPU_BPF_PIN_LINKS "/new-") - 1 + 63 <= PIN_SUFFIX_MAX,
               "PIN_SUFFIX_MAX");

static char *pin_path(const char *name)
{
	static char buf[4][PATH_MAX];
	static int n;
	char *p = buf[n++ % 4];
	snprintf(p, PATH_MAX, "%s/%s", pin_dir, name);
	return p;
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* ---- the pin directory ---- */

/* The pin directory's parent. */
static void parent_of_pin_dir(char *parent, size_t len)
{
	snprintf(parent, len, "%s", pin_dir);
	char *slash = strrchr(parent, '/');
	if (!slash || slash == parent)
		die("%s: the pin directory must be a subdirectory of a bpffs mount", pin_dir);
	*slash = 0;
}

/* The info of the provider pinned in directory dir, or false. */
static bool read_info(const char *dir, struct oncpu_bpf_info *info)
{
	char p[PATH_MAX];
	memset(info, 0, sizeof(*info));
	int len = snprintf(p, sizeof(p), "%s/%s", dir, ONCPU_BPF_PIN_INFO);
	if (len < 0 || (size_t)len >= sizeof(p))
		return false; /* no such path: a shortened one could name something else */
	int fd = bpf_obj_get(p);
	uint32_t key = 0;
	bool ok = fd >= 0 && bpf_map_lookup_elem(fd, &key, info) == 0;
	if (fd >= 0)
		close(fd);
	return ok && info->abi == ONCPU_BPF_ABI;
}

/* How many providers other than ours are pinned under parent; *mode: the
 * parent_mode one of them recorded (the mode before the first of them
 * changed it), or 0. */
static int other_providers(const char *parent, uint32_t *mode)
{
	DIR *d = opendir(parent);
	int n = 0;
	struct dirent *e;
	*mode = 0;
	while (d && (e = readdir(d))) {
		char dir[PATH_MAX + 256];
		struct oncpu_bpf_info info;
		if (e->d_name[0] == '.')
			continue;
		char info_pin[PATH_MAX];
		int len = snprintf(dir, sizeof(dir), "%s/%s", parent, e->d_name);
		int info_len =
		    snprintf(info_pin, sizeof(info_pin), "%s/%s", dir, ONCPU_BPF_PIN_INFO);
		if (len < 0 || (size_t)len >= sizeof(dir) || info_len < 0 ||
		    (size_t)info_len >= sizeof(info_pin))
			continue; /* too long a path to hold a provider */
		if (strcmp(dir, pin_dir) == 0 || !exists(info_pin))
			continue;
		n++; /* a provider of any ABI still needs the search permission */
		if (read_info(dir, &info) && info.parent_mode)
			*mode = info.parent_mode;
	}
	if (d)
		closedir(d);
	return n;
}

/* The directory must be on a bpffs; /sys/fs/bpf is mounted when it is not.
 * Returns the mode of the parent before oncpu changed it (0: unchanged). */
static uint32_t ensure_bpffs(void)
{
	char parent[PATH_MAX];
	parent_of_pin_dir(parent, sizeof(parent));
	struct statfs fs;
	if (statfs(parent, &fs) != 0)
		die("%s: %s", parent, strerror(errno));
	if ((unsigned long)fs.f_type != BPF_FS_MAGIC) {
		if (strcmp(parent, "/sys/fs/bpf") != 0)
			die("%s is not a bpffs mount (mount -t bpf bpf %s)", parent, parent);
		if (mount("bpf", parent, "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755") != 0)
			die("mount -t bpf bpf %s: %s", parent, strerror(errno));
		printf("mounted bpffs at %s\n", parent);
	}
	/* Registering processes must be able to reach the pins (systemd mounts
	 * /sys/fs/bpf with mode 0700): add search permission, never listing;
	 * the mode before is restored when the last provider there unloads. */
	struct stat st;
	if (stat(parent, &st) == 0 && (st.st_mode & 0011) != 0011) {
		if (chmod(parent, (st.st_mode & 07777) | 0011) != 0)
			die("chmod %s: %s", parent, strerror(errno));
		printf("%s: added search permission for others (mode %04o)\n", parent,
		       (st.st_mode & 07777) | 0011);
		return (uint32_t)(st.st_mode & 07777);
	}
	uint32_t before;
	other_providers(parent, &before);
	return before;
}

static void set_mode(const char *path, mode_t mode)
{
	if (chmod(path, mode) != 0)
		die("chmod %s: %s", path, strerror(errno));
}

/* Pins a link under links/NAME atomically (replacing an older link there,
 * which detaches it), then lets the pin own it. */
static void pin_link(struct bpf_link *link, const char *name)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	snprintf(path, sizeof(path), "%s/%s/%s", pin_dir, ONCPU_BPF_PIN_LINKS, name);
	/* bpffs refuses dots in names. */
	snprintf(tmp, sizeof(tmp), "%s/%s/new-%s", pin_dir, ONCPU_BPF_PIN_LINKS, name);
	unlink(tmp);
	int err = bpf_link__pin(link, tmp);
	if (err)
		die("pin %s: %s", tmp, strerror(-err));
	if (rename(tmp, path) != 0)
		die("rename %s: %s", tmp, strerror(errno));
	/* Never detach on exit: the pin keeps it. */
	bpf_link__disconnect(link);
	bpf_link__destroy(link);
}

/* Opens and loads the programs, with maps reused from the pins (created and
 * pinned when absent). Checks the ABI of an existing provider. */
static struct oncpu_desched *open_provider(bool create)
{
	struct oncpu_desched *s = oncpu_desched__open();
	if (!s)
		die("open BPF object: %s", strerror(errno));
	struct bpf_map *maps[] = {s->maps.oncpu_info, s->maps.oncpu_reg, s->maps.oncpu_auth,
	                          s->maps.oncpu_stats, s->maps.oncpu_files};
	const char *names[] = {ONCPU_BPF_PIN_INFO, ONCPU_BPF_PIN_REG, ONCPU_BPF_PIN_AUTH,
	                       ONCPU_BPF_PIN_STATS, ONCPU_BPF_PIN_FILES};
	if (!create && !exists(pin_path(ONCPU_BPF_PIN_INFO)))
		die("not loaded at %s (oncpu-bpfd load)", pin_dir);
	/* The backstop is optional: a kernel without the rseq_update
	 * tracepoint gets the provider without it. */
	struct btf *vmlinux = btf__load_vmlinux_btf();
	if (vmlinux) {
		have_rseq_update =
		    btf__find_by_name_kind(vmlinux, "btf_trace_rseq_update", BTF_KIND_TYPEDEF) > 0;
		btf__free(vmlinux);
	}
	if (!have_rseq_update)
		bpf_program__set_autoload(s->progs.oncpu_resume, false);
	if (exists(pin_path(ONCPU_BPF_PIN_INFO))) {
		int fd = bpf_obj_get(pin_path(ONCPU_BPF_PIN_INFO));
		struct oncpu_bpf_info info = {0};
		uint32_t key = 0;
		if (fd < 0 || bpf_map_lookup_elem(fd, &key, &info) != 0)
			die("%s: %s", pin_path(ONCPU_BPF_PIN_INFO), strerror(errno));
		close(fd);
		if (info.abi != ONCPU_BPF_ABI)
			die("%s holds a provider of ABI %u, this is ABI %u: oncpu-bpfd unload "
			    "first",
			    pin_dir, info.abi, ONCPU_BPF_ABI);
	}
	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
		bpf_map__set_pin_path(maps[i], pin_path(names[i]));
	int err = oncpu_desched__load(s);
	if (err) {
		struct utsname u;
		uname(&u);
		die("load the BPF programs: %s (kernel %s; the provider needs 6.13+ with BTF, "
		    "CAP_BPF and CAP_PERFMON; run with -v for the verifier log)",
		    strerror(-err), u.release);
	}
	return s;
}

/* ---- attached binary files ---- */

struct file_slot {
	uint32_t key;
	struct oncpu_bpf_file f;
};

static int files_fd(void)
{
	int fd = bpf_obj_get(pin_path(ONCPU_BPF_PIN_FILES));
	if (fd < 0)
		die("%s: %s", pin_path(ONCPU_BPF_PIN_FILES), strerror(errno));
	return fd;
}

static int read_files(struct file_slot *out)
{
	int fd = files_fd(), n = 0;
	for (uint32_t k = 0; k < ONCPU_BPF_MAX_FILES; k++) {
		struct oncpu_bpf_file f;
		if (bpf_map_lookup_elem(fd, &k, &f) == 0 && f.used)
			out[n++] = (struct file_slot){k, f};
	}
	close(fd);
	return n;
}

static void link_name(char *buf, size_t len, uint64_t dev, uint64_t ino)
{
	snprintf(buf, len, "arm-%" PRIx64 "-%" PRIu64, dev, ino);
}

/* Whether root may trust what st describes: owned by root, writable by
 * nobody else; a directory writable by others only with the sticky bit
 * (as /tmp: others cannot replace root's entries there). */
static bool trusted(const struct stat *st, bool dir)
{
	if (st->st_uid != 0)
		return false;
	if (dir)
		return S_ISDIR(st->st_mode) && (!(st->st_mode & 0022) || (st->st_mode & S_ISVTX));
	return S_ISREG(st->st_mode) && !(st->st_mode & 0022);
}

/* Opens the binary file at path (symbolic links resolved first) for root
 * to parse and probe: every directory from / down and the file itself must
 * be trusted(), and each is opened with O_NOFOLLOW relative to the one
 * checked before, so the file checked is the file opened. fd (its fstat in
 * *st) or -1 after a message. */
static int open_trusted(const char *path, struct stat *st)
{
	char real[PATH_MAX];
	if (!realpath(path, real)) {
		fprintf(stderr, "oncpu-bpfd: %s: %s\n", path, strerror(errno));
		return -1;
	}
	int dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	char *name = real + 1, *slash;
	const char *why = NULL;
	if (dfd < 0 || fstat(dfd, st) != 0)
		why = strerror(errno);
	else if (!trusted(st, true))
		why = "/ is not owned by root or is writable by others";
	while (!why && (slash = strchr(name, '/'))) {
		*slash = 0;
		int nfd = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0 || fstat(nfd, st) != 0)
			why = strerror(errno);
		else if (!trusted(st, true))
			why =
			    "a directory on the way is not owned by root or is writable by others";
		close(dfd);
		dfd = nfd;
		*slash = '/';
		name = slash + 1;
	}
	int fd = -1;
	if (!why) {
		fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0 || fstat(fd, st) != 0)
			why = strerror(errno);
		else if (!trusted(st, false))
			why = "not a regular file owned by root and writable by root only";
	}
	if (dfd >= 0)
		close(dfd);
	if (why) {
		fprintf(stderr, "oncpu-bpfd: %s (%s): refused: %s\n", path, real, why);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Attaches the arm uprobe to the binary file open as file_fd (fstat in
 * fst), recorded under the path `real`, unless its inode is attached
 * already. 0, or -1 after a message. */
static int attach_fd(struct oncpu_desched *s, const char *real, int file_fd, const struct stat *fst)
{
	struct stat st = *fst;
	struct file_slot slots[ONCPU_BPF_MAX_FILES];
	int n = read_files(slots);
	uint32_t free_key = UINT32_MAX;
	bool used[ONCPU_BPF_MAX_FILES] = {false};
	for (int i = 0; i < n; i++) {
		used[slots[i].key] = true;
		if (slots[i].f.dev == (uint64_t)st.st_dev &&
		    slots[i].f.ino == (uint64_t)st.st_ino) {
			printf("attached already: %s (inode %" PRIu64 ")\n", real, slots[i].f.ino);
			return 0;
		}
	}
	for (uint32_t k = 0; k < ONCPU_BPF_MAX_FILES && free_key == UINT32_MAX; k++)
		if (!used[k])
			free_key = k;
	if (free_key == UINT32_MAX) {
		fprintf(stderr, "oncpu-bpfd: %d files attached already (refresh --prune)\n", n);
		return -1;
	}
	LIBBPF_OPTS(bpf_uprobe_opts, uo, .func_name = ONCPU_BPF_ARM_SYMBOL);
	/* libbpf reads the symbols, and the kernel resolves the probe's
	 * inode, through the descriptor: the file checked. */
	char via_fd[64];
	snprintf(via_fd, sizeof(via_fd), "/proc/self/fd/%d", file_fd);
	struct bpf_link *link =
	    bpf_program__attach_uprobe_opts(s->progs.oncpu_arm, -1, via_fd, 0, &uo);
	if (!link) {
		fprintf(stderr,
		        "oncpu-bpfd: attach the arm uprobe to %s: %s (is it liboncpu, or "
		        "a program linked statically with it?)\n",
		        real, strerror(errno));
		return -1;
	}
	char name[64];
	link_name(name, sizeof(name), st.st_dev, st.st_ino);
	pin_link(link, name);
	struct oncpu_bpf_file f = {.dev = st.st_dev, .ino = st.st_ino, .used = 1};
	memcpy(f.path, real, strlen(real) + 1); /* length checked above */
	int fd = files_fd();
	if (bpf_map_update_elem(fd, &free_key, &f, BPF_ANY) != 0)
		die("record %s: %s", real, strerror(errno));
	close(fd);
	printf("attached: %s (inode %" PRIu64 ")\n", real, (uint64_t)st.st_ino);
	return 0;
}

/* Attaches the arm uprobe to the file at `path` (its current inode), unless
 * that inode is attached already; the file is opened once (open_trusted)
 * and parsed and probed through that descriptor. 0, or -1 after a message. */
static int attach_file(struct oncpu_desched *s, const char *path)
{
	/* Record the path as given (absolute): a refresh after an upgrade
	 * follows a symbolic link such as liboncpu.so.0 to the new file. */
	char real[PATH_MAX];
	struct stat st;
	if (path[0] == '/')
		snprintf(real, sizeof(real), "%s", path);
	else if (!realpath(path, real)) {
		fprintf(stderr, "oncpu-bpfd: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (strlen(real) >= sizeof(((struct oncpu_bpf_file *)0)->path)) {
		fprintf(stderr, "oncpu-bpfd: %s: path too long\n", real);
		return -1;
	}
	int fd = open_trusted(real, &st);
	if (fd < 0)
		return -1;
	int r = attach_fd(s, real, fd, &st);
	close(fd);
	return r;
}

/* ---- commands ---- */

/* The gid named by NAME or a number; dies when there is none. */
static gid_t parse_group(const char *name)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(name, &end, 10);
	if (*name && !*end && !errno && n < (unsigned long)(gid_t)-1)
		return (gid_t)n;
	struct group *g = getgrnam(name);
	if (!g)
		die("--group %s: no such group", name);
	return g->gr_gid;
}

/* A pin that root may write and `group` (if any) may use as `gmode`. */
static void set_access(const char *path, const char *group, mode_t gmode)
{
	if (group && chown(path, 0, parse_group(group)) != 0)
		die("chown %s: %s", path, strerror(errno));
	set_mode(path, 0600 | (group ? gmode : 0));
}

static int cmd_load(char **libs, int nlibs, bool no_attach, const char *group)
{
	struct utsname u;
	if (uname(&u) == 0) {
		int major = 0, minor = 0;
		sscanf(u.release, "%d.%d", &major, &minor);
		if (major < 6 || (major == 6 && minor < 13))
			fprintf(stderr,
			        "oncpu-bpfd: warning: kernel %s; __uptr task storage needs 6.13+\n",
			        u.release);
	}
	if (!exists("/sys/kernel/btf/vmlinux"))
		die("/sys/kernel/btf/vmlinux is missing: the kernel needs CONFIG_DEBUG_INFO_BTF");
	if (group)
		parse_group(group); /* before anything changes */
	uint32_t parent_mode = ensure_bpffs();
	if (mkdir(pin_dir, 0755) != 0 && errno != EEXIST)
		die("mkdir %s: %s", pin_dir, strerror(errno));
	char links[PATH_MAX];
	snprintf(links, sizeof(links), "%s/%s", pin_dir, ONCPU_BPF_PIN_LINKS);
	if (mkdir(links, 0700) != 0 && errno != EEXIST)
		die("mkdir %s: %s", links, strerror(errno));
	bool fresh = !exists(pin_path(ONCPU_BPF_PIN_INFO));

	struct oncpu_desched *s = open_provider(true);
	if (fresh) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		struct oncpu_bpf_info info = {
		    .abi = ONCPU_BPF_ABI,
		    .block_size = ONCPU_DESCHED_BLOCK_SIZE,
		    .loaded_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec,
		    .parent_mode = parent_mode,
		};
		uint32_t key = 0;
		int fd = bpf_map__fd(s->maps.oncpu_info);
		if (bpf_map_update_elem(fd, &key, &info, BPF_ANY) != 0 || bpf_map_freeze(fd) != 0)
			die("write %s: %s", pin_path(ONCPU_BPF_PIN_INFO), strerror(errno));
	}
	for (size_t i = 0; i < sizeof(tp_links) / sizeof(tp_links[0]); i++) {
		if (tp_prog(s, i) == s->progs.oncpu_resume && !have_rseq_update) {
			fprintf(stderr,
			        "oncpu-bpfd: warning: no rseq_update tracepoint in this kernel: "
			        "no backstop for switch-ins that sched_switch does not show\n");
			continue;
		}
		struct bpf_link *l = bpf_program__attach(tp_prog(s, i));
		if (!l)
			die("attach %s: %s", tp_links[i].what, strerror(errno));
		pin_link(l, tp_links[i].pin);
	}
	set_mode(pin_dir, 0755);
	set_mode(links, 0700);
	set_mode(pin_path(ONCPU_BPF_PIN_INFO), 0444);
	/* Who may register (the pins were created 0600). */
	set_access(pin_path(ONCPU_BPF_PIN_REG), group, 0020);
	set_mode(pin_path(ONCPU_BPF_PIN_AUTH), 0600);
	set_access(pin_path(ONCPU_BPF_PIN_STATS), group, 0040);
	set_mode(pin_path(ONCPU_BPF_PIN_FILES), 0600);
	printf("%s provider at %s (ABI %d); registration: %s%s\n", fresh ? "loaded" : "reloaded",
	       pin_dir, ONCPU_BPF_ABI, group ? "root and group " : "root only", group ? group : "");

	int failed = 0;
	if (nlibs == 0 && !no_attach) {
		if (exists(ONCPU_BPFD_DEFAULT_LIBRARY))
			failed |= attach_file(s, ONCPU_BPFD_DEFAULT_LIBRARY);
		else
			fprintf(
			    stderr,
			    "oncpu-bpfd: %s not found: nothing attached (oncpu-bpfd attach FILE)\n",
			    ONCPU_BPFD_DEFAULT_LIBRARY);
	}
	for (int i = 0; i < nlibs; i++)
		failed |= attach_file(s, libs[i]);
	oncpu_desched__destroy(s);
	return failed ? 1 : 0;
}

static int cmd_attach(char **files, int n)
{
	if (n == 0)
		die("attach: which file? (liboncpu.so, or a program linked statically with it)");
	struct oncpu_desched *s = open_provider(false);
	int failed = 0;
	for (int i = 0; i < n; i++)
		failed |= attach_file(s, files[i]);
	oncpu_desched__destroy(s);
	return failed ? 1 : 0;
}

/* Whether a process maps the file (dev, ino) now. Processes whose maps
 * cannot be read (another user namespace, a protected init) are counted
 * in `unreadable` and not inspected: pruning an inode one of them still
 * maps only keeps its new threads from arming (they run untracked);
 * registrations armed already stay armed. */
static int unreadable;

static bool inode_mapped(uint64_t dev, uint64_t ino)
{
	unreadable = 0;
	DIR *d = opendir("/proc");
	if (!d)
		return true;
	struct dirent *e;
	bool found = false;
	while (!found && (e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char path[300], line[PATH_MAX + 128];
		snprintf(path, sizeof(path), "/proc/%s/maps", e->d_name);
		FILE *f = fopen(path, "re");
		if (!f) {
			if (errno == EACCES || errno == EPERM)
				unreadable++;
			continue;
		}
		while (!found && fgets(line, sizeof(line), f)) {
			unsigned maj, min;
			unsigned long long i;
			if (sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min, &i) == 3 &&
			    i == ino && makedev(maj, min) == dev)
				found = true;
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

static int cmd_refresh(bool prune)
{
	struct oncpu_desched *s = open_provider(false);
	struct file_slot slots[ONCPU_BPF_MAX_FILES];
	int n = read_files(slots), failed = 0;
	for (int i = 0; i < n; i++) {
		struct oncpu_bpf_file *f = &slots[i].f;
		struct stat st;
		bool current = stat(f->path, &st) == 0 && (uint64_t)st.st_dev == f->dev &&
		               (uint64_t)st.st_ino == f->ino;
		if (current)
			continue;
		if (exists(f->path))
			failed |= attach_file(s, f->path);
		if (prune && !inode_mapped(f->dev, f->ino)) {
			char name[64], path[PATH_MAX];
			link_name(name, sizeof(name), f->dev, f->ino);
			snprintf(path, sizeof(path), "%s/%s/%s", pin_dir, ONCPU_BPF_PIN_LINKS,
			         name);
			unlink(path);
			struct oncpu_bpf_file none = {0};
			int fd = files_fd();
			bpf_map_update_elem(fd, &slots[i].key, &none, BPF_ANY);
			close(fd);
			printf("pruned: %s (inode %" PRIu64 ", mapped by no process)\n", f->path,
			       f->ino);
		}
	}
	if (prune && unreadable)
		printf("note: the maps of %d process(es) could not be read (not inspected)\n",
		       unreadable);
	oncpu_desched__destroy(s);
	return failed ? 1 : 0;
}

static int cmd_unload(void)
{
	if (!exists(pin_dir)) {
		printf("not loaded at %s\n", pin_dir);
		return 0;
	}
	struct oncpu_bpf_info info;
	if (!read_info(pin_dir, &info))
		info.parent_mode = 0;
	char links[PATH_MAX];
	snprintf(links, sizeof(links), "%s/%s", pin_dir, ONCPU_BPF_PIN_LINKS);
	DIR *d = opendir(links);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char p[PATH_MAX + 256];
			snprintf(p, sizeof(p), "%s/%s", links, e->d_name);
			if (unlink(p) != 0)
				die("unlink %s: %s", p, strerror(errno));
		}
		closedir(d);
		rmdir(links);
	}
	const char *names[] = {ONCPU_BPF_PIN_INFO, ONCPU_BPF_PIN_REG, ONCPU_BPF_PIN_AUTH,
	                       ONCPU_BPF_PIN_STATS, ONCPU_BPF_PIN_FILES};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (unlink(pin_path(names[i])) != 0 && errno != ENOENT)
			die("unlink %s: %s", pin_path(names[i]), strerror(errno));
	if (rmdir(pin_dir) != 0)
		die("rmdir %s: %s", pin_dir, strerror(errno));
	printf("unloaded %s\n", pin_dir);
	/* The last provider under the parent restores its mode. */
	char parent[PATH_MAX];
	uint32_t other_mode;
	parent_of_pin_dir(parent, sizeof(parent));
	if (other_providers(parent, &other_mode) == 0 && info.parent_mode) {
		if (chmod(parent, info.parent_mode) != 0)
			die("chmod %s: %s", parent, strerror(errno));
		printf("%s: mode %04o restored\n", parent, info.parent_mode);
	}
	return 0;
}

/* run_cnt and run_time_ns of the program behind a pinned link. */
struct prog_stats {
	uint32_t id;
	uint64_t cnt, ns;
};

static int link_prog_stats(const char *link_pin, struct prog_stats *out)
{
	int lfd = bpf_obj_get(link_pin);
	if (lfd < 0)
		return -1;
	struct bpf_link_info li;
	uint32_t len = sizeof(li);
	memset(&li, 0, sizeof(li));
	int r = bpf_obj_get_info_by_fd(lfd, &li, &len);
	close(lfd);
	if (r)
		return -1;
	int pfd = bpf_prog_get_fd_by_id(li.prog_id);
	if (pfd < 0)
		return -1;
	struct bpf_prog_info pi;
	len = sizeof(pi);
	memset(&pi, 0, sizeof(pi));
	r = bpf_obj_get_info_by_fd(pfd, &pi, &len);
	close(pfd);
	if (r)
		return -1;
	*out = (struct prog_stats){li.prog_id, pi.run_cnt, pi.run_time_ns};
	return 0;
}

static int prog_fd_stats(int pfd, struct prog_stats *out)
{
	struct bpf_prog_info pi;
	uint32_t len = sizeof(pi);
	memset(&pi, 0, sizeof(pi));
	if (bpf_obj_get_info_by_fd(pfd, &pi, &len))
		return -1;
	*out = (struct prog_stats){pi.id, pi.run_cnt, pi.run_time_ns};
	return 0;
}

/* A read-only fd: enough for status, and allowed to root and the granted group. */
static int obj_get_rdonly(const char *path)
{
	LIBBPF_OPTS(bpf_obj_get_opts, o, .file_flags = BPF_F_RDONLY);
	return bpf_obj_get_opts(path, &o);
}

static int read_sysctl_int(const char *path)
{
	FILE *f = fopen(path, "re");
	int v = -1;
	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static int cmd_status(void)
{
	if (!exists(pin_path(ONCPU_BPF_PIN_INFO))) {
		printf("not loaded at %s\n", pin_dir);
		return 3;
	}
	int fd = obj_get_rdonly(pin_path(ONCPU_BPF_PIN_INFO));
	struct oncpu_bpf_info info = {0};
	uint32_t key = 0;
	if (fd < 0 || bpf_map_lookup_elem(fd, &key, &info) != 0)
		die("%s: %s", pin_path(ONCPU_BPF_PIN_INFO), strerror(errno));
	close(fd);
	time_t t = (time_t)(info.loaded_ns / 1000000000ULL);
	char when[64];
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
	printf("loaded at %s: ABI %u, block %u bytes, since %s\n", pin_dir, info.abi,
	       info.block_size, when);

	int stats_on = read_sysctl_int("/proc/sys/kernel/bpf_stats_enabled");
	printf("programs%s:\n",
	       stats_on == 1 ? "" : " (run times: sysctl kernel.bpf_stats_enabled=1)");
	for (size_t i = 0; i < sizeof(tp_links) / sizeof(tp_links[0]); i++) {
		char p[PATH_MAX];
		snprintf(p, sizeof(p), "%s/%s/%s", pin_dir, ONCPU_BPF_PIN_LINKS, tp_links[i].pin);
		struct prog_stats ps;
		if (link_prog_stats(p, &ps) != 0) {
			printf("  %-7s %-27s %s\n", tp_links[i].pin, tp_links[i].what,
			       errno == EACCES || errno == EPERM ? "(not readable: run as root)"
			                                         : "NOT ATTACHED");
			continue;
		}
		printf("  %-7s %-27s prog %-6u runs %-12" PRIu64, tp_links[i].pin, tp_links[i].what,
		       ps.id, ps.cnt);
		if (ps.cnt && ps.ns)
			printf(" avg %.1f ns", (double)ps.ns / (double)ps.cnt);
		putchar('\n');
	}

	struct file_slot slots[ONCPU_BPF_MAX_FILES];
	int n = 0, stale = 0;
	printf("arm uprobe (%s) attached to:\n", ONCPU_BPF_ARM_SYMBOL);
	if (access(pin_path(ONCPU_BPF_PIN_FILES), R_OK) != 0)
		printf("  (not readable: run as root)\n");
	else
		n = read_files(slots);
	if (n == 0 && access(pin_path(ONCPU_BPF_PIN_FILES), R_OK) == 0)
		printf("  nothing: no thread can register (oncpu-bpfd attach FILE)\n");
	for (int i = 0; i < n; i++) {
		struct oncpu_bpf_file *f = &slots[i].f;
		struct stat st;
		const char *state = "current";
		if (stat(f->path, &st) != 0) {
			state = "file removed";
			stale++;
		} else if ((uint64_t)st.st_dev != f->dev || (uint64_t)st.st_ino != f->ino) {
			state = "REPLACED: new processes cannot arm (oncpu-bpfd refresh)";
			stale++;
		}
		printf("  %s (inode %" PRIu64 "): %s\n", f->path, f->ino, state);
	}

	fd = obj_get_rdonly(pin_path(ONCPU_BPF_PIN_STATS));
	if (fd >= 0) {
		int ncpu = libbpf_num_possible_cpus();
		uint64_t *v = calloc((size_t)ncpu, sizeof(uint64_t));
		static const char *const names[] = ONCPU_BPF_STAT_NAMES;
		printf("counters:\n");
		for (uint32_t k = 0; v && k < ONCPU_BPF_NR_STATS; k++) {
			uint64_t sum = 0;
			if (bpf_map_lookup_elem(fd, &k, v) == 0)
				for (int c = 0; c < ncpu; c++)
					sum += v[c];
			printf("  %-12s %" PRIu64 "\n", names[k], sum);
		}
		free(v);
		close(fd);
	}
	return stale ? 2 : 0;
}

/* ---- cost: what the programs add to a context switch ---- */

struct pingpong {
	int to_b[2], to_a[2];
	volatile bool stop;
	bool registered;
	long rounds;
	int cpu;
};

static void pin_to(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static void *pong(void *arg)
{
	struct pingpong *pp = arg;
	char c;
	pin_to(pp->cpu);
	if (pp->registered)
		oncpu_desched_words();
	while (read(pp->to_b[0], &c, 1) == 1 && c)
		if (write(pp->to_a[1], &c, 1) != 1)
			break;
	return NULL;
}

/* The file mapped at address a in this process (liboncpu.so, or this
 * program when it is linked statically). */
static bool mapped_file(uintptr_t a, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[PATH_MAX + 128];
	bool found = false;
	while (f && !found && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		int off = 0;
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &off) < 2 || a < lo ||
		    a >= hi)
			continue;
		char *p = line + off;
		p[strcspn(p, "\n")] = 0;
		if (*p == '/') {
			snprintf(out, len, "%s", p);
			found = true;
		}
	}
	if (f)
		fclose(f);
	return found;
}

static int cmd_cost(double seconds, bool registered)
{
	if (!exists(pin_path(ONCPU_BPF_PIN_INFO)))
		die("not loaded at %s (oncpu-bpfd load)", pin_dir);
	char p_switch[PATH_MAX], p_resume[PATH_MAX];
	snprintf(p_switch, sizeof(p_switch), "%s/%s/switch", pin_dir, ONCPU_BPF_PIN_LINKS);
	snprintf(p_resume, sizeof(p_resume), "%s/%s/resume", pin_dir, ONCPU_BPF_PIN_LINKS);

	if (registered) {
		/* Register the ping-pong threads through this process's liboncpu:
		 * its file must carry the arm uprobe. */
		char file[PATH_MAX];
		if (!mapped_file((uintptr_t)&oncpu_desched_words, file, sizeof(file)))
			die("cannot find the liboncpu file of this program");
		struct oncpu_desched *s = open_provider(false);
		if (attach_file(s, file) != 0)
			die("cannot attach %s", file);
		oncpu_desched__destroy(s);
		setenv("ONCPU_BPF_PIN_DIR", pin_dir, 1);
		setenv("ONCPU_DESCHED_PROVIDER", "bpf", 1);
		if (strcmp(oncpu_desched_provider(), "bpf") != 0)
			die("the bpf provider is not active in this process");
	}

	struct oncpu_noop *noop = oncpu_noop__open_and_load();
	if (!noop || oncpu_noop__attach(noop))
		die("load the no-op program: %s", strerror(errno));
	int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (stats_fd < 0)
		die("BPF_ENABLE_STATS: %s", strerror(errno));

	struct pingpong pp = {.registered = registered, .cpu = sched_getcpu()};
	if (pipe(pp.to_b) || pipe(pp.to_a))
		die("pipe: %s", strerror(errno));
	pin_to(pp.cpu);
	if (registered)
		oncpu_desched_words();
	pthread_t t;
	pthread_create(&t, NULL, pong, &pp);
	/* Warm up, then measure. */
	char c = 1;
	for (int i = 0; i < 1000; i++)
		if (write(pp.to_b[1], &c, 1) != 1 || read(pp.to_a[0], &c, 1) != 1)
			die("ping-pong: %s", strerror(errno));

	struct prog_stats n0, s0, r0 = {0}, n1, s1, r1 = {0};
	int noop_fd = bpf_program__fd(noop->progs.oncpu_noop);
	if (prog_fd_stats(noop_fd, &n0) || link_prog_stats(p_switch, &s0))
		die("read program stats: %s", strerror(errno));
	bool backstop = link_prog_stats(p_resume, &r0) == 0; /* optional */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long rounds = 0;
	do {
		for (int i = 0; i < 1000; i++, rounds++)
			if (write(pp.to_b[1], &c, 1) != 1 || read(pp.to_a[0], &c, 1) != 1)
				die("ping-pong: %s", strerror(errno));
		clock_gettime(CLOCK_MONOTONIC, &t1);
	} while ((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9 <
	         seconds);
	prog_fd_stats(noop_fd, &n1);
	link_prog_stats(p_switch, &s1);
	if (backstop)
		link_prog_stats(p_resume, &r1);
	c = 0;
	if (write(pp.to_b[1], &c, 1) != 1)
		die("ping-pong: %s", strerror(errno));
	pthread_join(t, NULL);
	close(stats_fd);
	oncpu_noop__destroy(noop);

	double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
	uint64_t sw = n1.cnt - n0.cnt;
	double noop_ns = sw ? (double)(n1.ns - n0.ns) / (double)sw : 0;
	double sw_ns = s1.cnt > s0.cnt ? (double)(s1.ns - s0.ns) / (double)(s1.cnt - s0.cnt) : 0;
	double rs_ns = r1.cnt > r0.cnt ? (double)(r1.ns - r0.ns) / (double)(r1.cnt - r0.cnt) : 0;
	printf("ping-pong on CPU %d, %s threads: %ld round trips in %.2f s, %" PRIu64
	       " context switches (%.0f ns per round trip)\n",
	       pp.cpu, registered ? "registered" : "unregistered", rounds, wall, sw,
	       wall * 1e9 / (double)rounds);
	printf("  no-op sched_switch program      %7.1f ns per run (%" PRIu64 " runs)\n", noop_ns,
	       sw);
	printf("  provider sched_switch program   %7.1f ns per run (%" PRIu64 " runs): %+.1f ns\n",
	       sw_ns, s1.cnt - s0.cnt, sw_ns - noop_ns);
	if (backstop)
		printf("  provider rseq_update program    %7.1f ns per run (%" PRIu64 " runs)\n",
		       rs_ns, r1.cnt - r0.cnt);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: oncpu-bpfd [-v] [--pin-dir DIR] COMMAND\n"
	        "  load [--group NAME|GID] [--library FILE]... [--no-attach]\n"
	        "                             load and pin the provider, attach the arm uprobe\n"
	        "                             (default file: %s); registering is for root\n"
	        "                             and, with --group, that group's members\n"
	        "  attach FILE...             attach the arm uprobe to more binary files\n"
	        "  refresh [--prune]          re-attach files that were replaced (upgrades);\n"
	        "                             --prune drops old inodes no process maps\n"
	        "  unload                     detach and unpin everything\n"
	        "  status                     programs, attached files, counters\n"
	        "  cost [--seconds S] [--registered]\n"
	        "                             measure the programs' cost per context switch\n"
	        "                             against a no-op sched_switch program\n"
	        "pin directory: %s (or --pin-dir, or ONCPU_BPF_PIN_DIR)\n",
	        ONCPU_BPFD_DEFAULT_LIBRARY, ONCPU_BPF_PIN_DIR);
}

/* --seconds: a number of seconds, more than 0 and at most an hour. */
static double parse_seconds(const char *arg)
{
	char *end;
	errno = 0;
	double s = strtod(arg, &end);
	if (errno || end == arg || *end || !(s > 0 && s <= 3600))
		die("--seconds %s: not a number of seconds between 0 and 3600", arg);
	return s;
}

int main(int argc, char **argv)
{
	const char *env = getenv("ONCPU_BPF_PIN_DIR");
	if (env && *env)
		pin_dir = env;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-v") == 0)
			verbose = true;
		else if (strcmp(argv[i], "--pin-dir") == 0 && i + 1 < argc)
			pin_dir = argv[++i];
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 64;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 64;
	}
	libbpf_set_print(libbpf_print);
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *cmd = argv[i++];
	char **rest = argv + i;
	int nrest = argc - i;
	/* Options after the command. */
	char *files[256];
	int nfiles = 0;
	bool prune = false, registered = false, no_attach = false;
	const char *group = NULL;
	double seconds = 2.0;
	for (int k = 0; k < nrest; k++) {
		if (strcmp(rest[k], "--pin-dir") == 0 && k + 1 < nrest)
			pin_dir = rest[++k];
		else if (strcmp(rest[k], "--library") == 0 && k + 1 < nrest && nfiles < 256)
			files[nfiles++] = rest[++k];
		else if (strcmp(rest[k], "--group") == 0 && k + 1 < nrest)
			group = rest[++k];
		else if (strcmp(rest[k], "--no-attach") == 0)
			no_attach = true;
		else if (strcmp(rest[k], "--prune") == 0)
			prune = true;
		else if (strcmp(rest[k], "--registered") == 0)
			registered = true;
		else if (strcmp(rest[k], "--seconds") == 0 && k + 1 < nrest)
			seconds = parse_seconds(rest[++k]);
		else if (strcmp(rest[k], "-v") == 0)
			verbose = true;
		else if (rest[k][0] != '-' && nfiles < 256)
			files[nfiles++] = rest[k];
		else {
			usage(stderr);
			return 64;
		}
	}
	/* Every path is pin_dir followed by at most PIN_SUFFIX_MAX bytes: a
	 * longer pin_dir would be cut short, and name another directory. */
	size_t pin_len = strlen(pin_dir);
	if (pin_len + PIN_SUFFIX_MAX >= PATH_MAX)
		die("the pin directory is too long (%zu bytes, at most %d): %.60s...", pin_len,
		    PATH_MAX - 1 - PIN_SUFFIX_MAX, pin_dir);
	if (strcmp(cmd, "load") == 0)
		return cmd_load(files, nfiles, no_attach, group);
	if (strcmp(cmd, "attach") == 0)
		return cmd_attach(files, nfiles);
	if (strcmp(cmd, "refresh") == 0)
		return cmd_refresh(prune);
	if (strcmp(cmd, "unload") == 0)
		return cmd_unload();
	if (strcmp(cmd, "status") == 0)
		return cmd_status();
	if (strcmp(cmd, "cost") == 0)
		return cmd_cost(seconds, registered);
	usage(stderr);
	return 64;
}
