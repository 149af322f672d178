#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "mem.h"

/* One read per wakeup is at most this much, so one chatty process cannot starve the loop. */
#define READ_CHUNK 65536

typedef struct proc_pipe {
  init_loop_watch w;
  init_proc *proc;
} proc_pipe;

struct init_proc {
  init_loop *loop;
  const init_proc_ops *ops;
  void *arg;
  pid_t pid;
  bool abandoned;
  proc_pipe log; /* stderr (and stdout when not captured) */
  proc_pipe out; /* captured stdout, EXEC mode; fd -1 otherwise */
  proc_pipe in;  /* stdin being fed, EXEC mode; fd -1 when done */
  const uint8_t *stdin_data;
  size_t stdin_len, stdin_off;
  init_buf stdout_buf;
  size_t stdout_max;
  bool stdout_truncated;
  init_proc *next; /* in the list of live processes */
};

static init_proc *live;

static void pipe_close(init_proc *p, proc_pipe *pp) {
  if (pp->w.fd < 0) return;
  init_loop_del(p->loop, &pp->w);
  close(pp->w.fd);
  pp->w.fd = -1;
}

/* Reads once from a log or stdout pipe; returns false at EOF or on an error (then closed). */
static bool pipe_read(init_proc *p, proc_pipe *pp) {
  uint8_t chunk[READ_CHUNK];
  ssize_t n = read(pp->w.fd, chunk, sizeof(chunk));
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
  if (n <= 0) {
    pipe_close(p, pp);
    return false;
  }
  if (pp == &p->out) {
    size_t room = p->stdout_max - init_buf_pending(&p->stdout_buf);
    size_t keep = (size_t)n < room ? (size_t)n : room;
    init_buf_append(&p->stdout_buf, chunk, keep);
    if (keep < (size_t)n) p->stdout_truncated = true;
  } else if (!p->abandoned) {
    p->ops->output(p->arg, chunk, (size_t)n);
  }
  return true;
}

static void on_pipe_readable(init_loop_watch *w, uint32_t events) {
  (void)events;
  proc_pipe *pp = w->arg;
  pipe_read(pp->proc, pp);
}

static void on_stdin_writable(init_loop_watch *w, uint32_t events) {
  (void)events;
  init_proc *p = ((proc_pipe *)w->arg)->proc;
  while (p->stdin_off < p->stdin_len) {
    ssize_t n = write(w->fd, p->stdin_data + p->stdin_off, p->stdin_len - p->stdin_off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) break; /* EPIPE: the handler does not read its stdin, which is its right */
    p->stdin_off += (size_t)n;
  }
  pipe_close(p, &p->in);
}

static void pipe_watch(init_proc *p, proc_pipe *pp, int fd, uint32_t events, init_loop_fn fn) {
  pp->proc = p;
  pp->w = (init_loop_watch){.fd = fd, .fn = fn, .arg = pp};
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  init_loop_add(p->loop, &pp->w, events);
}

/* Fills the spawn attributes: a new session (so a process group of its own), every signal
 * back to its default action (brume-init ignores SIGPIPE, and ignored signals survive exec),
 * and nothing blocked (brume-init blocks SIGCHLD for its signalfd). */
