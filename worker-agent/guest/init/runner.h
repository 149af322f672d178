/* The function's processes: the runtime (/var/task/bootstrap, once per sandbox) and, in EXEC
 * mode, the handler (once per invocation).
 *
 * Each process starts in a session and process group of its own, so that a timeout or a shutdown
 * can signal everything it started. Its output comes back through pipes watched by the loop: the
 * log (stderr, and stdout unless it is captured) goes to ops->output, a captured stdout (EXEC mode:
 * the response) is kept by the process. Exits are learned from the SIGCHLD handler, which passes
 * every reaped child to init_proc_reaped(). */
#ifndef BRUME_INIT_RUNNER_H
#define BRUME_INIT_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "loop.h"

typedef struct init_proc init_proc;

typedef struct init_proc_ops {
  /* The process wrote to its log. */
  void (*output)(void *arg, const uint8_t *data, size_t len);
  /* The process exited with status (the shell's: the code, or 128 + the signal); its pipes are
   * drained and closed. The callee owns p from now on (init_proc_free). */
  void (*exited)(void *arg, init_proc *p, int status);
} init_proc_ops;

typedef struct init_proc_spec {
  const char *path; /* the executable, run without a PATH search */
  char *const *envp;
  const char *cwd;
  /* EXEC mode: stdin gets these bytes (kept alive by the caller until exit), stdout is captured
   * up to stdout_max bytes. Otherwise stdin is /dev/null and stdout joins stderr in the log. */
  bool exec_mode;
  const uint8_t *stdin_data;
  size_t stdin_len;
  size_t stdout_max;
} init_proc_spec;

/* Starts a process. Fails (with the errno of the exec: ENOENT, EACCES, ENOEXEC) as
 * FAILED_PRECONDITION when the executable cannot be run. */
init_proc *init_proc_start(init_loop *loop, const init_proc_spec *spec, const init_proc_ops *ops,
                           void *arg, brume_err **err);

/* Sends sig to the process group. */
void init_proc_signal(init_proc *p, int sig);
/* Reads what the pipes hold right now, so that output written just before a Runtime API call
 * is in the log before the call is answered. */
void init_proc_drain(init_proc *p);
/* The captured stdout (EXEC mode); *truncated when the process wrote more than stdout_max. */
const uint8_t *init_proc_stdout(const init_proc *p, size_t *len, bool *truncated);

/* SIGKILLs the process group and forgets the process: no more callbacks; it is freed once
 * reaped. For timeouts and init errors, where brume-init ends the process itself. */
void init_proc_abandon(init_proc *p);
/* Frees an exited process. */
void init_proc_free(init_proc *p);

/* Tells the runner that pid was reaped with wait status wstatus. Returns false if the pid is
 * not one of the runner's (an orphan PID 1 inherited). */
bool init_proc_reaped(pid_t pid, int wstatus);

/* The shell's exit status of a wait status. */
int init_proc_exit_status(int wstatus);

/* SIGKILLs every live process group and frees every process (brume-init is exiting). */
void init_proc_kill_all(void);

#endif
