#include "testutil.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

int brume_test_run(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  int rc = system(cmd);
  if (rc != 0) fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
  if (rc == -1 || !WIFEXITED(rc)) return -1;
  return WEXITSTATUS(rc);
}

uint8_t *brume_test_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  long n = -1;
  if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
  if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return NULL;
  }
  uint8_t *data = malloc((size_t)n + 1);
  if (data == NULL || fread(data, 1, (size_t)n, f) != (size_t)n) {
    free(data);
    fclose(f);
    return NULL;
  }
  fclose(f);
  data[n] = 0;
  *len = (size_t)n;
  return data;
}

char *brume_test_last_line(const char *cmd) {
  FILE *p = popen(cmd, "r");
  if (p == NULL) return NULL;
  char line[1024], last[1024] = "";
  while (fgets(line, sizeof(line), p)) snprintf(last, sizeof(last), "%s", line);
  if (pclose(p) != 0 || last[0] == '\0') return NULL;
  last[strcspn(last, "\n")] = '\0';
  return strdup(last);
}

int brume_test_count_files(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

void brume_test_dump_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return;
  char line[2048];
  fprintf(stderr, "---- %s\n", path);
  while (fgets(line, sizeof(line), f)) fputs(line, stderr);
  fclose(f);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double brume_test_percentile(double *values, size_t n, double p) {
  if (n == 0) return 0;
  qsort(values, n, sizeof(values[0]), cmp_double);
  /* Nearest rank: the smallest value with at least p% of the values at or below it. */
  double r = p * (double)n / 100.0;
  size_t rank = r <= 0 ? 1 : (size_t)r;
  if ((double)rank < r) rank++;
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return values[rank - 1];
}

double brume_test_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

int64_t brume_test_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int brume_test_zip_bootstrap(const char *workdir, const char *bootstrap_src, const char *zip) {
  return brume_test_run(
      "mkdir -p %s/rt && cp %s %s/rt/bootstrap && chmod 755 %s/rt/bootstrap && cd %s/rt && "
      "zip -q -r %s .",
      workdir, bootstrap_src, workdir, workdir, workdir, zip);
}

int brume_test_guest_image(const char *guest_dir, const char *init_bin, char **kernel,
                           char **initrd) {
  char cmd[4096];
  *initrd = NULL;
  snprintf(cmd, sizeof(cmd), "%s/build-kernel.sh", guest_dir);
  *kernel = brume_test_last_line(cmd);
  if (*kernel == NULL) return -1;
  snprintf(cmd, sizeof(cmd), "%s/build-initramfs.sh %s", guest_dir, init_bin);
  *initrd = brume_test_last_line(cmd);
  return *initrd ? 0 : -1;
}

long long brume_test_metric(int port, const char *name) {
  /* name may hold a series' labels (name{a="b"}): its quotes and backslashes are escaped for
   * the awk string literals below. */
  char quoted[256];
  size_t k = 0;
  for (const char *c = name; *c && k + 2 < sizeof(quoted); c++) {
    if (*c == '"' || *c == '\\') quoted[k++] = '\\';
    quoted[k++] = *c;
  }
  quoted[k] = '\0';
  name = quoted;
  char cmd[768];
  /* The sum of the metric's series (any labels), or nothing when it has none; %.0f, not %d,
   * which awk clamps to 2^31 - 1 (a byte count is larger). */
  snprintf(cmd, sizeof(cmd),
           "curl -sf --max-time 5 http://127.0.0.1:%d/metrics | "
           "awk '$1 == \"%s\" || index($1, \"%s{\") == 1 {n += $NF; seen = 1} "
           "END {if (seen) printf \"%%.0f\\n\", n}'",
           port, name, name);
  char *line = brume_test_last_line(cmd);
  long long v = line && line[0] ? atoll(line) : -1;
  free(line);
  return v;
}
