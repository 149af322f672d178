#include "bench_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"
#include "testutil.h"

void bench_emit(const char *bench, const char *metric, double value, const char *unit) {
  printf("{\"bench\": \"%s\", \"metric\": \"%s\", \"value\": %.2f, \"unit\": \"%s\"}\n", bench,
         metric, value, unit);
  fflush(stdout);
}

/* utime + stime of a /proc/.../stat file, in microseconds; 0 when it cannot be read. */
static double stat_cpu_us(const char *path) {
  char buf[1024];
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* the name before it may hold spaces */
  unsigned long long ut = 0, st = 0;
  if (p == NULL ||
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return 0;
  return (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

double bench_cpu_us(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  return stat_cpu_us(path);
}

void bench_threads_cpu_us(pid_t pid, const char *thread_prefix, double *matching, double *other) {
  char dir[64];
  snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char path[600], comm[64] = "";
    snprintf(path, sizeof(path), "%s/%s/comm", dir, e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue;
    bool named = fgets(comm, sizeof(comm), f) != NULL;
    fclose(f);
    snprintf(path, sizeof(path), "%s/%s/stat", dir, e->d_name);
    bool match = named && strncmp(comm, thread_prefix, strlen(thread_prefix)) == 0;
    *(match ? matching : other) += stat_cpu_us(path);
  }
  closedir(d);
}

double bench_host_busy_us(void) {
  FILE *f = fopen("/proc/stat", "r");
  if (f == NULL) return 0;
  /* cpu  user nice system idle iowait irq softirq steal ... (USER_HZ ticks) */
  unsigned long long v[8] = {0};
  int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
  fclose(f);
  if (got < 8) return 0;
  unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6]; /* not steal: not ours */
  return (double)busy * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

size_t bench_worker_flags(const char **flags, size_t n, size_t max) {
  static char extra[512];
  const char *env = getenv("BENCH_WORKER_FLAGS");
  snprintf(extra, sizeof(extra), "%s", env ? env : "");
  for (char *save = NULL, *t = strtok_r(extra, " ", &save); t && n + 1 < max;
       t = strtok_r(NULL, " ", &save))
    flags[n++] = t;
  flags[n] = NULL;
  return n;
}

void bench_samples_init(bench_samples *s, size_t callers, size_t max_per_caller) {
  s->callers = callers;
  s->max = max_per_caller;
  s->v = brume_xcalloc(callers, sizeof(*s->v));
  s->n = brume_xcalloc(callers, sizeof(*s->n));
  for (size_t i = 0; i < callers; i++) s->v[i] = brume_xcalloc(max_per_caller, sizeof(double));
}

void bench_samples_free(bench_samples *s) {
  for (size_t i = 0; i < s->callers; i++) free(s->v[i]);
  free(s->v);
  free(s->n);
}

void bench_samples_add(bench_samples *s, size_t caller, double value) {
  if (s->n[caller] < s->max) s->v[caller][s->n[caller]++] = value;
}

void bench_samples_clear(bench_samples *s) {
  memset(s->n, 0, s->callers * sizeof(*s->n));
}

size_t bench_samples_count(const bench_samples *s) {
  size_t n = 0;
  for (size_t i = 0; i < s->callers; i++) n += s->n[i];
  return n;
}

double bench_samples_percentile(const bench_samples *s, double p) {
  size_t n = bench_samples_count(s), k = 0;
  double *all = brume_xcalloc(n ? n : 1, sizeof(*all));
  for (size_t i = 0; i < s->callers; i++) {
    memcpy(all + k, s->v[i], s->n[i] * sizeof(double));
    k += s->n[i];
  }
  double v = brume_test_percentile(all, n, p);
  free(all);
  return v;
}

double bench_chains_run(bench_chains *c, int m, int stop_mode, size_t n, void (*start)(size_t i),
                        double seconds) {
  atomic_store(&c->mode, m);
  atomic_store(&c->running, (int)n);
  for (size_t i = 0; i < n; i++) start(i);
  usleep(1000 * 1000);
  double t0 = brume_test_mono_ms();
  if (c->on_recording) c->on_recording(true);
  atomic_store(&c->recording, true);
  usleep((useconds_t)(seconds * 1e6));
  atomic_store(&c->recording, false);
  double elapsed = (brume_test_mono_ms() - t0) / 1000;
  if (c->on_recording) c->on_recording(false);
  atomic_store(&c->mode, stop_mode);
  while (atomic_load(&c->running) > 0) usleep(10 * 1000);
  return elapsed;
}
