/* The command line, parsed against the command table: see args.h. */
#include "args.h"

#include <stdarg.h>
#include <string.h>

#include "strbuf.h"

static const brume_cli_flag *find_flag(const brume_cli_flag *flags, const char *name, size_t len) {
  for (const brume_cli_flag *f = flags; f && f->name; f++)
    if (strlen(f->name) == len && strncmp(f->name, name, len) == 0) return f;
  return NULL;
}

static const brume_cli_group *find_group(const brume_cli_group *groups, size_t n, const char *w) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(groups[i].name, w) == 0) return &groups[i];
  return NULL;
}

static bool single(const brume_cli_group *g) {
  return g->n_commands == 1 && g->commands[0].verb == NULL;
}

static const brume_cli_command *find_verb(const brume_cli_group *g, const char *w) {
  for (size_t i = 0; i < g->n_commands; i++)
    if (g->commands[i].verb && strcmp(g->commands[i].verb, w) == 0) return &g->commands[i];
  return NULL;
}

/* "create, update-code, get" */
static char *verbs(const brume_cli_group *g) {
  brume_strbuf b = {0};
  for (size_t i = 0; i < g->n_commands; i++)
    brume_strbuf_printf(&b, "%s%s", i ? ", " : "", g->commands[i].verb);
  return brume_strbuf_steal(&b);
}

char *brume_cli_command_name(const brume_cli_group *group, const brume_cli_command *cmd) {
  if (cmd && cmd->verb) return brume_xasprintf("brume %s %s", cmd->group, cmd->verb);
  if (cmd) return brume_xasprintf("brume %s", cmd->group);
  if (group) return brume_xasprintf("brume %s", group->name);
  return brume_xstrdup("brume");
}

