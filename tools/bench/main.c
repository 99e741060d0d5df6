/* SPDX-License-Identifier: MIT */
/*
 * oncpu-bench - measures liboncpu's operations side by side with the usual
 * alternatives (thread-local, shared atomic, getcpu + atomic, ...).
 *
 * Method, per module and thread count (see bench.h for the case interface):
 *   1. calibrate each case so that one run lasts about --duration seconds;
 *   2. repeat --reps times, round-robin over the cases of the module (each
 *      repetition starting at the next case), so that the cases compared in
 *      a ratio run side by side under the same machine conditions;
 *   3. report the median ns/op, where one run's ns/op is
 *      wall time / (iterations per thread * threads), and ratios as the
 *      median of the per-repetition ratios (paired, so slow drifts of a
 *      shared machine cancel out); beside it the median CPU time per op
 *      (the CPU time of the case's threads only / (iterations * threads))
 *      and, for cases that record it, the median of the runs' 99th
 *      percentiles of the time to acquire a lock.
 *
 * Data that every thread of a case touches on every op comes from
 * bench_alloc_shared() (layout.c): the same place, relative to the worker
 * threads' stacks, in every process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include <oncpu.h>

#include "bench.h"

/* Modules, in report order. Weak: a module that is not linked in is skipped. */
extern const struct bench_case bench_counter[] __attribute__((weak));
extern const struct bench_case bench_cpu[] __attribute__((weak));
extern const struct bench_case bench_stack[] __attribute__((weak));
extern const struct bench_case bench_ring[] __attribute__((weak));
extern const struct bench_case bench_cache[] __attribute__((weak));
extern const struct bench_case bench_mutex[] __attribute__((weak));
extern const struct bench_case bench_mutex_long[] __attribute__((weak));
extern const struct bench_case bench_mutex_mixed[] __attribute__((weak));
extern const struct bench_case bench_mutex_hog[] __attribute__((weak));
extern const struct bench_case bench_resched[] __attribute__((weak));

static const struct module {
	const char *name;
	const struct bench_case *cases;
} modules[] = {
    {"counter", bench_counter},       {"cpu", bench_cpu},
    {"stack", bench_stack},           {"ring", bench_ring},
    {"cache", bench_cache},           {"mutex", bench_mutex},
    {"mutex_long", bench_mutex_long}, {"mutex_mixed", bench_mutex_mixed},
    {"mutex_hog", bench_mutex_hog},   {"resched", bench_resched},
};
#define NMODULES (sizeof(modules) / sizeof(modules[0]))

/*
 * The targets of issues 2 and 11, checked on every run that measures both
 * sides: ns(a) / ns(b) (or the CPU ns per op) at the given thread count
 * must be <= max (or >= min).
 */
enum target_threads { AT_1, AT_CPUS, AT_4X_CPUS };
/* Issue 11: in every mutex family, oncpu no slower than either glibc mutex. */
/* clang-format off */
#define MUTEX_NOT_SLOWER(family, at)                                    \
	{family ".oncpu", family ".pthread", at, false, 0, 1.0},        \
	{family ".oncpu", family ".pthread_adaptive", at, false, 0, 1.0}
