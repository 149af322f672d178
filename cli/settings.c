/* Settings from flags, environment and config file: see settings.h. */
#include "settings.h"

#include <string.h>

#include "config.h"
#include "file.h"
#include "values.h"

const brume_cli_flag brume_cli_global_flags[] = {
    {"endpoint", "HOST:PORT", false, "brume-frontend's gRPC address (default 127.0.0.1:7040)"},
    {"api-key", "KEY", false, "API key (visible to other users in ps: prefer --api-key-file)"},
    {"api-key-file", "FILE", false, "file holding the API key"},
    {"tls-ca", "FILE", false, "PEM CA bundle to verify the frontend with; turns TLS on"},
    {"tls-cert", "FILE", false, "PEM client certificate for mutual TLS"},
    {"tls-key", "FILE", false, "PEM private key of --tls-cert"},
    {"tls-server-name", "NAME", false, "name in the frontend's certificate, if not the host"},
    {"timeout-ms", "MS", false, "deadline of each call (default 30000; invoke: 910000)"},
    {"request-id", "ID", false, "x-request-id to send (1-64 of [A-Za-z0-9._-])"},
    {"json", NULL, false, "print JSON instead of text"},
    {NULL, NULL, false, NULL},
};

/* The config file's values, before they are merged. */
typedef struct file_values {
  char *endpoint;
  char *api_key_file;
  char *tls_ca;
  char *tls_cert;
  char *tls_key;
  char *tls_server_name;
  int64_t timeout_ms;
} file_values;

static const char *nonempty(const char *s) {
  return s && *s ? s : NULL;
}

static const char *env_get(brume_cli_getenv_fn env, const char *name) {
  return nonempty(env(name));
}

/* The first non-NULL of a, b, c, as a heap copy (NULL if none). */
static char *first(const char *a, const char *b, const char *c) {
  const char *v = a ? a : b ? b : c;
  return v ? brume_xstrdup(v) : NULL;
}

/* "~/x" -> "$HOME/x" for paths written in the config file (a shell expands them in flags). */
static void expand_home(char **path, brume_cli_getenv_fn env) {
  const char *home = env_get(env, "HOME");
  if (*path && home && strncmp(*path, "~/", 2) == 0) {
    char *p = brume_xasprintf("%s/%s", home, *path + 2);
    free(*path);
    *path = p;
  }
}

/* Reads the config file into fv. The default file may be absent; $BRUME_CONFIG must exist. */
static int read_config(brume_cli_settings *s, file_values *fv, brume_cli_getenv_fn env,
                       brume_err **err) {
  const char *explicit_path = env_get(env, "BRUME_CONFIG");
  brume_autofree char *path = NULL;
  if (explicit_path) {
    path = brume_xstrdup(explicit_path);
  } else if (env_get(env, "XDG_CONFIG_HOME")) {
    path = brume_xasprintf("%s/brume/config", env_get(env, "XDG_CONFIG_HOME"));
  } else if (env_get(env, "HOME")) {
    path = brume_xasprintf("%s/.config/brume/config", env_get(env, "HOME"));
  } else {
    return 0;
  }
  brume_err *rerr = NULL;
  size_t len;
  brume_autofree uint8_t *text = brume_cli_file_read(path, 1 << 20, &len, &rerr);
  if (text == NULL) {
    if (rerr->code == BRUME_NOT_FOUND && !explicit_path) {
      brume_err_free(rerr);
      return 0;
    }
    brume_err_set(err, rerr->code, "config file: %s", rerr->msg);
    brume_err_free(rerr);
    return -1;
  }
  s->config_file = brume_xstrdup(path);
  const brume_opt rows[] = {
      BRUME_OPT_STRING("endpoint", &fv->endpoint, NULL, "brume-frontend's gRPC address"),
      BRUME_OPT_PATH("api_key_file", &fv->api_key_file, NULL, "file holding the API key"),
      BRUME_OPT_PATH("tls_ca", &fv->tls_ca, NULL, "PEM CA bundle; turns TLS on"),
      BRUME_OPT_PATH("tls_cert", &fv->tls_cert, NULL, "PEM client certificate"),
      BRUME_OPT_PATH("tls_key", &fv->tls_key, NULL, "PEM private key of tls_cert"),
      BRUME_OPT_STRING("tls_server_name", &fv->tls_server_name, NULL, "name in the certificate"),
      BRUME_OPT_INT("timeout_ms", &fv->timeout_ms, 1, INT32_MAX, NULL, "deadline of each call"),
  };
  const brume_config_spec spec = {.name = "brume", .opts = rows, .n_opts = BRUME_ARRAY_LEN(rows)};
  int rc = brume_config_parse(&spec, path, (const char *)text, len, err);
  expand_home(&fv->api_key_file, env);
  expand_home(&fv->tls_ca, env);
  expand_home(&fv->tls_cert, env);
  expand_home(&fv->tls_key, env);
  return rc;
}

static void file_values_free(file_values *fv) {
  free(fv->endpoint);
  free(fv->api_key_file);
  free(fv->tls_ca);
  free(fv->tls_cert);
  free(fv->tls_key);
  free(fv->tls_server_name);
}

/* gRPC metadata values must be printable ASCII, and an API key never holds anything else. */
static bool plausible_key(const char *k) {
  if (!*k) return false;
  for (const unsigned char *p = (const unsigned char *)k; *p; p++)
    if (*p <= ' ' || *p >= 0x7f) return false;
  return true;
}

