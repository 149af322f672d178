/* Feeds arbitrary bytes, as a browser's Cookie header, to the dashboard's session lookup
 * (frontend/sessions.h): the cookie parser must take only a well-formed brume_session value,
 * and a token it takes must be refused by a table that never issued it, never crash or leak.
 * Seeds: corpus/session_cookie/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sessions.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *header = malloc(size + 1);
  memcpy(header, data, size);
  header[size] = '\0';
  char token[BRUME_SESSION_TOKEN_HEX + 1];
  static brume_sessions *sessions;
  if (sessions == NULL) {
    sessions = brume_sessions_new(4, 60000);
    brume_principal who = {.key_id = "00112233aabbccdd", .account_id = "acme"};
    char issued[BRUME_SESSION_TOKEN_HEX + 1];
    int64_t expires;
    brume_sessions_create(sessions, &who, 1000, issued, &expires);
  }
  if (brume_sessions_cookie_token(header, token)) {
    if (strlen(token) != BRUME_SESSION_TOKEN_HEX) abort();
    brume_principal who;
    int64_t expires;
    /* A 256-bit random token is not guessed by a fuzzer. */
    if (brume_sessions_find(sessions, token, 2000, &who, &expires)) abort();
  }
  free(header);
  return 0;
}
