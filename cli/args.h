/* The command line: finds the command among the groups and sorts the rest into flags and
 * positional arguments.
 *
 * Global flags (settings.c's table) are accepted anywhere, before or after the command; a
 * command's own flags only after its words. --name VALUE and --name=VALUE are the same; `--`
 * ends the flags. --help and -h are recognised everywhere, as is `brume help WORDS`; --version
 * too, except after a command with a --version flag of its own (alias create, alias update).
 * Values are kept as written: values.h turns them into numbers, durations, pairs. */
#ifndef BRUME_CLI_ARGS_H
#define BRUME_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>

#include "command.h"
#include "err.h"

typedef struct brume_cli_value {
  const brume_cli_flag *flag;
  const char *value; /* points into argv; NULL for a switch */
} brume_cli_value;

typedef struct brume_cli_args {
  const brume_cli_group *group; /* the first word's group, or NULL */
  const brume_cli_command *cmd; /* the command, or NULL (bare --help, --version, a group's help) */
  const char **pos;             /* positional arguments after the command's words */
  size_t n_pos;
  brume_cli_value *values; /* flags in the order given */
  size_t n_values;
  bool help;    /* --help, -h or `brume help ...`: print the help of group/cmd (or everything) */
  bool version; /* --version */
} brume_cli_args;

/* Parses argv (argv[0] is skipped) against the global flags and the groups' commands. Returns 0
 * with *a filled (free it with brume_cli_args_free), or -1 with an INVALID_ARGUMENT error whose
 * message says what is wrong ("brume function create: --zip needs a value (FILE)"); *a is then
 * still filled as far as it got (a->group and a->cmd help to point at the right help). A missing
 * command or wrong number of positionals is an error unless help was asked for. */
int brume_cli_args_parse(brume_cli_args *a, int argc, char **argv, const brume_cli_flag *globals,
                         const brume_cli_group *groups, size_t n_groups, brume_err **err);
void brume_cli_args_free(brume_cli_args *a);

/* The value of flag name (the last one given), or NULL when absent or a switch. */
const char *brume_cli_args_get(const brume_cli_args *a, const char *name);
/* Whether flag name was given. */
bool brume_cli_args_has(const brume_cli_args *a, const char *name);
/* The i-th value of a repeated flag, in order, or NULL past the last one. */
const char *brume_cli_args_nth(const brume_cli_args *a, const char *name, size_t i);

/* "brume function create" for a command, "brume function" for a group; caller frees. */
char *brume_cli_command_name(const brume_cli_group *group, const brume_cli_command *cmd);

#endif