static int usage(brume_err **err, const brume_cli_args *a, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets an INVALID_ARGUMENT error led by the command's name, as far as it is known. */
static int usage(brume_err **err, const brume_cli_args *a, const char *fmt, ...) {
  brume_autofree char *who = brume_cli_command_name(a->group, a->cmd);
  va_list ap;
  va_start(ap, fmt);
  brume_autofree char *what = brume_xvasprintf(fmt, ap);
  va_end(ap);
  return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s: %s", who, what);
}

static bool given(const brume_cli_args *a, const brume_cli_flag *f) {
  for (size_t i = 0; i < a->n_values; i++)
    if (a->values[i].flag == f) return true;
  return false;
}

/* Handles the option argv[*i]; advances *i past its value. */
static int take_flag(brume_cli_args *a, int argc, char **argv, int *i,
                     const brume_cli_flag *globals, brume_err **err) {
  const char *tok = argv[*i];
  if (strcmp(tok, "-h") == 0 || strcmp(tok, "--help") == 0) {
    a->help = true;
    return 0;
  }
  if (tok[1] != '-' || tok[2] == '\0' || tok[2] == '=')
    return usage(err, a, "unknown option '%s'", tok);
  const char *name = tok + 2;
  const char *eq = strchr(name, '=');
  size_t len = eq ? (size_t)(eq - name) : strlen(name);
  const brume_cli_flag *f = find_flag(globals, name, len);
  if (!f && a->cmd) f = find_flag(a->cmd->flags, name, len);
  /* `brume --version`, unless the command has a --version of its own (alias create). */
  if (!f && strcmp(tok, "--version") == 0) {
    a->version = true;
    return 0;
  }
  if (!f) {
    brume_autofree char *opt = brume_xstrndup(tok, (size_t)(name - tok) + len);
    return usage(err, a, "unknown option '%s'%s", opt,
                 a->cmd     ? ""
                 : a->group ? " (a command's options come after its name)"
                            : "");
  }
  const char *value = NULL;
  if (f->metavar == NULL) {
    if (eq) return usage(err, a, "--%s takes no value", f->name);
  } else if (eq) {
    value = eq + 1;
  } else if (*i + 1 < argc) {
    value = argv[++*i];
  } else {
    return usage(err, a, "--%s needs a value (%s)", f->name, f->metavar);
  }
  if (!f->repeat && given(a, f)) return usage(err, a, "--%s is given twice", f->name);
  a->values[a->n_values++] = (brume_cli_value){f, value};
  return 0;
}

/* Handles a word that is not an option: the group, the verb, or a positional argument. */
static int take_word(brume_cli_args *a, const char *tok, const brume_cli_group *groups,
                     size_t n_groups, bool *help_word, brume_err **err) {
  if (a->group == NULL) {
    if (!*help_word && strcmp(tok, "help") == 0) {
      *help_word = a->help = true;
      return 0;
    }
    a->group = find_group(groups, n_groups, tok);
    if (a->group == NULL) return usage(err, a, "unknown command '%s'", tok);
    if (single(a->group)) a->cmd = &a->group->commands[0];
    return 0;
  }
  if (a->cmd == NULL) {
    a->cmd = find_verb(a->group, tok);
    if (a->cmd == NULL) {
      brume_autofree char *list = verbs(a->group);
      return usage(err, a, "unknown command '%s' (one of: %s)", tok, list);
    }
    return 0;
  }
  a->pos[a->n_pos++] = tok;
  return 0;
}

int brume_cli_args_parse(brume_cli_args *a, int argc, char **argv, const brume_cli_flag *globals,
                         const brume_cli_group *groups, size_t n_groups, brume_err **err) {
  memset(a, 0, sizeof(*a));
  size_t n = argc > 0 ? (size_t)argc : 1;
  a->pos = brume_xcalloc(n, sizeof(*a->pos));
  a->values = brume_xcalloc(n, sizeof(*a->values));
  bool dashdash = false, help_word = false;
  for (int i = 1; i < argc; i++) {
    const char *tok = argv[i];
    int rc;
    if (!dashdash && strcmp(tok, "--") == 0) {
      dashdash = true;
      continue;
    }
    if (!dashdash && tok[0] == '-' && tok[1] != '\0')
      rc = take_flag(a, argc, argv, &i, globals, err);
    else
      rc = take_word(a, tok, groups, n_groups, &help_word, err);
    if (rc < 0) return -1;
  }
  if (a->help || a->version) return 0;
  if (a->group == NULL)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "brume: no command given");
  if (a->cmd == NULL) {
    brume_autofree char *list = verbs(a->group);
    return usage(err, a, "needs a command: %s", list);
  }
  brume_autofree char *name = brume_cli_command_name(a->group, a->cmd);
  if (a->n_pos < a->cmd->min_args)
    return usage(err, a, "missing arguments (usage: %s %s)", name, a->cmd->synopsis);
  if (a->n_pos > a->cmd->max_args)
    return usage(err, a, "unexpected argument '%s' (usage: %s %s)", a->pos[a->cmd->max_args], name,
                 a->cmd->synopsis);
  return 0;
}

void brume_cli_args_free(brume_cli_args *a) {
  free(a->pos);
  free(a->values);
  a->pos = NULL;
  a->values = NULL;
  a->n_pos = a->n_values = 0;
}

const char *brume_cli_args_get(const brume_cli_args *a, const char *name) {
  const char *v = NULL;
  for (size_t i = 0; i < a->n_values; i++)
    if (strcmp(a->values[i].flag->name, name) == 0) v = a->values[i].value;
  return v;
}

bool brume_cli_args_has(const brume_cli_args *a, const char *name) {
  for (size_t i = 0; i < a->n_values; i++)
    if (strcmp(a->values[i].flag->name, name) == 0) return true;
  return false;
}

const char *brume_cli_args_nth(const brume_cli_args *a, const char *name, size_t n) {
  for (size_t i = 0; i < a->n_values; i++)
    if (strcmp(a->values[i].flag->name, name) == 0 && n-- == 0) return a->values[i].value;
  return NULL;
}
