/* The life of every Brume daemon's process, in one place: configuration, log, signals, start,
 * wait, stop. Each daemon's main() is one call:
 *
 *   int main(int argc, char **argv) {
 *     return brume_daemon_main(&spec, &common, "counting", start, stop, argc, argv);
 *   }
 *
 * brume_daemon_main() loads the configuration (--help and --check-config answer and exit 0; a
 * wrong one prints every error and exits 2), starts the log under the daemon's name, blocks
 * SIGTERM and SIGINT before any thread exists (so that every thread inherits the mask and only
 * the wait sees them) and ignores SIGPIPE, then runs start(). If start fails, the error is logged,
 * stop() undoes what start did, and the exit status is 1. Otherwise it waits for SIGTERM or SIGINT,
 * runs stop() and returns 0. stop() must cope with a start that failed half-way. */
#ifndef BRUME_DAEMON_H
#define BRUME_DAEMON_H
#include "config.h"
#include "err.h"

int brume_daemon_main(const brume_config_spec *spec, const brume_common_config *common,
                      const char *name, int (*start)(brume_err **err), void (*stop)(void),
                      int argc, char **argv);
#endif
