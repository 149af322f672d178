/* The shape of a `brume` command: its words, its positional arguments, its flags and the function
 * that runs it. main.c lists every command in one table made of the groups' tables
 * (cmd_function.c, cmd_alias.c, ...); args.c parses a command line against it. */
#ifndef BRUME_CLI_COMMAND_H
#define BRUME_CLI_COMMAND_H

#include <stdbool.h>
#include <stddef.h>

/* One flag, written --name VALUE, --name=VALUE, or --name alone for a switch. */
typedef struct brume_cli_flag {
  const char *name;    /* without the dashes: "zip" */
  const char *metavar; /* "FILE" for a flag that takes a value; NULL for a switch */
  bool repeat;         /* may be given more than once (--env K=V ...) */
  const char *help;    /* one line for `brume help COMMAND` */
} brume_cli_flag;

struct brume_cli_ctx;

/* Runs a parsed command; returns the process's exit status (BRUME_CLI_EXIT_*). */
typedef int (*brume_cli_run_fn)(struct brume_cli_ctx *ctx);

typedef struct brume_cli_command {
  const char *group;           /* first word: "function", "invoke" */
  const char *verb;            /* second word: "create"; NULL for a one-word command */
  const char *synopsis;        /* the positionals and main flags: "NAME --zip FILE" */
  size_t min_args, max_args;   /* number of positional arguments accepted */
  const brume_cli_flag *flags; /* terminated by a row whose name is NULL; may be NULL */
  const char *summary;         /* one sentence */
  brume_cli_run_fn run;
} brume_cli_command;

/* A first word and its commands: either one command without a verb ("invoke") or several with
 * one each ("function create", "function get", ...). */
typedef struct brume_cli_group {
  const char *name;
  const char *summary;
  const brume_cli_command *commands;
  size_t n_commands;
} brume_cli_group;

/* Exit statuses. */
enum {
  BRUME_CLI_EXIT_OK = 0,
  BRUME_CLI_EXIT_FAILED = 1, /* an RPC failed, or the invoked function reported an error */
  BRUME_CLI_EXIT_USAGE = 2,  /* bad command line, unreadable file, bad configuration */
};

/* Each group's commands (cmd_*.c). */
extern const brume_cli_command brume_cli_function_commands[];
extern const size_t brume_cli_n_function_commands;
extern const brume_cli_command brume_cli_version_commands[];
extern const size_t brume_cli_n_version_commands;
extern const brume_cli_command brume_cli_alias_commands[];
extern const size_t brume_cli_n_alias_commands;
extern const brume_cli_command brume_cli_concurrency_commands[];
extern const size_t brume_cli_n_concurrency_commands;
extern const brume_cli_command brume_cli_provisioned_commands[];
extern const size_t brume_cli_n_provisioned_commands;
extern const brume_cli_command brume_cli_invoke_commands[];
extern const size_t brume_cli_n_invoke_commands;
extern const brume_cli_command brume_cli_keys_commands[];
extern const size_t brume_cli_n_keys_commands;
extern const brume_cli_command brume_cli_events_commands[];
extern const size_t brume_cli_n_events_commands;
extern const brume_cli_command brume_cli_queue_commands[];
extern const size_t brume_cli_n_queue_commands;
/* `brume function event-config put|get|delete` (cmd_events.c), a row of the function group. */
extern const brume_cli_flag brume_cli_event_config_flags[];
int brume_cli_event_config(struct brume_cli_ctx *ctx);

#endif
