/* Lower-case names of common.proto's enums, for metric labels and JSON answers (the dashboard,
 * /metrics): the same word everywhere a host's accelerator or a sandbox's state is shown. */
#ifndef BRUME_PROTO_NAMES_H
#define BRUME_PROTO_NAMES_H

#include "brume/common.pb-c.h"

/* "kvm", "tcg", or "unknown" (not probed yet, or out of range). */
const char *brume_accelerator_name(Brume__Accelerator a);
/* "provisioning", "idle", "invoking", "terminating", "gone", or "unknown". */
const char *brume_sandbox_state_name(Brume__SandboxState s);

#endif