static void spawn_attrs(posix_spawnattr_t *attr) {
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_init(attr);
  posix_spawnattr_setflags(attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setsigmask(attr, &none);
  posix_spawnattr_setsigdefault(attr, &all);
}

init_proc *init_proc_start(init_loop *loop, const init_proc_spec *spec, const init_proc_ops *ops,
                           void *arg, brume_err **err) {
  int log_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, in_pipe[2] = {-1, -1};
  int devnull = -1;
  init_proc *p = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  spawn_attrs(&attr);

  if (pipe2(log_pipe, O_CLOEXEC) < 0 ||
      (spec->exec_mode && (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(in_pipe, O_CLOEXEC) < 0))) {
    brume_err_set(err, BRUME_INTERNAL, "pipe: %s", strerror(errno));
    goto cleanup;
  }
  if (spec->exec_mode) {
    posix_spawn_file_actions_adddup2(&fa, in_pipe[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], STDOUT_FILENO);
  } else {
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0) {
      brume_err_set(err, BRUME_INTERNAL, "open /dev/null: %s", strerror(errno));
      goto cleanup;
    }
    posix_spawn_file_actions_adddup2(&fa, devnull, STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, log_pipe[1], STDOUT_FILENO);
  }
  posix_spawn_file_actions_adddup2(&fa, log_pipe[1], STDERR_FILENO);
  posix_spawn_file_actions_addchdir_np(&fa, spec->cwd);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);

  pid_t pid;
  char *argv[] = {(char *)spec->path, NULL};
  int rc = posix_spawn(&pid, spec->path, &fa, &attr, argv, spec->envp);
  if (rc != 0) {
    brume_err_set(err, BRUME_FAILED_PRECONDITION, "cannot run %s: %s", spec->path, strerror(rc));
    goto cleanup;
  }

  p = brume_xcalloc(1, sizeof(*p));
  p->loop = loop;
  p->ops = ops;
  p->arg = arg;
  p->pid = pid;
  p->stdout_max = spec->stdout_max;
  p->out.w.fd = p->in.w.fd = -1;
  pipe_watch(p, &p->log, log_pipe[0], EPOLLIN, on_pipe_readable);
  log_pipe[0] = -1;
  if (spec->exec_mode) {
    pipe_watch(p, &p->out, out_pipe[0], EPOLLIN, on_pipe_readable);
    out_pipe[0] = -1;
    p->stdin_data = spec->stdin_data;
    p->stdin_len = spec->stdin_len;
    pipe_watch(p, &p->in, in_pipe[1], EPOLLOUT, on_stdin_writable);
    in_pipe[1] = -1;
  }
  p->next = live;
  live = p;

cleanup:
  for (int i = 0; i < 2; i++) {
    if (log_pipe[i] >= 0) close(log_pipe[i]);
    if (out_pipe[i] >= 0) close(out_pipe[i]);
    if (in_pipe[i] >= 0) close(in_pipe[i]);
  }
  if (devnull >= 0) close(devnull);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return p;
}

void init_proc_signal(init_proc *p, int sig) {
  if (p->pid > 0) kill(-p->pid, sig);
}

void init_proc_drain(init_proc *p) {
  while (p->log.w.fd >= 0 && pipe_read(p, &p->log)) {
  }
  while (p->out.w.fd >= 0 && pipe_read(p, &p->out)) {
  }
}

const uint8_t *init_proc_stdout(const init_proc *p, size_t *len, bool *truncated) {
  *len = init_buf_pending(&p->stdout_buf);
  *truncated = p->stdout_truncated;
  return init_buf_head(&p->stdout_buf);
}

static void close_pipes(init_proc *p) {
  pipe_close(p, &p->log);
  pipe_close(p, &p->out);
  pipe_close(p, &p->in);
}

void init_proc_abandon(init_proc *p) {
  init_proc_signal(p, SIGKILL);
  close_pipes(p);
  p->abandoned = true;
}

void init_proc_free(init_proc *p) {
  if (p == NULL) return;
  close_pipes(p);
  init_buf_free(&p->stdout_buf);
  free(p);
}

static void unlink_live(init_proc *p) {
  for (init_proc **pp = &live; *pp; pp = &(*pp)->next) {
    if (*pp == p) {
      *pp = p->next;
      return;
    }
  }
}

int init_proc_exit_status(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return 255;
}

bool init_proc_reaped(pid_t pid, int wstatus) {
  init_proc *p = live;
  while (p && p->pid != pid) p = p->next;
  if (p == NULL) return false;
  unlink_live(p);
  /* Whatever the process left running in its group goes with it. */
  kill(-pid, SIGKILL);
  p->pid = -1;
  if (p->abandoned) {
    init_proc_free(p);
    return true;
  }
  /* Data still in the pipes belongs to this process; descendants that keep them open do not
   * hold up the exit report. */
  init_proc_drain(p);
  close_pipes(p);
  p->ops->exited(p->arg, p, init_proc_exit_status(wstatus));
  return true;
}

void init_proc_kill_all(void) {
  while (live) {
    init_proc *p = live;
    live = p->next;
    kill(-p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    init_proc_free(p);
  }
}
