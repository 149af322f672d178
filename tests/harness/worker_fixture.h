/* Test harness: brume-worker as its own process, with what it needs around it.
 *
 * A real etcd, function zips served over brume_http (the static echo runtime zipped at setup,
 * more with brume_test_worker_add_code), the guest image, a temp directory (images/, run/, code/,
 * worker.log), free RPC and HTTP ports, the worker process and a brume_rpc_client to it. Shared by
 * tests/worker/test_worker_daemon and bench/worker_bench; no cmocka here: the functions return -1
 * (or NULL) on failure, with a line on stderr, and the caller asserts or dies. Needs root and
 * libvirtd (qemu:///system). */
#ifndef BRUME_TEST_WORKER_FIXTURE_H
#define BRUME_TEST_WORKER_FIXTURE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "brume/common.pb-c.h"
#include "etcd_server.h"
#include "http.h"
#include "libvirt.h"
#include "rpc.h"

#define BRUME_TEST_WORKER_MAX_CODE 8

/* One function zip the fixture serves, at GET /code/<sha>.zip. */
typedef struct brume_test_code {
  char name[64]; /* the zip is <dir>/<name>.zip */
  char sha[65];  /* its SHA-256, lower-case hex */
  char url[256];
  uint8_t *data;
  size_t len;
} brume_test_code;

/* A file of a zip made by brume_test_worker_add_code. */
typedef struct brume_test_file {
  const char *path; /* inside the zip, relative; parent directories are made */
  const char *text; /* its content */
  unsigned mode;    /* e.g. 0755 for an executable */
} brume_test_file;

typedef struct brume_test_worker {
  const char *worker_bin; /* the brume-worker binary */
  char host_id[64];
  char *name_prefix; /* of the domains of host_id */
  virConnectPtr conn;
  char kernel[512], initrd[512]; /* the guest image */
  char kernel_smp[512];          /* its SMP kernel (build-kernel.sh --smp) */
  char *dir;                     /* temp directory: the zips, images/, run/, code/, worker.log */
  brume_test_etcd *etcd;
  bool etcd_shared;        /* a sibling's: another worker's etcd, not freed with this one */
  brume_http *code_http;   /* serves codes[i].data at codes[i].url, 404 for any other path */
  pthread_mutex_t code_mu; /* codes and n_codes: the server's thread reads them */
  brume_test_code codes[BRUME_TEST_WORKER_MAX_CODE];
  size_t n_codes;
  /* The echo runtime's zip (codes[0]): zip_data aliases codes[0].data. */
  uint8_t *zip_data;
  size_t zip_len;
  char zip_sha[65];
  char code_url[256];
  int rpc_port, http_port;
  pid_t pid; /* the worker, -1 when not running */
  brume_rpc_client *client;
} brume_test_worker;

/* A function as a SandboxSpec describes it. Every field may be left 0/NULL for the default. */
typedef struct brume_test_fn {
  const char *account_id;      /* "acct1" */
  const char *function_name;   /* "echo" */
  const char *version;         /* "1" */
  const brume_test_code *code; /* the fixture's echo zip */
  const char *sha;             /* code's digest; set to send another (a wrong one) */
  uint32_t memory_mib;         /* 128 */
  uint32_t vcpu_milli;         /* the worker's share for memory_mib */
  uint32_t timeout_ms;         /* 5000 */
  Brume__HandlerMode mode;     /* RUNTIME_API */
  const char *handler;         /* "echo.handler" */
  const char *const *env;      /* NAME, VALUE, NAME, VALUE, ..., NULL (at most 8 pairs) */
} brume_test_fn;

#define BRUME_TEST_MAX_ENV 8

/* A SandboxSpec of a function and the storage its pointers point into: filled by
 * brume_test_spec_init, and not to be copied afterwards (it points into itself). */
typedef struct brume_test_spec {
  Brume__SandboxSpec spec;
  Brume__FunctionVersionRef fref;
  Brume__FunctionCode fcode;
  Brume__ResourceSpec fres;
  Brume__SandboxSpec__EnvironmentEntry env[BRUME_TEST_MAX_ENV], *envp[BRUME_TEST_MAX_ENV];
  char arn[256];
} brume_test_spec;

