/* Test harness: child processes and free ports on loopback. */
#ifndef BRUME_TEST_PROC_H
#define BRUME_TEST_PROC_H

#include <stddef.h>
#include <sys/types.h>

/* Returns a TCP port on 127.0.0.1 that was free a moment ago: random, below the kernel's ephemeral
 * range (so no outgoing connection takes it before the server binds it), and never returned twice
 * by one process. -1 when none is found. */
int brume_test_free_port(void);
/* Starts argv[0] (looked up in PATH) with argv; stdout and stderr go to log_path (appended) when
 * non-NULL. The child dies with the test (PR_SET_PDEATHSIG). Returns the pid, or -1. */
pid_t brume_test_spawn(char *const argv[], const char *log_path);
/* Starts brume-init-host (init_bin) as a guest without a VM: its control channel is the UNIX
 * socket <dir>/control.sock, its task root <dir>/task, its Runtime API on a free loopback port,
 * its output in <dir>/init.log. sock and log (at least 108 and 512 bytes) get those paths.
 * Returns the pid, or -1. */
pid_t brume_test_spawn_init_host(const char *init_bin, const char *dir, char *sock, char *log);
/* Sends sig and waits up to timeout_ms for the child to exit (then SIGKILL). Returns its wait
 * status. */
int brume_test_stop(pid_t pid, int sig, int timeout_ms);
/* SIGSTOPs pid and waits up to timeout_ms until the kernel shows each of its threads stopped:
 * kill() returns before they are (the group stop waits for one of its threads to be scheduled),
 * and a thread still running could answer a call meanwhile. 0, or -1 when kill failed or the
 * threads did not all stop in time. */
int brume_test_sigstop(pid_t pid, int timeout_ms);
/* Polls until a TCP connect to 127.0.0.1:port succeeds, up to timeout_ms. 0 on success, -1 on
 * timeout. */
int brume_test_wait_port(int port, int timeout_ms);
/* GET path from 127.0.0.1:port in plain HTTP/1.0 (so the harness needs no HTTP library), with a
 * 1 s timeout on each step. The whole answer (status line, headers, body) goes to resp,
 * NUL-terminated and cut at cap - 1 bytes. Returns its length, or -1 when nothing answered. */
int brume_test_http_get(int port, const char *path, char *resp, size_t cap);
/* Makes a fresh directory under $TMPDIR (or /tmp) and returns its path (caller frees). */
char *brume_test_tmpdir(const char *name);
/* rm -rf path. */
void brume_test_rmtree(const char *path);
/* Milliseconds on a monotonic clock. */
long long brume_test_now_ms(void);

#endif
