#include "accel.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "brume/guest.pb-c.h"
#include "clock.h"
#include "domain.h"
#include "libvirt.h"
#include "log.h"

/* The control protocol's frame limit (guest.proto). A Ready is a few bytes; anything near the
 * limit is not a guest agent, so the probe reads at most this much. */
#define READY_FRAME_MAX 4096
/* How long the libvirt boot lets the ready check wait before it looks at the domain again. */
#define READY_SLICE_MS 100

const char *brume_accel_name(brume_accel accel) {
  switch (accel) {
    case BRUME_ACCEL_KVM:
      return "kvm";
    case BRUME_ACCEL_TCG:
      return "tcg";
    case BRUME_ACCEL_UNSPECIFIED:
      break;
  }
  return "unspecified";
}

const char *brume_accel_domain_type(brume_accel accel) {
  switch (accel) {
    case BRUME_ACCEL_KVM:
      return "kvm";
    case BRUME_ACCEL_TCG:
      return "qemu";
    case BRUME_ACCEL_UNSPECIFIED:
      break;
  }
  return NULL;
}

void brume_accel_result_clear(brume_accel_result *res) {
  free(res->reason);
  res->reason = NULL;
}

int brume_accel_probe(const brume_accel_probe_opts *opts, brume_accel_result *res,
                      brume_err **err) {
  res->accel = BRUME_ACCEL_TCG;
  res->reason = NULL;
  res->kvm_boot_ms = -1;
  if (!opts->boot)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "accelerator probe: no boot function");
  const char *dev = opts->kvm_device ? opts->kvm_device : "/dev/kvm";
  int timeout = opts->timeout_ms > 0 ? opts->timeout_ms : BRUME_ACCEL_PROBE_TIMEOUT_MS;
  char q[1024];

  if (access(dev, F_OK) != 0) {
    res->reason = brume_xasprintf("%s is absent; using TCG", dev);
    brume_info("KVM is not available; using TCG.", "reason=%s",
               brume_log_quote(q, sizeof(q), res->reason));
    return 0;
  }
  int fd = open(dev, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    res->reason =
        brume_xasprintf("KVM is present but did not boot a guest: cannot open %s: %s; using TCG",
                        dev, strerror(errno));
    brume_warn("KVM is present but did not boot a guest; using TCG.", "reason=%s",
               brume_log_quote(q, sizeof(q), res->reason));
    return 0;
  }
  close(fd);

  brume_autoptr(brume_err) kvm_err = NULL;
  int64_t t0 = brume_mono_ms();
  int rc = opts->boot(BRUME_ACCEL_KVM, timeout, opts->boot_user, &kvm_err);
  res->kvm_boot_ms = brume_mono_ms() - t0;
  if (rc == 0) {
    res->accel = BRUME_ACCEL_KVM;
    res->reason = brume_xasprintf("KVM booted the guest to its agent in %lld ms",
                                  (long long)res->kvm_boot_ms);
    brume_info("KVM boots a guest; using KVM.", "boot_ms=%lld", (long long)res->kvm_boot_ms);
    return 0;
  }
  res->reason = brume_xasprintf("KVM is present but did not boot a guest: %s; using TCG",
                                kvm_err ? kvm_err->msg : "the boot failed without saying why");
  /* QEMU's messages span lines; the reason goes into one log line and the host's record. */
  for (char *p = res->reason; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  brume_warn("KVM is present but did not boot a guest; using TCG.", "reason=%s kvm_boot_ms=%lld",
             brume_log_quote(q, sizeof(q), res->reason), (long long)res->kvm_boot_ms);
  if (!opts->check_tcg) return 0;

  brume_autoptr(brume_err) tcg_err = NULL;
  if (opts->boot(BRUME_ACCEL_TCG, timeout, opts->boot_user, &tcg_err) < 0) {
    brume_err_set(err, tcg_err ? tcg_err->code : BRUME_INTERNAL,
                  "the guest does not boot under TCG either: %s",
                  tcg_err ? tcg_err->msg : "the boot failed without saying why");
    return -1;
  }
  return 0;
}