/* clang-format on */
static const struct target {
	const char *a, *b;
	enum target_threads at;
	bool cpu; /* compare CPU ns per op instead of ns per op */
	double min, max;
} targets[] = {
    {"counter.oncpu", "counter.tls", AT_1, false, 0, 1.3},
    {"counter.atomic", "counter.oncpu", AT_CPUS, false, 5.0, 0},
    MUTEX_NOT_SLOWER("mutex", AT_CPUS),
    MUTEX_NOT_SLOWER("mutex", AT_4X_CPUS),
    MUTEX_NOT_SLOWER("mutex_long", AT_CPUS),
    MUTEX_NOT_SLOWER("mutex_long", AT_4X_CPUS),
    MUTEX_NOT_SLOWER("mutex_mixed", AT_CPUS),
    MUTEX_NOT_SLOWER("mutex_mixed", AT_4X_CPUS),
    MUTEX_NOT_SLOWER("mutex_hog", AT_CPUS),
    MUTEX_NOT_SLOWER("mutex_hog", AT_4X_CPUS),
    {"mutex_long.oncpu", "mutex_long.bound", AT_CPUS, false, 0, 1.15},
    {"mutex_long.oncpu_untracked", "mutex_long.oncpu", AT_CPUS, false, 1.5, 0},
    {"mutex_mixed.pthread", "mutex_mixed.oncpu", AT_4X_CPUS, false, 1.3, 0},
    {"mutex_mixed.pthread_adaptive", "mutex_mixed.oncpu", AT_4X_CPUS, false, 1.3, 0},
    {"mutex_mixed.oncpu_untracked", "mutex_mixed.oncpu", AT_4X_CPUS, false, 1.3, 0},
    {"mutex_mixed.oncpu", "mutex_mixed.pthread_adaptive", AT_4X_CPUS, true, 0, 1.0},
};

#define MAX_REPS          101
#define MAX_THREADS       4096
#define MAX_FILTERS       32
#define MAX_THREAD_COUNTS 16

static struct {
	bool json, list;
	double duration; /* seconds per run */
	long iters;      /* per thread; 0: calibrate */
	int reps;
	int nfilters;
	const char *filters[MAX_FILTERS];
	int nthreads; /* --threads override */
	int threads[MAX_THREAD_COUNTS];
	int cpus; /* CPUs this process may run on */
} opt = {.duration = 0.2, .reps = 5};

enum status { ST_OK, ST_SKIPPED, ST_FAILED };

struct result {
	const struct bench_case *bc;
	int threads;
	long iters;
	enum status status;
	int nreps;
	double ns[MAX_REPS];     /* per repetition */
	double cpu_ns[MAX_REPS]; /* CPU ns per op, per repetition */
	double p99[MAX_REPS];    /* acquire p99 ns per repetition; < 0: none */
	double share[MAX_REPS];  /* struct run's share, per repetition */
	double best_share;       /* the highest share seen for this case */
	double median, min, max, median_share, median_cpu_ns;
	double median_p99; /* < 0: the case records no acquire times */
	int repeated;      /* runs measured again because they were disturbed */
	double ratio;      /* vs the first measured case of its group; 0 if none */
	const char *baseline;
	char *info;
};

static struct result *results;
static int nresults, capresults;
static bool busy_at_start; /* other processes kept the CPUs busy */

/*
 * A run whose threads got less than DISTURBED times the CPU time that the
 * best run of the same case got was disturbed by other processes (a shared
 * machine): it is measured again, at most MAX_REPEATS times per repetition.
 * Only where some run got the CPUs (share >= UNDISTURBED): on a machine
 * that stays overloaded, repeating would only make the benchmark longer.
 */
#define DISTURBED   0.85
#define UNDISTURBED 0.8
#define MAX_REPEATS 3

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: oncpu-bench [options]\n"
	        "Measure liboncpu's operations side by side with their alternatives, at 1\n"
	        "thread and at one thread per CPU, and print ns/op and ratios.\n"
	        "\n"
	        "  -j, --json              print {\"results\":[{\"name\":..., \"threads\":...,\n"
	        "                          \"ns_per_op\":...}, ...]} instead of the table\n"
	        "  -f, --filter PREFIX     run only the cases whose name starts with PREFIX\n"
	        "                          (repeat, or separate with commas, for several)\n"
	        "  -d, --duration SECONDS  target length of one run (default 0.2)\n"
	        "  -i, --iters N           fixed iterations per thread (no calibration)\n"
	        "  -r, --reps N            repetitions per case; the median is reported\n"
	        "                          (default 5, at most %d)\n"
	        "  -t, --threads N[,N...]  run every case at these thread counts only\n"
	        "  -l, --list              list the cases and exit\n"
	        "  -h, --help              show this help and exit\n",
	        MAX_REPS);
}

