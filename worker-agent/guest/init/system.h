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
 * opens /dev/console as stdin, stdout and stderr if the kernel left them closed, sets PATH, and
 * brings up lo with 127.0.0.1. */
int init_system_boot(brume_err **err);

/* Gives the function its /tmp of mib MiB (its ephemeral storage): the worker's scratch disk
 * (/dev/vda, ext2, made to that size on the host) mounted there when the VM has one, else the
 * boot's tmpfs resized to mib MiB. */
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
