/* A sandbox's /tmp: a sparse raw image with an ext2 file system of the ephemeral storage size,
 * made on the host before the VM boots and attached as its virtio disk (domain.h's
 * scratch_disk, /dev/vda in the guest, which brume-init mounts on /tmp).
 *
 * Disk rather than memory, as Lambda's /tmp is: a 128 MiB function may write 512 MiB there.
 * The image is sparse (blocks are allocated as the guest writes, and given back through
 * discard='unmap' when it deletes), ext2 because scratch space needs no journal, and made by
 * Debian's mke2fs (e2fsprogs) in a few milliseconds. */
#ifndef BRUME_WORKER_SCRATCH_H
#define BRUME_WORKER_SCRATCH_H

#include <stdint.h>

#include "err.h"

/* The image's name in the run directory: "<sandbox id>.tmp.img". */
#define BRUME_SCRATCH_SUFFIX ".tmp.img"

/* Creates path (replacing any file there) as a sparse image of mib MiB (512-10,240) holding an
 * empty ext2 file system, mode 0600. -1 with INTERNAL (the file is removed) when mke2fs fails or
 * is missing. */
int brume_scratch_create(const char *path, uint32_t mib, brume_err **err);

/* Removes every "*.tmp.img" in dir (an earlier run's leftovers). Returns how many. */
int brume_scratch_remove_all(const char *dir);

#endif