static int read_key_file(brume_cli_settings *s, const char *path, const char *from,
                         brume_err **err) {
  size_t len;
  brume_autofree uint8_t *text = brume_cli_file_read(path, 4096, &len, err);
  if (text == NULL) return brume_err_wrap(err, "API key file (%s)", from);
  while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
    text[--len] = '\0';
  if (strlen((char *)text) != len || !plausible_key((char *)text))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "API key file %s (%s) does not hold one API key on one line", path, from);
  s->api_key = brume_xstrdup((char *)text);
  s->key_from = from;
  return 0;
}

/* --api-key or --api-key-file, else BRUME_API_KEY, BRUME_API_KEY_FILE, else the file's
 * api_key_file. */
static int resolve_key(brume_cli_settings *s, const brume_cli_args *a, const file_values *fv,
                       brume_cli_getenv_fn env, brume_err **err) {
  const char *flag_key = brume_cli_args_get(a, "api-key");
  const char *flag_file = brume_cli_args_get(a, "api-key-file");
  if (flag_key && flag_file)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "give --api-key or --api-key-file, not both");
  if (flag_key) {
    s->api_key = brume_xstrdup(flag_key);
    s->key_from = "--api-key";
  } else if (flag_file) {
    return read_key_file(s, flag_file, "--api-key-file", err);
  } else if (env_get(env, "BRUME_API_KEY")) {
    s->api_key = brume_xstrdup(env_get(env, "BRUME_API_KEY"));
    s->key_from = "BRUME_API_KEY";
  } else if (env_get(env, "BRUME_API_KEY_FILE")) {
    return read_key_file(s, env_get(env, "BRUME_API_KEY_FILE"), "BRUME_API_KEY_FILE", err);
  } else if (fv->api_key_file) {
    return read_key_file(s, fv->api_key_file, "api_key_file in the config file", err);
  } else {
    return 0;
  }
  if (!plausible_key(s->api_key))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "the API key from %s holds characters no API key has", s->key_from);
  return 0;
}

static bool valid_request_id(const char *id) {
  size_t n = strlen(id);
  if (n < 1 || n > 64) return false;
  for (const char *p = id; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '.' || *p == '_' || *p == '-'))
      return false;
  return true;
}

int brume_cli_settings_load(brume_cli_settings *s, const brume_cli_args *a, brume_cli_getenv_fn env,
                            brume_err **err) {
  memset(s, 0, sizeof(*s));
  file_values fv = {0};
  int rc = -1;
  if (read_config(s, &fv, env, err) < 0) goto out;

  s->endpoint = first(nonempty(brume_cli_args_get(a, "endpoint")), env_get(env, "BRUME_ENDPOINT"),
                      nonempty(fv.endpoint));
  if (s->endpoint == NULL) s->endpoint = brume_xstrdup(BRUME_CLI_DEFAULT_ENDPOINT);
  s->tls_ca = first(nonempty(brume_cli_args_get(a, "tls-ca")), env_get(env, "BRUME_TLS_CA"),
                    nonempty(fv.tls_ca));
  s->tls_cert = first(nonempty(brume_cli_args_get(a, "tls-cert")), nonempty(fv.tls_cert), NULL);
  s->tls_key = first(nonempty(brume_cli_args_get(a, "tls-key")), nonempty(fv.tls_key), NULL);
  s->tls_server_name =
      first(nonempty(brume_cli_args_get(a, "tls-server-name")), nonempty(fv.tls_server_name), NULL);
  s->json = brume_cli_args_has(a, "json");

  if (!s->tls_cert != !s->tls_key) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "--tls-cert and --tls-key go together");
    goto out;
  }
  if ((s->tls_cert || s->tls_server_name) && !s->tls_ca) {
    brume_err_set(err, BRUME_INVALID_ARGUMENT, "--%s needs --tls-ca (TLS is off without it)",
                  s->tls_cert ? "tls-cert" : "tls-server-name");
    goto out;
  }
  const char *t = brume_cli_args_get(a, "timeout-ms");
  if (t) {
    uint64_t ms;
    if (brume_cli_parse_uint("--timeout-ms", t, 1, INT32_MAX, &ms, err) < 0) goto out;
    s->timeout_ms = (int64_t)ms;
  } else {
    s->timeout_ms = fv.timeout_ms;
  }
  const char *rid = brume_cli_args_get(a, "request-id");
  if (rid) {
    if (!valid_request_id(rid)) {
      brume_err_set(err, BRUME_INVALID_ARGUMENT,
                    "--request-id: '%s' is not 1-64 characters of [A-Za-z0-9._-]", rid);
      goto out;
    }
    s->request_id = brume_xstrdup(rid);
  }
  rc = resolve_key(s, a, &fv, env, err);
out:
  file_values_free(&fv);
  return rc;
}

void brume_cli_settings_free(brume_cli_settings *s) {
  free(s->endpoint);
  if (s->api_key) explicit_bzero(s->api_key, strlen(s->api_key));
  free(s->api_key);
  free(s->tls_ca);
  free(s->tls_cert);
  free(s->tls_key);
  free(s->tls_server_name);
  free(s->request_id);
  free(s->config_file);
  memset(s, 0, sizeof(*s));
}
