/* brume: the command-line client of brume-frontend's gRPC API (proto/brume/frontend.proto).
 *
 * The table below lists every command group; each group's commands, flags and code live in its
 * cmd_*.c file. A run: parse the command line (args.c), answer --help and --version, resolve the
 * settings from flags, environment and config file (settings.c), open the channel, run the
 * command. Exit status: 0 success, 1 a failed call or a function error, 2 a usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "client.h"
#include "command.h"
#include "settings.h"

#ifndef BRUME_VERSION
#define BRUME_VERSION "unknown"
#endif

static void print_flags(FILE *f, const brume_cli_flag *flags) {
  int width = 0;
  for (const brume_cli_flag *fl = flags; fl && fl->name; fl++) {
    int w = (int)strlen(fl->name) + 2 + (fl->metavar ? (int)strlen(fl->metavar) + 1 : 0);
    if (w > width) width = w;
  }
  for (const brume_cli_flag *fl = flags; fl && fl->name; fl++) {
    char left[128];
    snprintf(left, sizeof(left), "--%s%s%s", fl->name, fl->metavar ? " " : "",
             fl->metavar ? fl->metavar : "");
    fprintf(f, "  %-*s  %s\n", width, left, fl->help);
  }
}

static void print_command_help(FILE *f, const brume_cli_command *c) {
  brume_autofree char *name = brume_cli_command_name(NULL, c);
  fprintf(f, "Usage: %s%s%s\n\n%s\n", name, *c->synopsis ? " " : "", c->synopsis, c->summary);
  if (c->flags && c->flags->name) {
    fprintf(f, "\nOptions:\n");
    print_flags(f, c->flags);
  }
  fprintf(f, "\nGlobal options (--endpoint, --api-key-file, --json ...): see 'brume --help'.\n");
}

static void print_group_help(FILE *f, const brume_cli_group *g) {
  fprintf(f, "%s\n\nCommands:\n", g->summary);
  for (size_t i = 0; i < g->n_commands; i++) {
    brume_autofree char *name = brume_cli_command_name(NULL, &g->commands[i]);
    fprintf(f, "  %s%s%s\n      %s\n", name, *g->commands[i].synopsis ? " " : "",
            g->commands[i].synopsis, g->commands[i].summary);
  }
  fprintf(f, "\nSee 'brume help %s COMMAND' for a command's options.\n", g->name);
}

static void print_help(FILE *f, const brume_cli_group *groups, size_t n) {
  fprintf(f,
          "brume: the command-line client of Brume's API (brume-frontend, gRPC).\n\n"
          "Usage: brume [global options] COMMAND [arguments] [options]\n\nCommands:\n");
  for (size_t g = 0; g < n; g++) {
    for (size_t i = 0; i < groups[g].n_commands; i++) {
      const brume_cli_command *c = &groups[g].commands[i];
      char words[64];
      snprintf(words, sizeof(words), "%s%s%s", c->group, c->verb ? " " : "",
               c->verb ? c->verb : "");
      fprintf(f, "  %-22s  %s\n", words, c->summary);
    }
  }
  fprintf(f, "\nGlobal options (before or after the command):\n");
  print_flags(f, brume_cli_global_flags);
  fprintf(f,
          "  --help, -h              this help; 'brume help COMMAND' or 'brume COMMAND --help'\n"
          "  --version               print brume's version\n\n"
          "Environment: BRUME_ENDPOINT, BRUME_API_KEY, BRUME_API_KEY_FILE, BRUME_TLS_CA,\n"
          "BRUME_CONFIG (the config file; default ~/.config/brume/config, `name = value` lines:\n"
          "endpoint, api_key_file, tls_ca, tls_cert, tls_key, tls_server_name, timeout_ms).\n"
          "Flags win over the environment, which wins over the config file.\n\n"
          "Exit status: 0 success, 1 a failed call or a function error, 2 a usage error.\n");
}

static int print_usage_error(const brume_cli_args *a, const brume_err *err) {
  brume_autofree char *name = brume_cli_command_name(a->group, a->cmd);
  fprintf(stderr, "%s\nSee '%s --help'.\n", err->msg, name);
  return BRUME_CLI_EXIT_USAGE;
}

static const char *env(const char *name) {
  return getenv(name);
}

/* Opens the channel (lazily connected: nothing goes on the wire until the first call). */
static int open_client(brume_cli_ctx *ctx, brume_err **err) {
  const brume_cli_settings *s = ctx->settings;
  brume_rpc_client_opts opts = {
      .tls = {.ca_file = s->tls_ca,
              .cert_file = s->tls_cert,
              .key_file = s->tls_key,
              .server_name = s->tls_server_name},
      .max_message_bytes = BRUME_CLI_MAX_REPLY_BYTES,
  };
  ctx->client = brume_rpc_client_new(s->endpoint, &opts, err);
  return ctx->client ? 0 : -1;
}

