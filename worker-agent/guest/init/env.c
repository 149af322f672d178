#include "env.h"

#include <string.h>

#include "mem.h"

typedef struct env_list {
  char **v;
  size_t n;
} env_list;

/* Sets name=value, replacing an earlier value of the same name in place. */
static void env_set(env_list *e, const char *name, const char *value) {
  size_t nlen = strlen(name);
  char *entry = brume_xasprintf("%s=%s", name, value);
  for (size_t i = 0; i < e->n; i++) {
    if (strncmp(e->v[i], name, nlen) == 0 && e->v[i][nlen] == '=') {
      free(e->v[i]);
      e->v[i] = entry;
      return;
    }
  }
  e->v = brume_xrealloc(e->v, (e->n + 2) * sizeof(char *));
  e->v[e->n++] = entry;
  e->v[e->n] = NULL;
}

int init_env_validate(const Brume__GuestInit *init, brume_err **err) {
  for (size_t i = 0; i < init->n_environment; i++) {
    const char *k = init->environment[i]->key;
    if (k == NULL || *k == '\0' || strchr(k, '=') != NULL)
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "environment variable %zu has an invalid name (empty or with '=')", i);
  }
  return 0;
}

/* The region of "arn:<partition>:lambda:<region>:...", or NULL. */
static char *arn_region(const char *arn) {
  const char *p = arn;
  for (int field = 0; field < 3; field++) {
    p = strchr(p, ':');
    if (p == NULL) return NULL;
    p++;
  }
  const char *end = strchr(p, ':');
  if (end == NULL || end == p) return NULL;
  return brume_xstrndup(p, (size_t)(end - p));
}

char **init_env_build(const Brume__GuestInit *init, const char *runtime_api,
                      const char *task_root) {
  env_list e = {0};
  brume_autofree char *libs = brume_xasprintf("%s/lib:/opt/lib", task_root);
  env_set(&e, "PATH", "/usr/local/bin:/usr/bin:/bin:/opt/bin");
  env_set(&e, "LANG", "en_US.UTF-8");
  env_set(&e, "LD_LIBRARY_PATH", libs);

  for (size_t i = 0; i < init->n_environment; i++)
    env_set(&e, init->environment[i]->key, init->environment[i]->value);

  brume_autofree char *memory = brume_xasprintf("%u", init->memory_mib);
  env_set(&e, "AWS_LAMBDA_RUNTIME_API", runtime_api);
  env_set(&e, "_HANDLER", init->handler);
  env_set(&e, "LAMBDA_TASK_ROOT", task_root);
  env_set(&e, "AWS_LAMBDA_FUNCTION_NAME", init->function_name);
  env_set(&e, "AWS_LAMBDA_FUNCTION_VERSION", init->function_version);
  env_set(&e, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory);
  env_set(&e, "AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand");
  env_set(&e, "TZ", ":UTC");
  brume_autofree char *region = arn_region(init->function_arn);
  if (region) {
    env_set(&e, "AWS_REGION", region);
    env_set(&e, "AWS_DEFAULT_REGION", region);
  }
  return e.v;
}

void init_env_free(char **env) {
  for (char **p = env; p && *p; p++) free(*p);
  free(env);
}