static void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "oncpu-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(stderr);
	exit(2);
}

static long parse_long(const char *s, long lo, long hi, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		usage_error("bad %s '%s'", what, s);
	return v;
}

static void parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"filter", required_argument, NULL, 'f'},
	    {"duration", required_argument, NULL, 'd'},
	    {"iters", required_argument, NULL, 'i'},
	    {"reps", required_argument, NULL, 'r'},
	    {"threads", required_argument, NULL, 't'},
	    {"list", no_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":jf:d:i:r:t:lh", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			opt.json = true;
			break;
		case 'l':
			opt.list = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'f': {
			char *list = strdup(optarg), *save = NULL;
			for (char *p = strtok_r(list, ",", &save); p;
			     p = strtok_r(NULL, ",", &save)) {
				if (opt.nfilters == MAX_FILTERS)
					usage_error("too many filters at '%s'", p);
				opt.filters[opt.nfilters++] = p;
			}
			if (opt.nfilters == 0)
				usage_error("empty filter '%s'", optarg);
			break;
		}
		case 'd': {
			char *end;
			errno = 0;
			opt.duration = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(opt.duration >= 0.001) ||
			    opt.duration > 60)
				usage_error("bad duration '%s' (seconds, 0.001 to 60)", optarg);
			break;
		}
		case 'i':
			opt.iters = parse_long(optarg, 1, 1L << 40, "iteration count");
			break;
		case 'r':
			opt.reps = (int)parse_long(optarg, 1, MAX_REPS, "repetition count");
			break;
		case 't': {
			char *list = strdup(optarg), *save = NULL;
			opt.nthreads = 0;
			for (char *p = strtok_r(list, ",", &save); p;
			     p = strtok_r(NULL, ",", &save)) {
				if (opt.nthreads == MAX_THREAD_COUNTS)
					usage_error("too many thread counts in '%s'", optarg);
				opt.threads[opt.nthreads++] =
				    (int)parse_long(p, 1, MAX_THREADS, "thread count");
			}
			if (opt.nthreads == 0)
				usage_error("bad thread count '%s'", optarg);
			free(list);
			break;
		}
		case ':':
			usage_error("option '%s' needs an argument", argv[optind - 1]);
		default:
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
}

static bool selected(const char *name)
{
	if (opt.nfilters == 0)
		return true;
	for (int i = 0; i < opt.nfilters; i++)
		if (strncmp(name, opt.filters[i], strlen(opt.filters[i])) == 0)
			return true;
	return false;
}

/* The thread counts a case runs at, ascending; returns how many. */
static int case_thread_counts(const struct bench_case *bc, int out[MAX_THREAD_COUNTS])
{
	int n = 0;
	if (opt.nthreads) {
		for (int i = 0; i < opt.nthreads; i++)
			out[n++] = opt.threads[i];
		return n;
	}
	switch (bc->threads) {
	case BENCH_THREADS_CPUS_AND_4X:
		out[n++] = opt.cpus;
		out[n++] = 4 * opt.cpus;
		break;
	case BENCH_THREADS_CPUS:
		out[n++] = opt.cpus;
		break;
	case BENCH_THREADS_1_AND_CPUS:
	default:
		out[n++] = 1;
		if (opt.cpus > 1)
			out[n++] = opt.cpus;
		break;
	}
	return n;
}

