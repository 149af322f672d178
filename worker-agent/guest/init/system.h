/* What PID 1 does for the machine: mounts, the console, the loopback interface, the clock,
 * memory figures, and powering off when nothing else is left.
 *
 * None of it runs in --no-system mode (brume-init as an ordinary process on the host, for tests),
 * except init_system_mem_used(), which reads /proc/meminfo wherever it runs. */
#ifndef BRUME_INIT_SYSTEM_H
#define BRUME_INIT_SYSTEM_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* Boots the machine: mounts /dev (devtmpfs), /proc, /sys, /dev/pts, /dev/shm and a small /tmp,
 * opens /dev/console as stdin, stdout and stderr if the kernel left them closed, sets PATH,
 * mounts the worker's scratch disk on /tmp when the VM has one (a failure is logged and left
 * to init_system_set_tmp_size), and brings up lo with 127.0.0.1. */
int init_system_boot(brume_err **err);

/* Starts `self --warm-up` (brume-init's own binary) and does not wait for it: PID 1 reaps it
 * like any orphan. Under TCG the first run of a guest kernel path is translated by QEMU, and
 * boot fills and flushes QEMU's translation buffer: the first exec after boot took ~25 ms more
 * than later ones, and the first loopback connection ~10 ms more. A pooled VM does this while it
 * waits, so a function's runtime starts on warm paths. Nothing here is about a function; a
 * failure only means a cold start. */
void init_system_start_warm_up(const char *self);

/* The child's side: through a pipe, a loopback TCP connection (listen, connect, accept, a
 * request and an answer, epoll) and exit, as a runtime's start does. Returns the exit status. */
int init_system_warm_up(void);

/* Gives the function its /tmp of mib MiB (its ephemeral storage): the worker's scratch disk
 * (/dev/vda, ext2, made to that size on the host) when the VM has one (mounted at boot, or now
 * if that failed), else the boot's tmpfs resized to mib MiB. */
int init_system_set_tmp_size(uint32_t mib, brume_err **err);

/* Mounts a tmpfs on dir (where the code is unpacked), at most max_mib MiB. */
int init_system_mount_task_root(const char *dir, uint32_t max_mib, brume_err **err);
/* Remounts dir read-only once the code is in place, as Lambda's /var/task is. */
int init_system_seal_task_root(const char *dir, brume_err **err);

/* Steps the wall clock to unix_ms. */
int init_system_set_clock(int64_t unix_ms, brume_err **err);

/* Reads MemTotal and MemTotal - MemAvailable from /proc/meminfo, in bytes. */
int init_system_mem_used(uint64_t *total, uint64_t *used, brume_err **err);
/* The same from the text of a meminfo file; -1 if either field is missing. */
int init_system_parse_meminfo(const char *text, uint64_t *total, uint64_t *used);

/* Stops the VM after a fatal error: prints the sentence on the console and powers off. As an
 * ordinary process (not PID 1), logs and exits with status 1 instead. */
_Noreturn void init_system_fatal(bool pid1, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
