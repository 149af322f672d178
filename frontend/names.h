/* The names a client gives the frontend, checked at the boundary (common.proto's
 * "Identifiers"): account ids, function names, versions, aliases, qualifiers, and function ARNs
 * ("arn:brume:lambda:<region>:<account_id>:function:<name>[:<qualifier>]").
 *
 * Every check answers INVALID_ARGUMENT with a message led by "InvalidParameterValueException: "
 * that names the field and what it accepts; the value is quoted only when it is short and
 * printable. Pure functions; thread-safe. */
#ifndef BRUME_FRONTEND_NAMES_H
#define BRUME_FRONTEND_NAMES_H

#include <stdbool.h>

#include "err.h"

#define BRUME_ACCOUNT_ID_MAX 64
#define BRUME_FUNCTION_NAME_MAX 64
#define BRUME_ALIAS_MAX 128
#define BRUME_QUALIFIER_MAX 128
#define BRUME_LATEST "$LATEST"

/* 1-64 characters of [A-Za-z0-9_-]. field names the field in the message ("account_id"). */
int brume_check_account_id(const char *s, const char *field, brume_err **err);
/* 1-64 characters of [A-Za-z0-9_-]. */
int brume_check_function_name(const char *s, const char *field, brume_err **err);
/* "$LATEST" or a decimal version number 1-999999999 without leading zeros. */
bool brume_is_version(const char *s);
/* 1-128 characters of [A-Za-z0-9_-], not all digits, not "$LATEST". */
int brume_check_alias(const char *s, const char *field, brume_err **err);
/* A version or an alias; "" is allowed (it means $LATEST). */
int brume_check_qualifier(const char *s, const char *field, brume_err **err);

/* A function as a request names it: plain ("hello", "hello:live" is NOT accepted: the qualifier
 * has its own field) or as an ARN, whose account and optional qualifier are returned. */
typedef struct brume_function_name {
  char account_id[BRUME_ACCOUNT_ID_MAX + 1]; /* "" when the name was plain */
  char name[BRUME_FUNCTION_NAME_MAX + 1];
  char qualifier[BRUME_QUALIFIER_MAX + 1]; /* from the ARN; "" when none */
} brume_function_name;

/* Parses a request's function_name field (plain name or ARN; an ARN's region must be region).
 * INVALID_ARGUMENT naming field when it is neither. */
int brume_function_name_parse(const char *s, const char *region, const char *field,
                              brume_function_name *out, brume_err **err);

/* The function's ARN, unqualified (qualifier NULL or "") or qualified. Caller frees. */
char *brume_function_arn(const char *region, const char *account_id, const char *name,
                         const char *qualifier);

/* A request id: given (a client's x-request-id, or an entry's request_id: field) when it is
 * 1-64 characters of [A-Za-z0-9._-], a new UUID when given is NULL or empty; -1
 * (INVALID_ARGUMENT) for a bad one. */
int brume_request_id(const char *given, const char *field, char out[80], brume_err **err);

#endif