static double clock_seconds(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now(void)
{
	return clock_seconds(CLOCK_MONOTONIC);
}

struct worker {
	pthread_t thread;
	const struct bench_case *bc;
	void *ctx;
	int tid;
	long iters;
	pthread_barrier_t *start;
	double t0, t1; /* wall clock */
	double cpu;    /* CPU time the thread got during its run */
};

static struct worker workers[MAX_THREADS];

/* The acquire times recorded by one thread in the current run. */
static struct reservoir {
	uint64_t *kept; /* BENCH_ACQUIRE_SAMPLES, allocated at the first record */
	long seen;      /* records this run (the first ones fill `kept`) */
	uint64_t rng;   /* xorshift64 state for the replacement choice */
} reservoirs[MAX_THREADS];

void bench_record_acquire(int tid, uint64_t ns)
{
	struct reservoir *r = &reservoirs[tid];
	if (!r->kept && !(r->kept = malloc(sizeof(*r->kept) * BENCH_ACQUIRE_SAMPLES)))
		return; /* no memory: the run reports fewer samples */
	long slot = r->seen++;
	if (slot >= BENCH_ACQUIRE_SAMPLES) {
		/* Algorithm R: the n-th record replaces a kept one with
		 * probability BENCH_ACQUIRE_SAMPLES / n. */
		r->rng ^= r->rng << 13;
		r->rng ^= r->rng >> 7;
		r->rng ^= r->rng << 17;
		slot = (long)(r->rng % (uint64_t)r->seen);
		if (slot >= BENCH_ACQUIRE_SAMPLES)
			return;
	}
	r->kept[slot] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static size_t reservoir_kept(const struct reservoir *r)
{
	return (size_t)(r->seen < BENCH_ACQUIRE_SAMPLES ? r->seen : BENCH_ACQUIRE_SAMPLES);
}

/* The 99th percentile of the acquire times the run's threads kept; -1 if none. */
static double acquire_p99(int threads)
{
	size_t n = 0;
	for (int t = 0; t < threads; t++)
		n += reservoir_kept(&reservoirs[t]);
	uint64_t *all = n ? malloc(sizeof(*all) * n) : NULL;
	if (!all)
		return -1;
	size_t k = 0;
	for (int t = 0; t < threads; t++) {
		memcpy(all + k, reservoirs[t].kept, sizeof(*all) * reservoir_kept(&reservoirs[t]));
		k += reservoir_kept(&reservoirs[t]);
	}
	qsort(all, n, sizeof(*all), cmp_u64);
	double p = (double)all[(size_t)ceil(0.99 * (double)n) - 1];
	free(all);
	return p;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	/* Register outside the timed part; failure means fallback mode, which
	 * every case must handle (the header says which mode runs). */
	(void)oncpu_thread_init();
	pthread_barrier_wait(w->start);
	double c0 = clock_seconds(CLOCK_THREAD_CPUTIME_ID);
	w->t0 = now();
	w->bc->run(w->ctx, w->tid, w->iters);
	w->t1 = now();
	w->cpu = clock_seconds(CLOCK_THREAD_CPUTIME_ID) - c0;
	return NULL;
}

/* What one measurement gives. */
struct run {
	double seconds; /* wall time from the first thread's start to the last's end */
	/* CPU time the threads got / (wall time x the CPUs they could use):
	 * near 1 unless the case blocks or other processes took the CPUs. */
	double share;
	double cpu_seconds; /* CPU time the case's threads got, together */
	double acquire_p99; /* ns; -1 when the case recorded no acquire times */
};

/*
 * One measurement: setup, `threads` threads doing `iters` each, teardown.
 * `info`, when not NULL, receives a copy of the case's annotation.
 */
static enum status measure(const struct bench_case *bc, int threads, long iters, struct run *run,
                           char **info)
{
	pthread_barrier_t start;
	void *ctx = bc->setup(threads);
	if (!ctx)
		return ST_SKIPPED;
	pthread_barrier_init(&start, NULL, (unsigned)threads);
	for (int t = 0; t < threads; t++) {
		workers[t] = (struct worker){
		    .bc = bc, .ctx = ctx, .tid = t, .iters = iters, .start = &start};
		reservoirs[t].seen = 0;
		reservoirs[t].rng = 0x9e3779b97f4a7c15u * (uint64_t)(t + 1);
		int err = pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]);
		if (err) {
			fprintf(stderr, "oncpu-bench: %s: cannot create thread %d of %d: %s\n",
			        bc->name, t + 1, threads, strerror(err));
			exit(1); /* threads already waiting on the barrier cannot be recalled */
		}
	}
	double t0 = 0, t1 = 0, cpu = 0;
	for (int t = 0; t < threads; t++) {
		pthread_join(workers[t].thread, NULL);
		if (t == 0 || workers[t].t0 < t0)
			t0 = workers[t].t0;
		if (t == 0 || workers[t].t1 > t1)
			t1 = workers[t].t1;
		cpu += workers[t].cpu;
	}
	pthread_barrier_destroy(&start);
	run->seconds = t1 - t0;
	run->cpu_seconds = cpu;
	run->acquire_p99 = acquire_p99(threads);
	run->share =
	    run->seconds > 0 ? cpu / (run->seconds * (threads < opt.cpus ? threads : opt.cpus)) : 1;
	if (info && bc->info) {
		const char *s = bc->info(ctx);
		*info = s ? strdup(s) : NULL;
	}
	if (bc->teardown && bc->teardown(ctx) != 0) {
		fprintf(stderr, "oncpu-bench: %s with %d threads: the check after the run failed\n",
		        bc->name, threads);
		return ST_FAILED;
	}
	return ST_OK;
}

