/* Text and JSON output: see output.h. */
#include "output.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "mem.h"
#include "message_json.h"
#include "strbuf.h"

static void print_json(FILE *f, const json_t *v) {
  json_dumpf(v, f, JSON_INDENT(2) | JSON_ENCODE_ANY);
  fputc('\n', f);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void format_time(int64_t unix_ms, char *buf, size_t size) {
  time_t secs = (time_t)(unix_ms / 1000);
  struct tm tm;
  if (unix_ms < 0 || gmtime_r(&secs, &tm) == NULL) {
    snprintf(buf, size, "?");
    return;
  }
  char date[32];
  strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf, size, "%s.%03dZ", date, (int)(unix_ms % 1000));
}

char *brume_cli_render_value(const char *key, const json_t *v, bool short_form) {
  switch (json_typeof(v)) {
    case JSON_STRING:
      return brume_xstrndup(json_string_value(v), json_string_length(v));
    case JSON_INTEGER: {
      json_int_t i = json_integer_value(v);
      if (key && ends_with(key, "_unix_ms") && i > 0) {
        char t[64];
        format_time(i, t, sizeof(t));
        return short_form ? brume_xstrdup(t)
                          : brume_xasprintf("%" JSON_INTEGER_FORMAT " (%s)", i, t);
      }
      return brume_xasprintf("%" JSON_INTEGER_FORMAT, i);
    }
    case JSON_REAL:
      return brume_xasprintf("%g", json_real_value(v));
    case JSON_TRUE:
      return brume_xstrdup("true");
    case JSON_FALSE:
      return brume_xstrdup("false");
    case JSON_NULL:
      return brume_xstrdup("none");
    case JSON_ARRAY: {
      brume_strbuf b = {0};
      size_t i;
      json_t *e;
      json_array_foreach(v, i, e) {
        brume_autofree char *s = brume_cli_render_value(NULL, e, short_form);
        brume_strbuf_printf(&b, "%s%s", i ? "," : "", s);
      }
      return brume_strbuf_steal(&b);
    }
    case JSON_OBJECT: {
      if (json_object_size(v) == 0) return brume_xstrdup("none");
      char *s = json_dumps(v, JSON_COMPACT);
      char *copy = brume_xstrdup(s);
      free(s);
      return copy;
    }
  }
  return brume_xstrdup("?");
}

static void print_fields(FILE *f, const json_t *obj, int indent) {
  int width = 0;
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    if ((int)strlen(key) > width) width = (int)strlen(key);
  }
  json_object_foreach((json_t *)obj, key, v) {
    if (json_is_object(v) && json_object_size(v) > 0) {
      fprintf(f, "%*s%s:\n", indent, "", key);
      print_fields(f, v, indent + 2);
      continue;
    }
    brume_autofree char *s = brume_cli_render_value(key, v, false);
    if (*s)
      fprintf(f, "%*s%s:%*s %s\n", indent, "", key, width - (int)strlen(key), "", s);
    else
      fprintf(f, "%*s%s:\n", indent, "", key);
  }
}

void brume_cli_print_object(FILE *f, const json_t *obj, bool json) {
  if (json)
    print_json(f, obj);
  else
    print_fields(f, obj, 0);
}

void brume_cli_print_table(FILE *f, const json_t *rows, const brume_cli_column *cols, size_t n,
                           bool json) {
  if (json) {
    print_json(f, rows);
    return;
  }
  size_t nrows = json_array_size(rows);
  char **cells = brume_xcalloc((nrows + 1) * n, sizeof(char *));
  int *width = brume_xcalloc(n, sizeof(int));
  for (size_t c = 0; c < n; c++) cells[c] = brume_xstrdup(cols[c].header);
  for (size_t r = 0; r < nrows; r++) {
    const json_t *row = json_array_get(rows, r);
    for (size_t c = 0; c < n; c++) {
      const json_t *v = json_object_get(row, cols[c].key);
      cells[(r + 1) * n + c] = v ? brume_cli_render_value(cols[c].key, v, true) : brume_xstrdup("");
    }
  }
  for (size_t i = 0; i < (nrows + 1) * n; i++)
    if ((int)strlen(cells[i]) > width[i % n]) width[i % n] = (int)strlen(cells[i]);
  for (size_t r = 0; r <= nrows; r++) {
    for (size_t c = 0; c < n; c++) {
      const char *s = cells[r * n + c];
      if (c + 1 < n)
        fprintf(f, "%s%*s  ", s, width[c] - (int)strlen(s), "");
      else
        fprintf(f, "%s\n", s);
    }
  }
  for (size_t i = 0; i < (nrows + 1) * n; i++) free(cells[i]);
  free(cells);
  free(width);
}

static bool lacks_newline(ProtobufCBinaryData d) {
  return d.len > 0 && d.data[d.len - 1] != '\n';
}

int brume_cli_print_invoke(FILE *out, FILE *errf, const char *what, const Brume__InvokeResponse *r,
                           bool json, bool log_tail, bool add_newline) {
  if (json) {
    brume_autoptr(json_t) j = brume_cli_json_invoke(r);
    print_json(out, j);
  } else {
    if (r->payload.len) fwrite(r->payload.data, 1, r->payload.len, out);
    if (add_newline && lacks_newline(r->payload)) fputc('\n', out);
    fflush(out);
    if (log_tail && r->log_tail.len) {
      fwrite(r->log_tail.data, 1, r->log_tail.len, errf);
      if (lacks_newline(r->log_tail)) fputc('\n', errf);
    }
    if (r->status_code == 202)
      fprintf(errf, "brume: %s: queued (status 202): event %s, request id %s\n", what,
              r->event_id && *r->event_id ? r->event_id : "(none)", r->request_id);
    else if (r->status_code == 204)
      fprintf(errf, "brume: %s: dry run passed (status 204)\n", what);
  }
  const Brume__FunctionError *e = r->function_error;
  if (e == NULL) return 0;
  const char *kind = e->kind == BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_HANDLED ? "Handled"
                     : e->kind == BRUME__FUNCTION_ERROR_KIND__FUNCTION_ERROR_KIND_UNHANDLED
                         ? "Unhandled"
                         : "unknown kind";
  fprintf(errf, "brume: %s: function error (%s): %s%s%s\n", what, kind,
          e->type && *e->type ? e->type : "(no type)", e->message && *e->message ? ": " : "",
          e->message ? e->message : "");
  return 1;
}
