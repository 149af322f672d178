/* Test harness: helpers the integration tests share (commands, files, clocks, timings, the guest
 * image). None of them fails a test: they return -1 or NULL and the test asserts. */
#ifndef BRUME_TEST_TESTUTIL_H
#define BRUME_TEST_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Formats a shell command and runs it with system(). Returns its exit status (0 on success), or
 * -1 when it could not run or did not exit normally; on failure the command is printed to
 * stderr. */
int brume_test_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The whole file, with one spare byte after it (caller frees); *len gets its size. NULL on
 * failure. */
uint8_t *brume_test_read_file(const char *path, size_t *len);
/* The last line a command prints on stdout, without its newline (caller frees), or NULL when the
 * command fails or prints nothing. */
char *brume_test_last_line(const char *cmd);
/* The number of entries in dir, "." and ".." aside (hidden ones, such as temporaries, count), or
 * -1 when it cannot be opened. */
int brume_test_count_files(const char *dir);
/* Copies path to stderr under a "---- path" header; nothing when it cannot be opened. */
void brume_test_dump_file(const char *path);
/* Sorts values in place and returns the nearest-rank p-th percentile (p in 0..100; 100 is the
 * maximum). 0 when n is 0. */
double brume_test_percentile(double *values, size_t n, double p);
/* Milliseconds on a monotonic clock, with a fraction. */
double brume_test_mono_ms(void);
/* The sum of the series of metric name (a counter or gauge, any labels) in the /metrics of the
 * HTTP listener on 127.0.0.1:port, or -1 when it has none or /metrics does not answer. name may
 * also be one series with its labels, as rendered: name{label="value",...}. */
long long brume_test_metric(int port, const char *name);
/* Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t brume_test_wall_ms(void);
/* Makes zip (an absolute path) holding one executable file, bootstrap, a copy of bootstrap_src,
 * staged in workdir/rt. Returns brume_test_run's status. */
int brume_test_zip_bootstrap(const char *workdir, const char *bootstrap_src, const char *zip);
/* Builds the guest image with guest_dir's build-kernel.sh and build-initramfs.sh (around init_bin;
 * both cache) and sets *kernel and *initrd to the paths they print (caller frees). Returns 0, or
 * -1 with *kernel NULL when the kernel could not be built, or *initrd NULL when the initramfs
 * could not. */
int brume_test_guest_image(const char *guest_dir, const char *init_bin, char **kernel,
                           char **initrd);

#endif
