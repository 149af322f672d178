#include "daemon.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#include "log.h"

int brume_daemon_main(const brume_config_spec *spec, const brume_common_config *common,
                      const char *name, int (*start)(brume_err **err), void (*stop)(void), int argc,
                      char **argv) {
  brume_err *err = NULL;
  int rc = brume_config_load(spec, argc, argv, &err);
  if (rc != 0) {
    if (rc < 0) fprintf(stderr, "%s\n", err->msg);
    brume_err_free(err);
    brume_config_free(spec);
    return rc < 0 ? 2 : 0;
  }
  brume_log_init(name, (brume_log_level)common->log_level);

  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  if (start(&err) < 0) {
    char q[1024];
    brume_error("The daemon could not start.", "daemon=%s err=%s", spec->name,
                brume_log_quote(q, sizeof(q), err->msg));
    brume_err_free(err);
    stop();
    brume_config_free(spec);
    return 1;
  }
  int sig = 0;
  sigwait(&sigs, &sig);
  brume_info("Shutting down.", "signal=%d", sig);
  stop();
  brume_info("The daemon stopped.", "daemon=%s", spec->name);
  brume_config_free(spec);
  return 0;
}