int main(int argc, char **argv) {
  const brume_cli_group groups[] = {
      {"function", "Functions: code and configuration ($LATEST), listed and deleted.",
       brume_cli_function_commands, brume_cli_n_function_commands},
      {"version", "Versions: immutable numbered copies of $LATEST.", brume_cli_version_commands,
       brume_cli_n_version_commands},
      {"alias", "Aliases: names for a version, with optional weighted routing to a second one.",
       brume_cli_alias_commands, brume_cli_n_alias_commands},
      {"concurrency", "Reserved concurrency: set aside for a function, and its limit.",
       brume_cli_concurrency_commands, brume_cli_n_concurrency_commands},
      {"provisioned", "Provisioned concurrency: initialised sandboxes kept for a version or alias.",
       brume_cli_provisioned_commands, brume_cli_n_provisioned_commands},
      {"invoke", "Run a function.", brume_cli_invoke_commands, brume_cli_n_invoke_commands},
      {"keys", "API keys (admin scope).", brume_cli_keys_commands, brume_cli_n_keys_commands},
      {"events", "Queued (--async) invocations: where one stands.", brume_cli_events_commands,
       brume_cli_n_events_commands},
      {"queue", "Named queues: the records of ended events that destinations put there.",
       brume_cli_queue_commands, brume_cli_n_queue_commands},
  };
  const size_t n_groups = BRUME_ARRAY_LEN(groups);

  brume_cli_args a;
  brume_autoptr(brume_err) err = NULL;
  if (brume_cli_args_parse(&a, argc, argv, brume_cli_global_flags, groups, n_groups, &err) < 0) {
    int rc = print_usage_error(&a, err);
    brume_cli_args_free(&a);
    return rc;
  }
  if (a.version || a.help) {
    if (a.version)
      printf("brume %s\n", BRUME_VERSION);
    else if (a.cmd)
      print_command_help(stdout, a.cmd);
    else if (a.group)
      print_group_help(stdout, a.group);
    else
      print_help(stdout, groups, n_groups);
    brume_cli_args_free(&a);
    return BRUME_CLI_EXIT_OK;
  }

  brume_cli_settings s;
  int rc;
  if (brume_cli_settings_load(&s, &a, env, &err) < 0) {
    fprintf(stderr, "brume: %s\n", err->msg);
    rc = BRUME_CLI_EXIT_USAGE;
    goto out;
  }
  brume_cli_ctx ctx = {.args = &a, .settings = &s, .out = stdout, .err = stderr};
  if (open_client(&ctx, &err) < 0) {
    fprintf(stderr, "brume: cannot set up the connection to %s: %s\n", s.endpoint, err->msg);
    rc = BRUME_CLI_EXIT_USAGE;
    goto out;
  }
  rc = a.cmd->run(&ctx);
  brume_cli_ctx_close(&ctx);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "brume: cannot write to standard output\n");
    if (rc == BRUME_CLI_EXIT_OK) rc = BRUME_CLI_EXIT_FAILED;
  }
out:
  brume_cli_settings_free(&s);
  brume_cli_args_free(&a);
  return rc;
}
