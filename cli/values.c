/* Flag values: see values.h. */
#include "values.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int brume_cli_parse_uint(const char *flag, const char *s, uint64_t min, uint64_t max, uint64_t *out,
                         brume_err **err) {
  uint64_t v;
  int n = brume_config_parse_digits(s, &v);
  if (n <= 0 || s[n] != '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s: '%s' is not a whole number", flag, s);
  if (v < min || v > max)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s: %s is out of range (%llu to %llu)", flag,
                         s, (unsigned long long)min, (unsigned long long)max);
  *out = v;
  return 0;
}

int brume_cli_parse_duration_ms(const char *flag, const char *s, uint32_t *ms, brume_err **err) {
  uint64_t v;
  int n = brume_config_parse_digits(s, &v);
  if (n > 0 && s[n] == '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s: '%s' needs a unit: %ss or %sms", flag, s,
                         s, s);
  int64_t total;
  if (brume_config_parse_duration(s, &total) < 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "%s: '%s' is not a duration (e.g. 3s, 500ms, 1m30s)", flag, s);
  if (total < 1 || total > UINT32_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s: '%s' is out of range (1ms to %ums)",
                         flag, s, UINT32_MAX);
  *ms = (uint32_t)total;
  return 0;
}

int brume_cli_parse_mib(const char *flag, const char *s, uint32_t *mib, brume_err **err) {
  uint64_t v;
  int n = brume_config_parse_digits(s, &v);
  uint64_t mult = 0;
  if (n > 0) {
    const char *unit = s + n;
    if (*unit == '\0' || strcmp(unit, "MiB") == 0)
      mult = 1;
    else if (strcmp(unit, "GiB") == 0)
      mult = 1024;
  }
  if (mult == 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "%s: '%s' is not a size in MiB (e.g. 512, 512MiB or 2GiB)", flag, s);
  if (v == 0 || v > UINT32_MAX / mult)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s: '%s' is out of range", flag, s);
  *mib = (uint32_t)(v * mult);
  return 0;
}

int brume_cli_parse_pair(const char *flag, const char *s, char **name, char **value,
                         brume_err **err) {
  const char *eq = strchr(s, '=');
  if (eq == NULL || eq == s)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s: '%s' is not NAME=VALUE", flag, s);
  *name = brume_xstrndup(s, (size_t)(eq - s));
  *value = brume_xstrdup(eq + 1);
  return 0;
}

int brume_cli_parse_routing(const char *flag, const char *s, char **version, double *weight,
                            brume_err **err) {
  const char *eq = strchr(s, '=');
  if (eq == NULL || eq == s || eq[1] == '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s: '%s' is not VERSION=WEIGHT (e.g. 2=0.1)",
                         flag, s);
  char *end;
  errno = 0;
  double w = strtod(eq + 1, &end);
  if (*end != '\0' || errno != 0 || !isfinite(w) || w < 0.0 || w > 1.0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s: weight '%s' is not a number from 0 to 1",
                         flag, eq + 1);
  *version = brume_xstrndup(s, (size_t)(eq - s));
  *weight = w;
  return 0;
}

static const char *const handler_modes[] = {"", "runtime-api", "exec"};

int brume_cli_parse_handler_mode(const char *flag, const char *s, int *mode, brume_err **err) {
  for (int i = 1; i < (int)BRUME_ARRAY_LEN(handler_modes); i++) {
    if (strcmp(s, handler_modes[i]) == 0) {
      *mode = i;
      return 0;
    }
  }
  return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s: '%s' is neither runtime-api nor exec",
                       flag, s);
}

const char *brume_cli_handler_mode_name(int mode) {
  return mode >= 0 && mode < (int)BRUME_ARRAY_LEN(handler_modes) ? handler_modes[mode] : "";
}

int brume_cli_parse_scopes(const char *flag, const char *s, char ***scopes, size_t *n,
                           brume_err **err) {
  static const char *const known[] = {"invoke", "manage", "admin"};
  bool seen[BRUME_ARRAY_LEN(known)] = {false};
  char **v = brume_xcalloc(BRUME_ARRAY_LEN(known), sizeof(char *));
  size_t count = 0;
  const char *p = s;
  for (;;) {
    size_t len = strcspn(p, ",");
    size_t k = 0;
    while (k < BRUME_ARRAY_LEN(known) && !(strlen(known[k]) == len && !strncmp(p, known[k], len)))
      k++;
    if (k == BRUME_ARRAY_LEN(known) || seen[k]) {
      brume_cli_strv_free(v, count);
      if (k < BRUME_ARRAY_LEN(known))
        return brume_err_set(err, BRUME_INVALID_ARGUMENT, "%s: %s is listed twice", flag, known[k]);
      return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                           "%s: '%.*s' is not a scope (invoke, manage, admin)", flag, (int)len, p);
    }
    seen[k] = true;
    v[count++] = brume_xstrdup(known[k]);
    if (p[len] == '\0') break;
    p += len + 1;
  }
  *scopes = v;
  *n = count;
  return 0;
}

void brume_cli_strv_free(char **v, size_t n) {
  if (v == NULL) return;
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}
