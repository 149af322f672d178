/* Checking the names a client gives (names.h). */
#include "names.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mem.h"
#include "random.h"

#define REASON "InvalidParameterValueException: "
#define ARN_HEAD "arn:brume:lambda:"

/* The value as the message shows it: quoted when short and printable, else nothing. */
static const char *shown(const char *s, char *buf, size_t size) {
  size_t n = strlen(s);
  if (n == 0 || n > 80) return "";
  for (size_t i = 0; i < n; i++)
    if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\') return "";
  snprintf(buf, size, " \"%s\"", s);
  return buf;
}

static bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

/* 1-max characters of [A-Za-z0-9_-]. */
static bool is_name(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max) return false;
  for (size_t i = 0; i < n; i++)
    if (!is_name_char(s[i])) return false;
  return true;
}

int brume_check_account_id(const char *s, const char *field, brume_err **err) {
  char q[96];
  if (s == NULL || !is_name(s, BRUME_ACCOUNT_ID_MAX))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         REASON "%s%s must be 1-64 characters of [A-Za-z0-9_-]", field,
                         shown(s ? s : "", q, sizeof(q)));
  return 0;
}

int brume_check_function_name(const char *s, const char *field, brume_err **err) {
  char q[96];
  if (s == NULL || !is_name(s, BRUME_FUNCTION_NAME_MAX))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         REASON "%s%s must be 1-64 characters of [A-Za-z0-9_-]", field,
                         shown(s ? s : "", q, sizeof(q)));
  return 0;
}

bool brume_is_version(const char *s) {
  if (s == NULL) return false;
  if (strcmp(s, BRUME_LATEST) == 0) return true;
  size_t n = strlen(s);
  if (n == 0 || n > 9 || s[0] == '0') return false;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

static bool all_digits(const char *s) {
  for (; *s; s++)
    if (*s < '0' || *s > '9') return false;
  return true;
}

int brume_check_alias(const char *s, const char *field, brume_err **err) {
  char q[96];
  if (s == NULL || !is_name(s, BRUME_ALIAS_MAX) || all_digits(s))
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         REASON
                         "%s%s must be an alias: 1-128 characters of [A-Za-z0-9_-], not all "
                         "digits",
                         field, shown(s ? s : "", q, sizeof(q)));
  return 0;
}

int brume_check_qualifier(const char *s, const char *field, brume_err **err) {
  char q[96];
  if (s == NULL || s[0] == '\0' || brume_is_version(s)) return 0;
  if (is_name(s, BRUME_ALIAS_MAX) && !all_digits(s)) return 0;
  return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                       REASON
                       "%s%s must be $LATEST, a version number (1-999999999) or an alias "
                       "(1-128 characters of [A-Za-z0-9_-], not all digits)",
                       field, shown(s, q, sizeof(q)));
}

/* Copies the n bytes at s into out (size bytes) if they fit; false otherwise. */
static bool copy_part(const char *s, size_t n, char *out, size_t size) {
  if (n >= size) return false;
  memcpy(out, s, n);
  out[n] = '\0';
  return true;
}

int brume_function_name_parse(const char *s, const char *region, const char *field,
                              brume_function_name *out, brume_err **err) {
  memset(out, 0, sizeof(*out));
  if (s == NULL || s[0] == '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, REASON "%s is required", field);
  if (strncmp(s, ARN_HEAD, strlen(ARN_HEAD)) != 0) {
    if (brume_check_function_name(s, field, err) < 0) return -1;
    memcpy(out->name, s, strlen(s) + 1);
    return 0;
  }
  /* arn:brume:lambda:<region>:<account_id>:function:<name>[:<qualifier>] */
  char q[96];
  const char *p = s + strlen(ARN_HEAD);
  const char *colon = strchr(p, ':');
  size_t rlen = colon ? (size_t)(colon - p) : 0;
  if (colon == NULL || rlen != strlen(region) || strncmp(p, region, rlen) != 0)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         REASON "%s%s is not a function ARN of region %s", field,
                         shown(s, q, sizeof(q)), region);
  p = colon + 1;
  colon = strchr(p, ':');
  if (colon == NULL ||
      !copy_part(p, (size_t)(colon - p), out->account_id, sizeof(out->account_id)) ||
      brume_check_account_id(out->account_id, field, NULL) < 0 ||
      strncmp(colon + 1, "function:", 9) != 0)
    goto malformed;
  p = colon + 1 + 9;
  colon = strchr(p, ':');
  size_t nlen = colon ? (size_t)(colon - p) : strlen(p);
  if (!copy_part(p, nlen, out->name, sizeof(out->name)) ||
      brume_check_function_name(out->name, field, NULL) < 0)
    goto malformed;
  if (colon) {
    if (!copy_part(colon + 1, strlen(colon + 1), out->qualifier, sizeof(out->qualifier)) ||
        out->qualifier[0] == '\0' || brume_check_qualifier(out->qualifier, field, NULL) < 0)
      goto malformed;
  }
  return 0;
malformed:
  memset(out, 0, sizeof(*out));
  return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                       REASON
                       "%s%s is not a function ARN "
                       "(arn:brume:lambda:<region>:<account_id>:function:<name>[:<"
                       "qualifier>])",
                       field, shown(s, q, sizeof(q)));
}

char *brume_function_arn(const char *region, const char *account_id, const char *name,
                         const char *qualifier) {
  if (qualifier == NULL || qualifier[0] == '\0')
    return brume_xasprintf(ARN_HEAD "%s:%s:function:%s", region, account_id, name);
  return brume_xasprintf(ARN_HEAD "%s:%s:function:%s:%s", region, account_id, name, qualifier);
}

int brume_request_id(const char *given, const char *field, char out[80], brume_err **err) {
  if (given == NULL || given[0] == '\0') {
    uint64_t a = brume_random_u64(), b = brume_random_u64();
    /* A version 4 UUID. */
    snprintf(out, 80, "%08" PRIx64 "-%04" PRIx64 "-4%03" PRIx64 "-%04" PRIx64 "-%012" PRIx64,
             a >> 32, (a >> 16) & 0xffff, a & 0xfff, 0x8000 | ((b >> 48) & 0x3fff),
             b & (uint64_t)0xffffffffffff);
    return 0;
  }
  size_t n = strlen(given);
  bool ok = n <= 64;
  for (size_t i = 0; ok && i < n; i++)
    ok = isalnum((unsigned char)given[i]) || strchr("._-", given[i]) != NULL;
  if (!ok)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "InvalidParameterValueException: %s must be 1-64 characters of "
                         "[A-Za-z0-9._-]",
                         field);
  snprintf(out, 80, "%s", given);
  return 0;
}
