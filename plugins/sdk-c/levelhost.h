/* levelhost SDK for C plugins (wit-bindgen c, clang for wasm32-wasi).
 *
 * `levelhost new --lang c` copies this header into the project; include it
 * after the generated bindings:
 *
 *   #include "gen/plugin.h"
 *   #include "levelhost.h"
 *
 * What it gives the plugin:
 * - lh_output(ret, fmt, ...): the run's output, formatted like printf; returns true.
 * - lh_fail(err, fmt, ...), lh_invalid_input(err, fmt, ...), lh_level(err, e):
 *   the run's error; each returns false, so `return lh_fail(err, "...")`.
 * - lh_cursor_t with lh_page_request() and lh_cursor_next(): walk every page
 *   of a Level list (see the template's app.c).
 * - lh_log(level, message, key, value): a structured log line (key may be NULL).
 *
 * An abort() or a failed assert() ends the run as crashed, and the host
 * quotes what the plugin last wrote to stderr in the failure.
 */
#ifndef LEVELHOST_H
#define LEVELHOST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef exports_level_api_handler_run_error_t lh_run_error_t;

/* Formats into a new plugin string (the host frees it). */
static inline void lh_vformat(plugin_string_t *out, const char *fmt, va_list args) {
  va_list again;
  va_copy(again, args);
  int len = vsnprintf(NULL, 0, fmt, args);
  char *text = malloc(len > 0 ? (size_t)len + 1 : 1);
  if (text == NULL) abort();
  vsnprintf(text, len > 0 ? (size_t)len + 1 : 1, fmt, again);
  va_end(again);
  out->ptr = (uint8_t *)text;
  out->len = len > 0 ? (size_t)len : 0;
}

/* Sets the run's output (a JSON document), printf-style; returns true. */
static inline bool lh_output(plugin_string_t *ret, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  lh_vformat(ret, fmt, args);
  va_end(args);
  return true;
}

/* Ends the run as failed, printf-style; returns false. */
static inline bool lh_fail(lh_run_error_t *err, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  err->tag = EXPORTS_LEVEL_API_HANDLER_RUN_ERROR_FAILED;
  lh_vformat(&err->val.failed, fmt, args);
  va_end(args);
  return false;
}

/* Ends the run as invalid-input, printf-style; returns false. */
static inline bool lh_invalid_input(lh_run_error_t *err, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  err->tag = EXPORTS_LEVEL_API_HANDLER_RUN_ERROR_INVALID_INPUT;
  lh_vformat(&err->val.invalid_input, fmt, args);
  va_end(args);
  return false;
}

/* Ends the run with a Level call's error; returns false. */
static inline bool lh_level(lh_run_error_t *err, level_api_types_error_t level_error) {
  err->tag = EXPORTS_LEVEL_API_HANDLER_RUN_ERROR_LEVEL;
  err->val.level = level_error;
  return false;
}

/* Where a walk over a cursor-paged list is. Start with {0}. */
typedef struct {
  plugin_string_t after;
  bool has_after;
  bool done;
} lh_cursor_t;

/* The next page's request: 100 items after the cursor. */
static inline level_api_types_page_request_t lh_page_request(const lh_cursor_t *cursor) {
  level_api_types_page_request_t request;
  memset(&request, 0, sizeof request);
  request.limit.is_some = true;
  request.limit.val = 100;
  if (cursor->has_after) {
    request.starting_after.is_some = true;
    request.starting_after.val = cursor->after;
  }
  return request;
}

/* Moves the cursor past a page whose last item has id `last` (NULL for an
 * empty page); returns false when the walk is over. Call it before freeing the page. */
static inline bool lh_cursor_next(lh_cursor_t *cursor, const plugin_string_t *last, bool has_more) {
  if (cursor->has_after) plugin_string_free(&cursor->after);
  cursor->has_after = false;
  if (!has_more || last == NULL) {
    cursor->done = true;
    return false;
  }
  plugin_string_dup_n(&cursor->after, (const char *)last->ptr, last->len);
  cursor->has_after = true;
  return true;
}

/* A structured log line with one field (key NULL for none). */
static inline void lh_log(level_api_log_level_t level, const char *message, const char *key, const char *value) {
  plugin_string_t msg;
  plugin_string_set(&msg, message);
  plugin_tuple2_string_string_t field;
  plugin_list_tuple2_string_string_t fields = {&field, 0};
  if (key != NULL) {
    plugin_string_set(&field.f0, key);
    plugin_string_set(&field.f1, value);
    fields.len = 1;
  }
  level_api_log_log(level, &msg, &fields);
}

#endif
