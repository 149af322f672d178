/* The environment of the function's processes, built from GuestInit.
 *
 * Lambda's order: a few defaults the function may override (PATH, LANG, LD_LIBRARY_PATH), then
 * the function's own variables, then the reserved Lambda-defined ones, which always win
 * (AWS_LAMBDA_RUNTIME_API, _HANDLER, LAMBDA_TASK_ROOT, AWS_LAMBDA_FUNCTION_NAME, ..._VERSION,
 * ..._MEMORY_SIZE, AWS_REGION, TZ, ...). Nothing of brume-init's own environment leaks in. */
#ifndef BRUME_INIT_ENV_H
#define BRUME_INIT_ENV_H

#include "brume/guest.pb-c.h"
#include "err.h"

/* Checks the function's variable names: non-empty, no '='. INVALID_ARGUMENT otherwise. */
int init_env_validate(const Brume__GuestInit *init, brume_err **err);

/* Returns a NULL-terminated "NAME=value" array (free with init_env_free). runtime_api is the
 * Runtime API's host:port, task_root where the code is. */
char **init_env_build(const Brume__GuestInit *init, const char *runtime_api, const char *task_root);

void init_env_free(char **env);

#endif