int brume_accel_ready_guest(int fd, int timeout_ms, void *user, brume_err **err) {
  (void)user;
  int64_t deadline = brume_mono_ms() + timeout_ms;
  unsigned char buf[4 + READY_FRAME_MAX];
  for (;;) {
    int64_t left = deadline - brume_mono_ms();
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    int pr = poll(&p, 1, left > 0 ? (int)left : 0);
    if (pr < 0 && errno != EINTR)
      return brume_err_set(err, BRUME_INTERNAL, "poll on the channel: %s", strerror(errno));
    if (pr <= 0) {
      if (left <= 0)
        return brume_err_set(err, BRUME_DEADLINE_EXCEEDED,
                             "the guest agent did not answer in time");
      continue;
    }
    /* Peek: a frame is consumed only once it is whole, so a caller may call again after a
     * DEADLINE_EXCEEDED without losing the start of one. */
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return brume_err_set(err, BRUME_UNAVAILABLE, "read from the channel: %s", strerror(errno));
    }
    if (n == 0) return brume_err_set(err, BRUME_UNAVAILABLE, "the channel closed");
    uint32_t len = UINT32_MAX;
    if (n >= 4) {
      len = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
      if (len > READY_FRAME_MAX)
        return brume_err_set(err, BRUME_INTERNAL,
                             "the channel sent a %u-byte frame, not a guest Ready", len);
    }
    if (n < 4 || (size_t)n < 4 + (size_t)len) {
      /* Part of a frame: the rest is on its way, unless the other side has gone. */
      if (p.revents & (POLLHUP | POLLRDHUP))
        return brume_err_set(err, BRUME_UNAVAILABLE, "the channel closed");
      if (brume_mono_ms() >= deadline)
        return brume_err_set(err, BRUME_DEADLINE_EXCEEDED,
                             "the guest agent did not answer in time");
      usleep(1000);
      continue;
    }
    if (recv(fd, buf, 4 + len, 0) != (ssize_t)(4 + len))
      return brume_err_set(err, BRUME_UNAVAILABLE, "read from the channel: %s", strerror(errno));
    Brume__GuestMessage *m = brume__guest_message__unpack(NULL, len, buf + 4);
    if (!m) return brume_err_set(err, BRUME_INTERNAL, "the channel sent an undecodable message");
    bool ready = m->body_case == BRUME__GUEST_MESSAGE__BODY_READY;
    int body = (int)m->body_case;
    brume__guest_message__free_unpacked(m, NULL);
    if (!ready)
      return brume_err_set(err, BRUME_INTERNAL, "the guest sent message %d before Ready", body);
    return 0;
  }
}

/* The last line of path that mentions an error (or, when error_only is false, the last
 * non-empty line), without its newline; NULL if none. Only lines after the last one holding
 * since (if non-NULL) count: QEMU's log keeps every earlier run of a domain of that name. Reads
 * at most the file's last 64 KiB. */
static char *last_line(const char *path, bool error_only, const char *since) {
  FILE *f = fopen(path, "re");
  if (!f) return NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long size = ftell(f);
    if (size > 65536)
      fseek(f, size - 65536, SEEK_SET);
    else
      rewind(f);
  }
  char line[1024];
  char *found = NULL;
  while (fgets(line, sizeof(line), f)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (since && strstr(line, since)) {
      free(found);
      found = NULL;
      continue;
    }
    if (!line[0]) continue;
    if (error_only && !strcasestr(line, "error") && !strcasestr(line, "fail")) continue;
    free(found);
    found = brume_xstrdup(line);
  }
  fclose(f);
  return found;
}

/* One connection attempt to a UNIX socket: the fd, or -1 with errno. */
static int connect_unix(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) return fd;
  int e = errno;
  close(fd);
  errno = e;
  return -1;
}

/* Why the domain stopped being usable: its state, reason, and the last error QEMU logged. */
static char *describe_failure(const char *what, const char *name, const char *state,
                              const char *qemu_log_dir, const char *console_log) {
  brume_autofree char *log_path = brume_xasprintf("%s/%s.log", qemu_log_dir, name);
  brume_autofree char *qemu = last_line(log_path, true, ": starting up libvirt version");
  brume_autofree char *console = last_line(console_log, false, NULL);
  return brume_xasprintf("%s (domain %s)%s%s%s%s", what, state, qemu ? "; QEMU: " : "",
                         qemu ? qemu : "", console ? "; console: " : "", console ? console : "");
}

/* Whether the domain has stopped running: 0 with *why NULL while it runs, 0 with *why (heap) set
 * to a description once it has stopped; -1 with *err when libvirt cannot tell. A transient
 * domain that stopped (a guest reset ends it: on_reboot=destroy) is gone, and libvirt no longer
 * knows its handle: that is a stop too. */
static int domain_stopped(virDomainPtr dom, const char *name, const char *log_dir,
                          const char *console, char **why, brume_err **err) {
  int st = VIR_DOMAIN_NOSTATE;
  brume_err *serr = NULL;
  *why = NULL;
  if (brume_libvirt_state(dom, &st, NULL, &serr) < 0 && serr->code != BRUME_NOT_FOUND) {
    if (err && !*err) *err = brume_steal(&serr);
    brume_err_free(serr);
    return -1;
  }
  bool gone = serr != NULL;
  brume_err_free(serr);
  if (gone || st != VIR_DOMAIN_RUNNING)
    *why = describe_failure("the guest stopped before its agent answered", name,
                            gone ? "gone" : brume_libvirt_state_name(st), log_dir, console);
  return 0;
}

