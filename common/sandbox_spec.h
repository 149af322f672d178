/* The check of a SandboxSpec (common.proto) that every daemon receiving one makes at its
 * boundary: the worker before a cold start, placement before it looks for a sandbox, so that
 * both refuse the same specs with the same messages. */
#ifndef BRUME_SANDBOX_SPEC_H
#define BRUME_SANDBOX_SPEC_H

#include "brume/common.pb-c.h"
#include "err.h"

/* 0 when spec is complete and in range: function with account_id and function_name; resources
 * with memory 128-10,240 MiB, ephemeral storage 0 (the default) or 512-10,240 MiB, vCPU share at
 * most 6,000; handler mode RUNTIME_API or EXEC (EXEC with a handler); code with sha256 and url;
 * timeout at most 900,000 ms. Otherwise -1 and INVALID_ARGUMENT naming the field. */
int brume_sandbox_spec_check(const Brume__SandboxSpec *spec, brume_err **err);

#endif
