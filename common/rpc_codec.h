/* Internal to the rpc module: moving protobuf-c messages in and out of gRPC byte buffers,
 * gRPC library lifetime, and credentials from a brume_tls_config. Not for daemons. */
#ifndef BRUME_RPC_CODEC_H
#define BRUME_RPC_CODEC_H

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "rpc.h"

/* grpc_init()/grpc_shutdown() are reference counted by gRPC: each server and client holds one. */
void brume_rpc_lib_ref(void);
void brume_rpc_lib_unref(void);

/* Serialises msg into a new byte buffer (one slice, no copy after packing). */
grpc_byte_buffer *brume_rpc_pack(const ProtobufCMessage *msg);
/* Decodes a received byte buffer (NULL = empty message) as desc. */
ProtobufCMessage *brume_rpc_unpack_buffer(const ProtobufCMessageDescriptor *desc,
                                          grpc_byte_buffer *bb, brume_err **err);

/* gpr deadline ms from now on the monotonic clock. */
gpr_timespec brume_rpc_deadline_in(int64_t ms);

grpc_server_credentials *brume_rpc_server_credentials(const brume_tls_config *tls, brume_err **err);
grpc_channel_credentials *brume_rpc_channel_credentials(const brume_tls_config *tls,
                                                        brume_err **err);

#endif