int brume_accel_libvirt_boot(brume_accel accel, int timeout_ms, void *user, brume_err **err) {
  const brume_accel_libvirt_ctx *ctx = user;
  brume_domain_spec spec = *ctx->spec;
  brume_autofree char *id = brume_xasprintf("accel-probe-%s", brume_accel_name(accel));
  brume_autofree char *sock = brume_xasprintf("%s/%s.sock", ctx->work_dir, id);
  brume_autofree char *console = brume_xasprintf("%s/%s.console", ctx->work_dir, id);
  spec.accel = accel;
  spec.sandbox_id = id;
  spec.memory_mib = BRUME_ACCEL_PROBE_MEMORY_MIB;
  spec.vcpu_milli = 0;
  spec.no_cpu_quota = true;
  spec.channel_path = sock;
  spec.console_log = console;
  spec.scratch_disk = NULL;
  spec.network = false;
  const char *log_dir = ctx->qemu_log_dir ? ctx->qemu_log_dir : "/var/log/libvirt/qemu";
  brume_accel_ready_fn ready = ctx->ready ? ctx->ready : brume_accel_ready_guest;

  brume_autofree char *xml = brume_domain_xml(&spec, err);
  if (!xml) return brume_err_wrap(err, "accelerator probe (%s)", brume_accel_name(accel));
  brume_autofree char *name =
      brume_domain_name(spec.name_prefix, spec.host_id, spec.sandbox_id, NULL);
  {
    /* A probe domain left by an earlier run would hold the name. */
    brume_autoptr(virDomain) old = virDomainLookupByName(ctx->conn, name);
    if (old) brume_libvirt_destroy(old, NULL);
    virResetLastError();
  }
  unlink(sock);
  unlink(console);

  int64_t deadline = brume_mono_ms() + timeout_ms;
  brume_autoptr(virDomain) dom =
      brume_libvirt_create(ctx->conn, xml, BRUME_LIBVIRT_AUTODESTROY, err);
  if (!dom) {
    /* A guest can die while libvirt is still starting QEMU ("qemu unexpectedly closed the
     * monitor"): then its console says more than libvirt. */
    brume_autofree char *last = last_line(console, false, NULL);
    if (last && err && *err) {
      char *msg = brume_xasprintf("%s; console: %s", (*err)->msg, last);
      free((*err)->msg);
      (*err)->msg = msg;
    }
    unlink(sock);
    return -1;
  }
  int rc = -1;
  /* libvirt creates the socket and hands QEMU its descriptor, so it is there once the create
   * returns, unless QEMU has already gone (and libvirt removed it). */
  brume_autoclose int fd = -1;
  while ((fd = connect_unix(sock)) < 0) {
    int e = errno;
    brume_autofree char *stopped = NULL;
    if (domain_stopped(dom, name, log_dir, console, &stopped, err) < 0) goto out;
    if (stopped) {
      brume_err_set(err, BRUME_INTERNAL, "%s", stopped);
      goto out;
    }
    if ((e != ENOENT && e != ECONNREFUSED) || brume_mono_ms() >= deadline) {
      brume_err_set(err, BRUME_UNAVAILABLE, "connect to the channel %s: %s", sock, strerror(e));
      goto out;
    }
    usleep(10 * 1000);
  }
  /* The ready check runs in slices, and between them the domain's state is checked: a guest
   * that crashed or paused (KVM internal errors pause it) fails the probe at once instead of at
   * the deadline. */
  for (;;) {
    int64_t left = deadline - brume_mono_ms();
    if (left <= 0) {
      int st = VIR_DOMAIN_NOSTATE;
      brume_libvirt_state(dom, &st, NULL, NULL);
      brume_autofree char *d = describe_failure("the guest agent did not answer", name,
                                                brume_libvirt_state_name(st), log_dir, console);
      brume_err_set(err, BRUME_DEADLINE_EXCEEDED, "%s within %d ms", d, timeout_ms);
      goto out;
    }
    brume_err *rerr = NULL;
    if (ready(fd, left < READY_SLICE_MS ? (int)left : READY_SLICE_MS, ctx->ready_user, &rerr) ==
        0) {
      rc = 0;
      goto out;
    }
    /* Between slices, and after any other failure of the ready check (the channel closes when
     * QEMU exits), look at the domain: a guest that stopped says more than its channel. */
    brume_autofree char *stopped = NULL;
    if (domain_stopped(dom, name, log_dir, console, &stopped, err) < 0) {
      brume_err_free(rerr);
      goto out;
    }
    if (stopped) {
      brume_err_set(err, BRUME_INTERNAL, "%s", stopped);
      brume_err_free(rerr);
      goto out;
    }
    if (rerr && rerr->code != BRUME_DEADLINE_EXCEEDED) {
      if (err && !*err) *err = brume_steal(&rerr);
      brume_err_free(rerr);
      goto out;
    }
    brume_err_free(rerr);
  }
out:
  if (brume_libvirt_destroy(dom, rc == 0 ? err : NULL) < 0) rc = -1;
  unlink(sock);
  return rc;
}
