/* What the C benchmarks share: their JSON lines in bench/run.sh's format, a daemon's CPU time,
 * latency samples kept per caller and merged for percentiles, and the closed-loop callers that
 * keep a number of asynchronous calls in flight. */
#ifndef BRUME_BENCH_UTIL_H
#define BRUME_BENCH_UTIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Prints {"bench": bench, "metric": metric, "value": value, "unit": unit} on stdout, flushed. */
void bench_emit(const char *bench, const char *metric, double value, const char *unit);

/* CPU time (user + system) of process pid so far, in microseconds; 0 when it cannot be read. */
double bench_cpu_us(pid_t pid);

/* Adds the CPU time so far (microseconds) of pid's threads whose name starts with thread_prefix
 * to *matching, and of its other threads to *other (QEMU: "CPU " names the vCPU threads). A
 * process that is gone adds nothing. */
void bench_threads_cpu_us(pid_t pid, const char *thread_prefix, double *matching, double *other);

/* The host's busy CPU time so far, all CPUs together (/proc/stat: user, nice, system, irq and
 * softirq; not steal, which another tenant had), in microseconds. */
double bench_host_busy_us(void);

/* Appends the flags of BENCH_WORKER_FLAGS (brume-worker flags split at spaces, e.g.
 * "--tcg-tb-cache 16MiB") to flags, which holds n of at most max - 1 entries; NULL-terminates
 * it and returns the new count. The strings live in a static buffer: call it once. */
size_t bench_worker_flags(const char **flags, size_t n, size_t max);

/* Samples of one figure, one array per caller so that callers record without a lock. */
typedef struct bench_samples {
  size_t callers, max;
  double **v;
  size_t *n;
} bench_samples;

void bench_samples_init(bench_samples *s, size_t callers, size_t max_per_caller);
void bench_samples_free(bench_samples *s);
/* Records value for caller (dropped once its array is full). */
void bench_samples_add(bench_samples *s, size_t caller, double value);
/* Forgets every sample. */
void bench_samples_clear(bench_samples *s);
size_t bench_samples_count(const bench_samples *s);
/* The nearest-rank p-th percentile of every caller's samples together (0 when none). */
double bench_samples_percentile(const bench_samples *s, double p);

/* Closed-loop callers: each keeps one call in flight and, when it completes, reads mode and sends
 * the next call, or (mode is the bench's stop value) decrements running and stops. Completions
 * record their figures only while recording is set. */
typedef struct bench_chains {
  _Atomic int mode;
  _Atomic bool recording;
  _Atomic int running;                  /* callers whose chain has not stopped */
  void (*on_recording)(bool recording); /* may be NULL: called as recording starts and ends */
} bench_chains;

/* Runs n chains in mode m (start(i) sends caller i's first call): 1 s unrecorded, then seconds
 * recorded; then sets stop_mode and waits for every chain to stop. Returns the recorded
 * seconds. */
double bench_chains_run(bench_chains *c, int m, int stop_mode, size_t n, void (*start)(size_t i),
                        double seconds);

#endif
