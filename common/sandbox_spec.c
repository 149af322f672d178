#include "sandbox_spec.h"

#include <inttypes.h>

#include "resources.h"

int brume_sandbox_spec_check(const Brume__SandboxSpec *spec, brume_err **err) {
  if (spec == NULL) return brume_err_set(err, BRUME_INVALID_ARGUMENT, "spec is missing");
  if (spec->function == NULL || spec->function->account_id[0] == '\0' ||
      spec->function->function_name[0] == '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "spec.function needs account_id and function_name");
  if (spec->resources == NULL)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "spec.resources is missing");
  if (brume_resources_check_memory(spec->resources->memory_mib, err) < 0)
    return brume_err_wrap(err, "spec.resources.memory_mib");
  uint32_t eph = spec->resources->ephemeral_storage_mib;
  if (eph != 0 && brume_resources_check_ephemeral(eph, err) < 0)
    return brume_err_wrap(err, "spec.resources.ephemeral_storage_mib");
  if (spec->resources->vcpu_milli > BRUME_VCPU_MILLI_MAX)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "spec.resources.vcpu_milli %" PRIu32 " is over %d",
                         spec->resources->vcpu_milli, BRUME_VCPU_MILLI_MAX);
  if (spec->handler_mode != BRUME__HANDLER_MODE__HANDLER_MODE_RUNTIME_API &&
      spec->handler_mode != BRUME__HANDLER_MODE__HANDLER_MODE_EXEC)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "spec.handler_mode must be RUNTIME_API or EXEC");
  if (spec->handler_mode == BRUME__HANDLER_MODE__HANDLER_MODE_EXEC && spec->handler[0] == '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "spec.handler is required in EXEC mode");
  if (spec->code == NULL || spec->code->sha256[0] == '\0' || spec->code->url[0] == '\0')
    return brume_err_set(err, BRUME_INVALID_ARGUMENT, "spec.code needs sha256 and url");
  if (spec->timeout_ms > 900000)
    return brume_err_set(err, BRUME_INVALID_ARGUMENT,
                         "spec.timeout_ms %" PRIu32 " is out of range: 1-900,000",
                         spec->timeout_ms);
  return 0;
}
