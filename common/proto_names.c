#include "proto_names.h"

const char *brume_accelerator_name(Brume__Accelerator a) {
  switch (a) {
    case BRUME__ACCELERATOR__ACCELERATOR_KVM:
      return "kvm";
    case BRUME__ACCELERATOR__ACCELERATOR_TCG:
      return "tcg";
    default:
      return "unknown";
  }
}

const char *brume_sandbox_state_name(Brume__SandboxState s) {
  switch (s) {
    case BRUME__SANDBOX_STATE__SANDBOX_STATE_PROVISIONING:
      return "provisioning";
    case BRUME__SANDBOX_STATE__SANDBOX_STATE_IDLE:
      return "idle";
    case BRUME__SANDBOX_STATE__SANDBOX_STATE_INVOKING:
      return "invoking";
    case BRUME__SANDBOX_STATE__SANDBOX_STATE_TERMINATING:
      return "terminating";
    case BRUME__SANDBOX_STATE__SANDBOX_STATE_GONE:
      return "gone";
    default:
      return "unknown";
  }
}
