/* Unit tests for the RPC layer's message decoding (common/rpc_codec.c): what a server accepts at
 * its boundary before any handler runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
/* cmocka.h needs the headers above. */
#include <cmocka.h>

#include "brume/frontend.pb-c.h"
#include "rpc.h"

static const ProtobufCMessageDescriptor *invoke_request(void) {
  return brume__frontend__descriptor.methods[0].input;
}

static void test_decodes_a_packed_message(void **state) {
  (void)state;
  Brume__InvokeRequest req = BRUME__INVOKE_REQUEST__INIT;
  req.function_name = "resize-image";
  uint8_t buf[256];
  size_t len = protobuf_c_message_pack(&req.base, buf);
  brume_err *err = NULL;
  brume_autoptr(ProtobufCMessage) msg = brume_rpc_decode(invoke_request(), buf, len, &err);
  assert_non_null(msg);
  assert_null(err);
  assert_string_equal(((Brume__InvokeRequest *)msg)->function_name, "resize-image");
}

static void test_refuses_garbage(void **state) {
  (void)state;
  /* A length-delimited field claiming more bytes than there are. */
  static const uint8_t truncated[] = {0x0a, 0x10, 'a', 'b'};
  brume_autoptr(brume_err) err = NULL;
  assert_null(brume_rpc_decode(invoke_request(), truncated, sizeof(truncated), &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_non_null(strstr(err->msg, "brume.InvokeRequest"));
}

/* Field number 0 does not exist; protobuf-c lets it through as an unknown field when its tag is
 * an overlong varint. Found by fuzz_rpc_decode. */
static void test_refuses_field_zero(void **state) {
  (void)state;
  static const uint8_t field_zero[] = {0x82, 0x00, 0x00};
  brume_autoptr(brume_err) err = NULL;
  assert_null(brume_rpc_decode(invoke_request(), field_zero, sizeof(field_zero), &err));
  assert_int_equal(err->code, BRUME_INVALID_ARGUMENT);
  assert_non_null(strstr(err->msg, "field 0"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decodes_a_packed_message),
      cmocka_unit_test(test_refuses_garbage),
      cmocka_unit_test(test_refuses_field_zero),
  };
  return cmocka_run_group_tests_name("rpc_codec", tests, NULL, NULL);
}
