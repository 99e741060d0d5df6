/* SPDX-License-Identifier: MIT */
/*
 * bpf_lifecycle.c - the provider's life around a process: loaded but not
 * attached to the process's library, attached, the library file replaced
 * (an upgrade: a uprobe belongs to the old inode), refreshed, and unloaded
 * while registered threads run.
 *
 *   bpf_lifecycle LOADER PIN_DIR LIBRARY
 * LIBRARY is liboncpu's real file; a copy of it in a temporary directory,
 * used by child processes through LD_LIBRARY_PATH, plays the installed
 * library that gets upgraded. PIN_DIR is this test's own.
 */
#define _GNU_SOURCE
#include <sys/stat.h>

#include <oncpu/mutex.h>

#include "bpftest.h"

static const char *loader, *pin, *lib;
static char tmpdir[64];

/* Runs the loader with these arguments; its exit status. */
static int loader_run(const char *a1, const char *a2, const char *a3)
{
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		execl(loader, "oncpu-bpfd", "--pin-dir", pin, a1, a2, a3, (char *)NULL);
		_exit(127);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* In a child using the library copy: 0 when the provider there is bpf. */
static int child_provider(void)
{
	char env[128];
	snprintf(env, sizeof(env), "LD_LIBRARY_PATH=%s", tmpdir);
	int st = test_reexec(env, "probe", NULL);
	CHECK_MSG(WIFEXITED(st), "probe child: %s", test_status_str(st));
	return WEXITSTATUS(st);
}

static int probe_main(void)
{
	/* Which liboncpu file this process runs. */
	FILE *f = fopen("/proc/self/maps", "re");
	char line[1024], file[1024] = "?";
	uintptr_t a = (uintptr_t)&oncpu_desched_provider;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		int off = 0;
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &off) >= 2 && a >= lo &&
		    a < hi) {
			snprintf(file, sizeof(file), "%s", line + off);
			file[strcspn(file, "\n")] = 0;
		}
	}
	if (f)
		fclose(f);
	const char *p = oncpu_desched_provider();
	printf("  child: provider %s, library %s\n", p, file);
	fflush(stdout);
	return strcmp(p, "bpf") == 0 ? 0 : 3;
}

static void copy_lib(const char *to)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", lib, to);
	CHECK(system(cmd) == 0);
}

/* ---- unload while registered threads run ---- */

#define THREADS_PER_CPU 4
static oncpu_mutex_t mu = ONCPU_MUTEX_INIT;
static long counter;
static volatile int stop;
static long per_thread[256];

static void *locker(void *arg)
{
	long i = (long)arg, n = 0;
	while (!stop) {
		oncpu_mutex_lock(&mu);
		long c = counter;
		if ((n & 255) == 0)
			usleep(50); /* a holder that sleeps: waiters must not spin on it */
		counter = c + 1;
		oncpu_mutex_unlock(&mu);
		n++;
	}
	per_thread[i] = n;
	return NULL;
}

static void unload_running(void)
{
	CHECK(loader_run("attach", lib, NULL) == 0);
	setenv("ONCPU_BPF_PIN_DIR", pin, 1);
	setenv("ONCPU_DESCHED_PROVIDER", "bpf", 1);
	CHECK_MSG(strcmp(oncpu_desched_provider(), "bpf") == 0, "provider %s",
	          oncpu_desched_provider());
	int nt = THREADS_PER_CPU * test_allowed_count();
	if (nt > 256)
		nt = 256;
	pthread_t t[256];
	for (long i = 0; i < nt; i++)
		CHECK(pthread_create(&t[i], NULL, locker, (void *)i) == 0);
	usleep(300000);
	long before = __atomic_load_n(&counter, __ATOMIC_RELAXED);
	CHECK_MSG(loader_run("unload", NULL, NULL) == 0, "unload failed");
	usleep(300000);
	/* A thread that arrives now cannot arm: untracked, and still correct. */
	pthread_t late;
	CHECK(pthread_create(&late, NULL, locker, (void *)(long)nt) == 0);
	usleep(300000);
	stop = 1;
	for (int i = 0; i < nt; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	CHECK(pthread_join(late, NULL) == 0);
	long sum = 0;
	for (int i = 0; i <= nt; i++)
		sum += per_thread[i];
	printf("unload while %d threads ran the mutex: %ld lock/unlock before, %ld in all, "
	       "exact: %s\n",
	       nt, before, counter, sum == counter ? "yes" : "NO");
	CHECK_MSG(sum == counter, "counter %ld, threads counted %ld", counter, sum);
	CHECK(counter > before);
	/* This thread's first use comes after the unload: it cannot arm. */
	int st = oncpu_desched_state(oncpu_desched_self());
	printf("a thread registering after the unload: state %d (2: untracked)\n", st);
	CHECK(st == ONCPU_DESCHED_UNTRACKED);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "probe") == 0)
		return probe_main();
	CHECK_MSG(argc == 4, "usage: bpf_lifecycle LOADER PIN_DIR LIBRARY");
	loader = argv[1], pin = argv[2], lib = argv[3];
	if (geteuid() != 0)
		bpftest_skip("the bpf provider tests load BPF programs: run them as root");
	loader_run("unload", NULL, NULL);
	if (loader_run("load", "--no-attach", NULL) != 0) {
		if (getenv("ONCPU_TEST_REQUIRE_BPF") &&
		    strcmp(getenv("ONCPU_TEST_REQUIRE_BPF"), "1") == 0)
			CHECK(!"oncpu-bpfd load failed");
		bpftest_skip("oncpu-bpfd could not load the provider here (see above)");
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/oncpu-bpf-life-XXXXXX");
	CHECK(mkdtemp(tmpdir) != NULL);
	char so[128], so_new[128];
	snprintf(so, sizeof(so), "%s/liboncpu.so.0", tmpdir);
	snprintf(so_new, sizeof(so_new), "%s/liboncpu.so.0.new", tmpdir);
	copy_lib(so);
	setenv("ONCPU_BPF_PIN_DIR", pin, 1);
	setenv("ONCPU_DESCHED_PROVIDER", "bpf", 1);

	printf("1. loaded, the library file not attached: the provider must refuse\n");
	CHECK_MSG(child_provider() == 3, "provider bpf without an arm uprobe");

	printf("2. attached\n");
	CHECK(loader_run("attach", so, NULL) == 0);
	CHECK_MSG(child_provider() == 0, "provider not bpf once attached");

	printf("3. the library file replaced (a new inode, as an upgrade does)\n");
	copy_lib(so_new);
	CHECK(rename(so_new, so) == 0);
	CHECK_MSG(child_provider() == 3, "provider bpf with a replaced library file");
	CHECK_MSG(loader_run("status", NULL, NULL) == 2, "status does not report the stale file");

	printf("4. oncpu-bpfd refresh (re-attaches the new inode), then refresh --prune\n");
	CHECK(loader_run("refresh", NULL, NULL) == 0);
	CHECK_MSG(child_provider() == 0, "provider not bpf after refresh");
	CHECK(loader_run("refresh", "--prune", NULL) == 0);
	CHECK_MSG(loader_run("status", NULL, NULL) == 0, "stale entries after --prune");

	printf("5. unload while registered threads run\n");
	unload_running();

	unlink(so);
	rmdir(tmpdir);
	printf("ok\n");
	return 0;
}
