/* brume-init: PID 1 of every Brume guest microVM.
 *
 * It boots the machine (system.c), waits for the host on the control channel (channel.c),
 * turns the VM into one function's sandbox on GuestInit and runs its invocations (agent.c), with
 * the Lambda Runtime API (runtime_api.c) or a process per event (runner.c). One thread, one
 * event loop (loop.c). The same program runs on the host for tests (--channel-socket,
 * --no-system): see docs/guest.md. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "channel.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "runner.h"
#include "system.h"
#include "unpack.h"

/* How long PID 1 waits for the control port to show up in sysfs. */
#define PORT_WAIT_MS 10000

typedef struct options {
  const char *channel_socket;
  const char *channel_device;
  const char *task_root;
  const char *listen;
  const char *unzip;
  const char *log_level;
  bool no_system;
  bool warm_up;
} options;

static const struct option long_options[] = {
    {"channel-socket", required_argument, NULL, 's'},
    {"channel-device", required_argument, NULL, 'd'},
    {"task-root", required_argument, NULL, 't'},
    {"listen", required_argument, NULL, 'l'},
    {"unzip", required_argument, NULL, 'u'},
    {"log-level", required_argument, NULL, 'v'},
    {"no-system", no_argument, NULL, 'n'},
    {"warm-up", no_argument, NULL, 'w'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f) {
  static const char text[] =
      "Usage: brume-init [OPTION]...\n"
      "PID 1 of a Brume guest: serves the host's control channel and the function.\n\n"
      "  --channel-socket PATH  listen on a UNIX socket for the host, not the virtio port\n"
      "  --channel-device PATH  the virtio port (default: the one named " INIT_CHANNEL_PORT_NAME
      ")\n"
      "  --task-root DIR        unpack the code here (default /var/task)\n"
      "  --listen ADDR:PORT     serve the Runtime API here (default 127.0.0.1:9001)\n"
      "  --unzip PROGRAM        the unzip program (default: unzip in PATH, else /bin/busybox)\n"
      "  --log-level LEVEL      debug, info, warn or error (default $BRUME_INIT_LOG_LEVEL, info)\n"
      "  --no-system            no mounts, lo or clock (implied unless PID 1)\n"
      "  --warm-up              run through a runtime's start once and exit (PID 1 starts\n"
      "                         itself so after boot)\n"
      "  --help                 show this and exit\n";
  fputs(text, f);
}

/* Parses the flags. PID 1 ignores words it does not know: the kernel passes unrecognised
 * command-line parameters to init. */
static int parse_options(int argc, char **argv, bool pid1, options *o) {
  *o = (options){.task_root = "/var/task", .listen = "127.0.0.1:9001"};
  o->log_level = getenv("BRUME_INIT_LOG_LEVEL");
  int c;
  opterr = !pid1;
  while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
    switch (c) {
      case 's':
        o->channel_socket = optarg;
        break;
      case 'd':
        o->channel_device = optarg;
        break;
      case 't':
        o->task_root = optarg;
        break;
      case 'l':
        o->listen = optarg;
        break;
      case 'u':
        o->unzip = optarg;
        break;
      case 'v':
        o->log_level = optarg;
        break;
      case 'n':
        o->no_system = true;
        break;
      case 'w':
        o->warm_up = true;
        break;
      case 'h':
        usage(stdout);
        exit(0);
      default:
        if (pid1) break;
        usage(stderr);
        return -1;
    }
  }
  if (!pid1 && optind < argc) {
    fprintf(stderr, "brume-init: unexpected argument %s\n", argv[optind]);
    return -1;
  }
  return 0;
}

typedef struct signals {
  init_loop_watch w;
  bool stop;
} signals;

/* SIGCHLD: reap every child (PID 1 inherits orphans too). SIGTERM/SIGINT (not PID 1): stop. */
static void on_signal(init_loop_watch *w, uint32_t events) {
  (void)events;
  signals *s = w->arg;
  struct signalfd_siginfo si;
  while (read(w->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
    if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) s->stop = true;
  }
  int wstatus;
  pid_t pid;
  while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) init_proc_reaped(pid, wstatus);
}

static int signals_open(signals *s, bool pid1) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  if (!pid1) {
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
  }
  if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) return -1;
  /* A write to a runtime that went away must fail with EPIPE, not kill PID 1. */
  signal(SIGPIPE, SIG_IGN);
  s->w = (init_loop_watch){
      .fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC), .fn = on_signal, .arg = s};
  return s->w.fd < 0 ? -1 : 0;
}

int main(int argc, char **argv) {
  bool pid1 = getpid() == 1;
  options o;
  if (parse_options(argc, argv, pid1, &o) < 0) return 2;
  if (o.warm_up && !pid1) return init_system_warm_up();
  bool system = pid1 && !o.no_system;
  brume_log_level level = BRUME_LOG_INFO;
  if (o.log_level && brume_log_level_parse(o.log_level, &level) < 0) {
    fprintf(stderr, "brume-init: unknown log level %s\n", o.log_level);
    if (!pid1) return 2;
  }
  brume_log_init("brume-init", level);

  brume_autoptr(brume_err) err = NULL;
  if (system && init_system_boot(&err) < 0) init_system_fatal(pid1, "boot: %s", err->msg);
  signals sig = {0};
  if (signals_open(&sig, pid1) < 0) init_system_fatal(pid1, "signals: %s", strerror(errno));
  brume_autofree char *unzip = init_unpack_find_unzip(o.unzip, &err);
  if (unzip == NULL) init_system_fatal(pid1, "%s", err->msg);

  init_loop *loop = init_loop_new();
  init_loop_add(loop, &sig.w, EPOLLIN);
  init_agent_config cfg = {
      .task_root = o.task_root, .runtime_api = o.listen, .unzip = unzip, .system = system};
  init_agent *agent = init_agent_new(loop, &cfg);

  init_channel *ch;
  brume_autofree char *port = NULL;
  if (o.channel_socket) {
    ch = init_channel_listen_unix(loop, o.channel_socket, &init_agent_channel_ops, agent, &err);
  } else {
    port = o.channel_device ? brume_xstrdup(o.channel_device)
                            : init_channel_find_port(INIT_CHANNEL_PORT_NAME, PORT_WAIT_MS, &err);
    ch = port ? init_channel_open_device(loop, port, &init_agent_channel_ops, agent, &err) : NULL;
  }
  if (ch == NULL) init_system_fatal(pid1, "control channel: %s", err->msg);
  init_agent_set_channel(agent, ch);
  init_channel_start(ch);
  if (system) init_system_start_warm_up("/proc/self/exe");
  brume_info(
      "brume-init is waiting for the host.", "channel=%s runtime_api=%s task_root=%s pid1=%s",
      o.channel_socket ? o.channel_socket : port, o.listen, o.task_root, pid1 ? "true" : "false");

  while (!sig.stop) init_loop_run_once(loop, -1);

  /* Only an ordinary process gets here (PID 1 never stops): leave nothing running. */
  brume_info("brume-init is stopping.", "%s", "");
  init_agent_free(agent);
  init_proc_kill_all();
  init_channel_free(ch);
  init_loop_del(loop, &sig.w);
  close(sig.w.fd);
  init_loop_free(loop);
  return 0;
}
