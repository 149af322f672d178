/* The sandbox's state machine inside the guest: what brume-init does with each message from the
 * host, each Runtime API call, each process exit and each timer.
 *
 *   WAIT_INIT --Init--> INITIALISING (RUNTIME_API: bootstrap started) --first /next--> IDLE
 *   WAIT_INIT --Init--> IDLE (EXEC: the handler exists)
 *   IDLE --Invoke--> INVOKING --response, error, exit status--> IDLE
 *   any failure that leaves no working runtime -------------> BROKEN (invocations fail at once)
 *   any --Shutdown--> SHUTTING_DOWN --exit or grace period--> STOPPED
 *
 * Anything the host sends that is wrong for the state gets a GuestError and the connection is
 * dropped (docs/guest.md lists the cases). */
#ifndef BRUME_INIT_AGENT_H
#define BRUME_INIT_AGENT_H

#include <stdbool.h>

#include "channel.h"
#include "loop.h"

typedef struct init_agent_config {
  const char *task_root;   /* where the code is unpacked: /var/task */
  const char *runtime_api; /* where the Runtime API listens: 127.0.0.1:9001 */
  const char *unzip;       /* the unzip program (init_unpack_find_unzip) */
  bool system;             /* PID 1 in a guest: set the clock, size /tmp, mount the task root */
} init_agent_config;

typedef struct init_agent init_agent;

/* The agent keeps pointers to cfg's strings: they must outlive it. */
init_agent *init_agent_new(init_loop *loop, const init_agent_config *cfg);
/* The channel's callbacks, with the agent as their argument. */
extern const init_channel_ops init_agent_channel_ops;
/* Gives the agent its channel (created with init_agent_channel_ops and the agent). */
void init_agent_set_channel(init_agent *a, init_channel *ch);

/* Kills what the agent started and frees it (brume-init exiting on the host). */
void init_agent_free(init_agent *a);

#endif