/* The spec of fn (NULL: every default) with w's codes; the strings stay fn's (or static). */
void brume_test_spec_init(brume_test_spec *s, const brume_test_worker *w, const brume_test_fn *fn);

/* What a test of real workers needs before anything else: root (qemu:///system) and an etcd
 * binary. 0, or 77 (skip) with the reason on stderr after prog's name. */
int brume_test_worker_prereqs(const char *prog);

/* Connects to qemu:///system for host_id. NULL on failure, with the reason in *err. */
brume_test_worker *brume_test_worker_new(const char *worker_bin, const char *host_id,
                                         brume_err **err);
/* Builds (or takes from the cache) the guest image and the SMP kernel. -1 if one cannot be
 * built. */
int brume_test_worker_guest(brume_test_worker *w, const char *guest_dir, const char *init_bin);
/* Temp directory named after name, the code server with the echo zip of runtime_bin (codes[0],
 * named "echo"), etcd, ports. */
int brume_test_worker_setup(brume_test_worker *w, const char *name, const char *runtime_bin);
/* Sets w up beside first (already set up): its own temp directory and ports, first's etcd
 * (shared, freed with first, which must outlive w) and no code server of its own (specs name
 * first's codes). For tests of several workers in one cluster. */
int brume_test_worker_setup_sibling(brume_test_worker *w, const brume_test_worker *first,
                                    const char *name);
/* After setup: zips the n files into <dir>/<name>.zip and serves it at its own URL
 * (/code/<sha>.zip). Returns the entry (owned by w, valid until brume_test_worker_free), or NULL
 * on failure (a line on stderr). */
const brume_test_code *brume_test_worker_add_code(brume_test_worker *w, const char *name,
                                                  const brume_test_file *files, size_t n);
/* Spawns the worker with the common flags, then extra (NULL-terminated, may be NULL). */
pid_t brume_test_worker_spawn(brume_test_worker *w, const char *const *extra);
/* Waits until the worker listens on rpc_port. */
int brume_test_worker_wait(brume_test_worker *w, int timeout_ms);
/* A new client to the worker (8 MiB messages). */
brume_rpc_client *brume_test_worker_client(brume_test_worker *w, brume_err **err);
/* Spawn, wait (120 s), and a fresh w->client (the old one may hold a killed worker's
 * connection). -1 on failure. *ms (may be NULL) gets the time to listen. */
int brume_test_worker_start(brume_test_worker *w, const char *const *extra, double *ms);
/* After a spawn: waits (120 s) for the worker to listen and opens a fresh w->client. */
int brume_test_worker_start_wait(brume_test_worker *w);
/* Signals the worker and reaps it (brume_test_stop); its wait status, or -1. pid becomes -1. */
int brume_test_worker_stop(brume_test_worker *w, int sig, int timeout_ms);
/* The sum of the series of metric name (a counter or gauge, any labels) in the worker's
 * /metrics, or -1 when it has none or /metrics does not answer. */
long long brume_test_worker_metric(brume_test_worker *w, const char *name);
/* The worker's brume_worker_pool_vms gauge (all pooled sizes) from /metrics, or -1. */
int brume_test_worker_pool_vms(brume_test_worker *w);
/* The pid of the QEMU process running domain name (found by "guest=<name>," in
 * /proc/<pid>/cmdline), 0 when there is none. */
pid_t brume_test_qemu_pid(const char *name);
/* How many processes have "guest=<prefix>" in their command line (QEMUs of domains whose names
 * start with prefix). */
size_t brume_test_qemu_count(const char *prefix);
/* The pids of those processes, at most max of them; returns how many it stored. */
size_t brume_test_qemu_pids(const char *prefix, pid_t *pids, size_t max);
/* Prints worker.log to stderr. */
void brume_test_worker_dump_log(brume_test_worker *w);
/* SIGTERM to the worker, destroys the domains of host_id and their QEMU logs, stops the code
 * server and etcd, removes the temp directory. NULL is fine. */
void brume_test_worker_free(brume_test_worker *w);

#endif
