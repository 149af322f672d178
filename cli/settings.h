/* Where and how `brume` talks to brume-frontend: endpoint, API key, TLS, deadline, output.
 *
 * Each setting comes from the first place that has it: the global flags, then the environment
 * (BRUME_ENDPOINT, BRUME_API_KEY, BRUME_API_KEY_FILE, BRUME_TLS_CA), then the config file
 * ($BRUME_CONFIG, else $XDG_CONFIG_HOME/brume/config or ~/.config/brume/config, whichever
 * exists; `name = value` lines as in docs/config.md, names: endpoint, api_key_file, tls_ca,
 * tls_cert, tls_key, tls_server_name, timeout_ms), then the defaults. */
#ifndef BRUME_CLI_SETTINGS_H
#define BRUME_CLI_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>

#include "args.h"
#include "err.h"

#define BRUME_CLI_DEFAULT_ENDPOINT "127.0.0.1:7040"

/* The global flags, accepted before or after any command. */
extern const brume_cli_flag brume_cli_global_flags[];

typedef struct brume_cli_settings {
  char *endpoint;       /* gRPC target */
  char *api_key;        /* NULL when none was given anywhere; never printed */
  const char *key_from; /* where api_key came from, for hints: "--api-key", "BRUME_API_KEY" ... */
  char *tls_ca;         /* TLS when set */
  char *tls_cert;       /* with tls_key: mutual TLS */
  char *tls_key;
  char *tls_server_name; /* the name in the server's certificate, when not the endpoint's host */
  int64_t timeout_ms;    /* every call's deadline; 0 = the call's default */
  char *request_id;      /* x-request-id to send; NULL = none (the frontend makes one up) */
  bool json;             /* --json */
  char *config_file;     /* the config file read, or NULL */
} brume_cli_settings;

/* Looks up an environment variable (getenv, or a table in tests). */
typedef const char *(*brume_cli_getenv_fn)(const char *name);

/* Fills s from the parsed flags of a, the environment and the config file. Returns 0, or -1
 * with *err set (INVALID_ARGUMENT, or NOT_FOUND for a missing $BRUME_CONFIG or key file) whose
 * message names the flag, variable or file line at fault. s must be freed either way. */
int brume_cli_settings_load(brume_cli_settings *s, const brume_cli_args *a, brume_cli_getenv_fn env,
                            brume_err **err);
void brume_cli_settings_free(brume_cli_settings *s);

#endif