/* Iterations per thread so that one run lasts about opt.duration. */
static enum status calibrate(const struct bench_case *bc, int threads, long *iters, char **info)
{
	long n = 1000;
	double t;
	for (;;) {
		struct run run;
		enum status st = measure(bc, threads, n, &run, *info ? NULL : info);
		if (st != ST_OK)
			return st;
		t = run.seconds;
		if (t >= opt.duration / 8 || n >= (1L << 40))
			break;
		n *= t < opt.duration / 1000 ? 16 : 2;
	}
	double want = (double)n * opt.duration / (t > 1e-9 ? t : 1e-9);
	*iters = want < 1 ? 1 : want > (double)(1L << 40) ? (1L << 40) : (long)want;
	return ST_OK;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
	double s[MAX_REPS];
	memcpy(s, v, sizeof(double) * (size_t)n);
	qsort(s, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* Median of the per-repetition ratios a/b of ns per op (or CPU ns per op):
 * both measured side by side. */
static double paired_ratio(const struct result *a, const struct result *b, bool cpu)
{
	double r[MAX_REPS];
	int n = a->nreps < b->nreps ? a->nreps : b->nreps;
	if (n == 0)
		return 0;
	for (int i = 0; i < n; i++)
		r[i] = cpu ? a->cpu_ns[i] / b->cpu_ns[i] : a->ns[i] / b->ns[i];
	return median(r, n);
}

static struct result *new_result(const struct bench_case *bc, int threads)
{
	if (nresults == capresults) {
		capresults = capresults ? 2 * capresults : 64;
		results = realloc(results, sizeof(*results) * (size_t)capresults);
		if (!results) {
			perror("oncpu-bench");
			exit(1);
		}
	}
	struct result *r = &results[nresults++];
	memset(r, 0, sizeof(*r));
	r->bc = bc;
	r->threads = threads;
	return r;
}

static const char *registration_name(enum oncpu_registration reg)
{
	switch (reg) {
	case ONCPU_REG_LIBC:
		return "libc (the C library's rseq area)";
	case ONCPU_REG_OWN:
		return "own (oncpu's own rseq area)";
	default:
		return "none (fallback: atomic instructions)";
	}
}

static void print_header(void)
{
	struct utsname u;
	if (uname(&u) != 0)
		strcpy(u.release, "?");
	enum oncpu_registration reg = oncpu_thread_registration();
	printf("oncpu-bench: liboncpu %s, Linux %s, %d CPUs to run on, %d possible\n",
	       oncpu_version(), u.release, opt.cpus, oncpu_cpu_count());
	printf("registration: %s; rseq active: %s; vcpu dense: %s\n", registration_name(reg),
	       oncpu_thread_rseq_active() ? "yes" : "no",
	       oncpu_vcpu_dense() ? "yes (mm_cid)" : "no (vcpu = cpu)");
	if (opt.iters)
		printf("method: median of %d interleaved runs of %ld iterations per thread;\n",
		       opt.reps, opt.iters);
	else
		printf("method: median of %d interleaved runs of ~%.2f s each;\n", opt.reps,
		       opt.duration);
	printf("        ns/op = wall time / (iterations x threads); \"vs first\" = ns/op relative\n"
	       "        to the module's first case at the same thread count (median of the\n"
	       "        per-run ratios); spread = (max - min) / median over the runs; cpu = CPU\n"
	       "        time the threads got / (wall time x CPUs they could use): below ~90%%\n"
	       "        other processes took CPU time (such runs are measured again, up to %d\n"
	       "        times); cpu ns/op = CPU time of the case's threads / (iterations x\n"
	       "        threads); p99 acq = 99th percentile of the ns to acquire the lock\n"
	       "        (cases that sample it)\n",
	       MAX_REPEATS);
	double load[3];
	if (getloadavg(load, 3) == 3) {
		printf("load average at start: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
		busy_at_start = load[0] > 0.5 * opt.cpus;
	}
	printf("\n%-28s %7s %10s %9s %7s %5s %10s %9s  %s\n", "case", "threads", "ns/op",
	       "vs first", "spread", "cpu", "cpu ns/op", "p99 acq", "info");
	fflush(stdout);
}

static void print_row(const struct result *r)
{
	if (r->status == ST_SKIPPED) {
		printf("%-28s %7d %10s\n", r->bc->name, r->threads, "skipped");
	} else if (r->status == ST_FAILED) {
		printf("%-28s %7d %10s\n", r->bc->name, r->threads, "FAILED");
	} else {
		char ratio[32] = "", p99[32] = "";
		if (r->ratio > 0)
			snprintf(ratio, sizeof(ratio), "%.2fx", r->ratio);
		if (r->median_p99 >= 0)
			snprintf(p99, sizeof(p99), "%.0f", r->median_p99);
		printf("%-28s %7d %10.2f %9s %6.0f%% %4.0f%% %10.2f %9s  %s\n", r->bc->name,
		       r->threads, r->median, ratio,
		       r->median > 0 ? 100 * (r->max - r->min) / r->median : 0,
		       100 * r->median_share, r->median_cpu_ns, p99, r->info ? r->info : "");
	}
}

/* Measure every selected case of one module that runs at `threads`. */
static void run_group(const struct module *m, int threads)
{
	/* new_result() may move `results`: pointers are taken after the last. */
	int base = nresults, n = 0;
	for (const struct bench_case *bc = m->cases; bc->name && n < 64; bc++) {
		int counts[MAX_THREAD_COUNTS], k = case_thread_counts(bc, counts);
		if (!selected(bc->name))
			continue;
		for (int i = 0; i < k; i++)
			if (counts[i] == threads) {
				new_result(bc, threads);
				n++;
				break;
			}
	}
	if (n == 0)
		return;
	struct result *group[64];
	for (int i = 0; i < n; i++)
		group[i] = &results[base + i];
	for (int i = 0; i < n; i++) {
		struct result *r = group[i];
		r->iters = opt.iters;
		if (!opt.iters)
			r->status = calibrate(r->bc, threads, &r->iters, &r->info);
	}
	for (int rep = 0; rep < opt.reps; rep++) {
		for (int j = 0; j < n; j++) {
			struct result *r = group[(rep + j) % n];
			struct run run;
			for (int attempt = 0; r->status == ST_OK; attempt++) {
				r->status = measure(r->bc, threads, r->iters, &run,
				                    r->info ? NULL : &r->info);
				if (run.share > r->best_share)
					r->best_share = run.share;
				if (attempt == MAX_REPEATS || r->best_share < UNDISTURBED ||
				    run.share >= DISTURBED * r->best_share)
					break;
				r->repeated++;
			}
			if (r->status != ST_OK)
				continue;
			double ops = (double)r->iters * threads;
			r->share[r->nreps] = run.share;
			r->cpu_ns[r->nreps] = run.cpu_seconds * 1e9 / ops;
			r->p99[r->nreps] = run.acquire_p99;
			r->ns[r->nreps++] = run.seconds * 1e9 / ops;
		}
	}
	struct result *first = NULL;
	for (int i = 0; i < n; i++) {
		struct result *r = group[i];
		if (r->status != ST_OK)
			continue;
		r->median = median(r->ns, r->nreps);
		r->median_share = median(r->share, r->nreps);
		r->median_cpu_ns = median(r->cpu_ns, r->nreps);
		r->median_p99 = median(r->p99, r->nreps); /* all or none recorded */
		r->min = r->max = r->ns[0];
		for (int k = 1; k < r->nreps; k++) {
			r->min = fmin(r->min, r->ns[k]);
			r->max = fmax(r->max, r->ns[k]);
		}
		if (!first)
			first = r;
		r->ratio = paired_ratio(r, first, false);
		r->baseline = first->bc->name;
	}
	if (!opt.json) {
		for (int i = 0; i < n; i++)
			print_row(group[i]);
		fflush(stdout);
	}
}

static const struct result *find_result(const char *name, int threads)
{
	for (int i = 0; i < nresults; i++)
		if (results[i].status == ST_OK && results[i].threads == threads &&
		    strcmp(results[i].bc->name, name) == 0)
			return &results[i];
	return NULL;
}

static void print_targets(void)
{
	bool any = false;
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		const struct target *t = &targets[i];
		int threads = t->at == AT_1 ? 1 : t->at == AT_CPUS ? opt.cpus : 4 * opt.cpus;
		const struct result *a = find_result(t->a, threads),
		                    *b = find_result(t->b, threads);
		if (!a || !b)
			continue;
		if (!any)
			printf("\nratios measured side by side (median of per-run ratios):\n");
		any = true;
		double r = paired_ratio(a, b, t->cpu);
		bool met = t->max > 0 ? r <= t->max : r >= t->min;
		printf("  %s%s / %s, %d thread%s: %.2fx (target %s %.2fx: %s)\n",
		       t->cpu ? "cpu ns/op " : "", t->a, t->b, threads, threads == 1 ? "" : "s", r,
		       t->max > 0 ? "<=" : ">=", t->max > 0 ? t->max : t->min,
		       met ? "met" : "MISSED");
	}
	int repeated = 0, busy = 0, low = 0;
	for (int i = 0; i < nresults; i++) {
		bool below = results[i].status == ST_OK && results[i].median_share < 0.9;
		repeated += results[i].repeated;
		busy += below && results[i].best_share >= 0.9;
		low += below;
	}
	if (repeated)
		printf("\n%d runs were measured again: other processes took CPU time from them\n",
		       repeated);
	if (busy)
		printf("warning: %d results come from runs that other processes slowed down (cpu"
		       " below 90%%)\n",
		       busy);
	/* A busy machine matters only where our threads did not get the CPUs
	 * (under a real-time policy, for example, they do). */
	if (busy || (busy_at_start && low))
		printf("warning: the machine was busy: ns/op are too high and ratios may be off;"
		       " measure\nagain on an idle machine\n");
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static bool reserved_key(const char *k, size_t len)
{
	static const char *const keys[] = {
	    "name",     "threads", "ns_per_op",     "ns_per_op_min", "ns_per_op_max",
	    "reps",     "iters",   "baseline",      "ratio",         "cpu_share",
	    "repeated", "info",    "cpu_ns_per_op", "acquire_p99_ns"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strlen(keys[i]) == len && strncmp(keys[i], k, len) == 0)
			return true;
	return false;
}

/* "provider=bpf mode=x" -> ,"provider":"bpf","mode":"x"; other words -> "info". */
static void json_info(const char *info)
{
	char *copy = strdup(info), *save = NULL, *other = calloc(1, strlen(info) + 1);
	for (char *w = strtok_r(copy, " ,;", &save); w; w = strtok_r(NULL, " ,;", &save)) {
		char *eq = strchr(w, '=');
		if (eq && eq != w && !reserved_key(w, (size_t)(eq - w))) {
			*eq = 0;
			printf(",");
			json_string(w);
			printf(":");
			json_string(eq + 1);
		} else {
			if (*other)
				strcat(other, " ");
			strcat(other, w);
		}
	}
	if (*other) {
		printf(",\"info\":");
		json_string(other);
	}
	free(copy);
	free(other);
}

static void print_json(void)
{
	bool first = true;
	printf("{\"results\":[");
	for (int i = 0; i < nresults; i++) {
		const struct result *r = &results[i];
		if (r->status != ST_OK)
			continue;
		printf("%s\n{\"name\":", first ? "" : ",");
		first = false;
		json_string(r->bc->name);
		printf(",\"threads\":%d,\"ns_per_op\":%.3f,\"ns_per_op_min\":%.3f,"
		       "\"ns_per_op_max\":%.3f,\"reps\":%d,\"iters\":%ld,\"cpu_share\":%.3f,"
		       "\"repeated\":%d,\"cpu_ns_per_op\":%.3f",
		       r->threads, r->median, r->min, r->max, r->nreps, r->iters, r->median_share,
		       r->repeated, r->median_cpu_ns);
		if (r->median_p99 >= 0)
			printf(",\"acquire_p99_ns\":%.0f", r->median_p99);
		if (r->baseline) {
			printf(",\"baseline\":");
			json_string(r->baseline);
			printf(",\"ratio\":%.4f", r->ratio);
		}
		if (r->info)
			json_info(r->info);
		printf("}");
	}
	printf("\n]}\n");
}

static void list_cases(void)
{
	for (size_t m = 0; m < NMODULES; m++) {
		if (!modules[m].cases)
			continue;
		for (const struct bench_case *bc = modules[m].cases; bc->name; bc++) {
			int counts[MAX_THREAD_COUNTS], k = case_thread_counts(bc, counts);
			if (!selected(bc->name))
				continue;
			printf("%-28s threads", bc->name);
			for (int i = 0; i < k; i++)
				printf("%s%d", i ? "," : " ", counts[i]);
			printf("\n");
		}
	}
}

int main(int argc, char **argv)
{
	parse_options(argc, argv);
	bench_layout_init();

	cpu_set_t set;
	opt.cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
	if (opt.cpus < 1)
		opt.cpus = 1;
	if (4 * opt.cpus > MAX_THREADS)
		opt.cpus = MAX_THREADS / 4;

	if (opt.list) {
		list_cases();
		return 0;
	}
	if (!opt.json)
		print_header();
	(void)oncpu_thread_init();

	bool ran = false;
	for (size_t m = 0; m < NMODULES; m++) {
		if (!modules[m].cases)
			continue;
		/* Every thread count any case of the module asks for, ascending. */
		int counts[MAX_THREAD_COUNTS * 8], ncounts = 0;
		for (const struct bench_case *bc = modules[m].cases; bc->name; bc++) {
			int c[MAX_THREAD_COUNTS], k = case_thread_counts(bc, c);
			if (!selected(bc->name))
				continue;
			for (int i = 0; i < k; i++) {
				int j = 0;
				while (j < ncounts && counts[j] != c[i])
					j++;
				if (j == ncounts &&
				    ncounts < (int)(sizeof(counts) / sizeof(counts[0])))
					counts[ncounts++] = c[i];
			}
		}
		for (int i = 1; i < ncounts; i++)
			for (int j = i; j > 0 && counts[j - 1] > counts[j]; j--) {
				int x = counts[j];
				counts[j] = counts[j - 1];
				counts[j - 1] = x;
			}
		for (int i = 0; i < ncounts; i++) {
			run_group(&modules[m], counts[i]);
			ran = true;
		}
	}
	if (!ran)
		fprintf(stderr, "oncpu-bench: no case matches the filter\n");

	if (opt.json)
		print_json();
	else
		print_targets();

	int status = 0;
	for (int i = 0; i < nresults; i++)
		if (results[i].status == ST_FAILED)
			status = 1;
	return status;
}
