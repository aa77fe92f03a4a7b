/* levelhost SDK: connections, for C plugins.
 *
 * `levelhost new --lang c` copies it beside levelhost.h; include it only in a
 * plugin whose plugin.toml names connections, since `levelhost build` gives
 * only those plugins wasi:http:
 *
 *   lh_http_response_t response;
 *   plugin_string_t why;
 *   if (!lh_http_post_json("https://chat/", "{\"text\":\"Disk full\"}", &response, &why))
 *     return lh_fail(err, "%.*s", (int)why.len, (const char *)why.ptr);
 *   if (response.status >= 300) ...
 *   lh_http_response_free(&response);
 *
 * The host of the URL is the connection's name in levelhost.toml, never its
 * real address: the host sends the request there with the credential only it
 * holds, if the grant has a route for the method and path. A request the
 * grant does not allow fails with a reason starting "denied:" that names the
 * route or rule. The answer's body is read whole (at most the grant's
 * max_response_kb). */
#ifndef LEVELHOST_HTTP_H
#define LEVELHOST_HTTP_H

#include <stdio.h>

#include "levelhost.h"

/* An answer: its status and whole body (free it with lh_http_response_free). */
typedef struct {
  uint16_t status;
  plugin_list_u8_t body;
} lh_http_response_t;

static inline void lh_http_response_free(lh_http_response_t *response) {
  plugin_list_u8_free(&response->body);
}

/* Sets *why to a copy of `text` (the caller frees it with plugin_string_free); returns false. */
static inline bool lh_http_refused(plugin_string_t *why, const char *text) {
  plugin_string_dup(why, text);
  return false;
}

/* The host's reason when it gave one (a "denied: ..." refusal among them), else the code. */
static inline bool lh_http_code_error(plugin_string_t *why, wasi_http_types_error_code_t *code) {
  if (code->tag == WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR && code->val.internal_error.is_some) {
    plugin_string_dup_n(why, (const char *)code->val.internal_error.val.ptr, code->val.internal_error.val.len);
  } else {
    char text[48];
    snprintf(text, sizeof text, "wasi:http error %u", (unsigned)code->tag);
    plugin_string_dup(why, text);
  }
  wasi_http_types_error_code_free(code);
  return false;
}

static inline wasi_http_types_method_t lh_http_method(const char *name) {
  static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  wasi_http_types_method_t method;
  memset(&method, 0, sizeof method);
  for (uint8_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    if (strcmp(name, known[i]) == 0) {
      method.tag = i;
      return method;
    }
  }
  method.tag = WASI_HTTP_TYPES_METHOD_OTHER;
  plugin_string_set(&method.val.other, name);
  return method;
}

/* Writes the body and ends it; the stream is dropped first, as wasi:http asks. */
static inline void lh_http_write_body(wasi_http_types_own_outgoing_body_t body, const uint8_t *bytes, size_t len) {
  wasi_http_types_own_output_stream_t stream;
  if (wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body), &stream)) {
    wasi_io_streams_borrow_output_stream_t out = wasi_io_streams_borrow_output_stream(stream);
    for (size_t start = 0; start < len; start += 4096) {
      size_t n = len - start < 4096 ? len - start : 4096;
      plugin_list_u8_t chunk = {(uint8_t *)bytes + start, n};
      wasi_io_streams_stream_error_t stream_error;
      if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(out, &chunk, &stream_error)) break;
    }
    wasi_io_streams_output_stream_drop_own(stream);
  }
  wasi_http_types_error_code_t code;
  if (!wasi_http_types_static_outgoing_body_finish(body, NULL, &code)) wasi_http_types_error_code_free(&code);
}

/* Reads an answer's body whole into *body. */
static inline bool lh_http_read_body(wasi_http_types_borrow_incoming_response_t response, plugin_list_u8_t *body,
                                     plugin_string_t *why) {
  wasi_http_types_own_incoming_body_t incoming;
  if (!wasi_http_types_method_incoming_response_consume(response, &incoming))
    return lh_http_refused(why, "the answer's body could not be read");
  wasi_http_types_own_input_stream_t stream;
  if (!wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(incoming), &stream)) {
    wasi_http_types_incoming_body_drop_own(incoming);
    return lh_http_refused(why, "the answer's body could not be read");
  }
  body->ptr = NULL;
  body->len = 0;
  bool ok = true;
  for (;;) {
    plugin_list_u8_t chunk;
    wasi_io_streams_stream_error_t stream_error;
    if (wasi_io_streams_method_input_stream_blocking_read(wasi_io_streams_borrow_input_stream(stream), 64 * 1024,
                                                          &chunk, &stream_error)) {
      if (chunk.len > 0) {
        uint8_t *grown = realloc(body->ptr, body->len + chunk.len);
        if (grown == NULL) abort();
        memcpy(grown + body->len, chunk.ptr, chunk.len);
        body->ptr = grown;
        body->len += chunk.len;
      }
      plugin_list_u8_free(&chunk);
      continue;
    }
    if (stream_error.tag == WASI_IO_STREAMS_STREAM_ERROR_LAST_OPERATION_FAILED) {
      plugin_string_t text;
      wasi_io_error_method_error_to_debug_string(wasi_io_error_borrow_error(stream_error.val.last_operation_failed),
                                                 &text);
      char reason[512];
      snprintf(reason, sizeof reason, "the answer's body broke off: %.*s", (int)text.len, (const char *)text.ptr);
      plugin_string_free(&text);
      wasi_io_error_error_drop_own(stream_error.val.last_operation_failed);
      plugin_list_u8_free(body);
      ok = lh_http_refused(why, reason);
    }
    break;
  }
  wasi_io_streams_input_stream_drop_own(stream);
  wasi_http_types_incoming_body_drop_own(incoming);
  return ok;
}

/* Sends `method url` (https://CONNECTION/path?query) with `content_type`
 * (NULL for none) and `body`. Returns true with *response on any answer, or
 * false with the reason in *why (the caller frees it with plugin_string_free). */
static inline bool lh_http_send(const char *method, const char *url, const char *content_type, const uint8_t *body,
                                size_t body_len, lh_http_response_t *response, plugin_string_t *why) {
  wasi_http_types_scheme_t scheme;
  memset(&scheme, 0, sizeof scheme);
  const char *rest;
  if (strncmp(url, "https://", 8) == 0) {
    scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTPS;
    rest = url + 8;
  } else if (strncmp(url, "http://", 7) == 0) {
    scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTP;
    rest = url + 7;
  } else {
    return lh_http_refused(why, "the URL is not an http:// or https:// URL naming a connection");
  }
  size_t host_len = strcspn(rest, "/?");
  char path[2048];
  snprintf(path, sizeof path, "%s%s", rest[host_len] == '/' ? "" : "/", rest + host_len);

  wasi_http_types_tuple2_field_name_field_value_t header;
  wasi_http_types_list_tuple2_field_name_field_value_t headers = {&header, 0};
  if (content_type != NULL) {
    plugin_string_set(&header.f0, "content-type");
    header.f1.ptr = (uint8_t *)content_type;
    header.f1.len = strlen(content_type);
    headers.len = 1;
  }
  wasi_http_types_own_fields_t fields;
  wasi_http_types_header_error_t header_error;
  if (!wasi_http_types_static_fields_from_list(&headers, &fields, &header_error))
    return lh_http_refused(why, "a header of the request was refused");
  wasi_http_types_own_outgoing_request_t request = wasi_http_types_constructor_outgoing_request(fields);
  wasi_http_types_borrow_outgoing_request_t borrowed = wasi_http_types_borrow_outgoing_request(request);
  wasi_http_types_method_t m = lh_http_method(method);
  plugin_string_t authority, path_with_query;
  plugin_string_dup_n(&authority, rest, host_len);
  plugin_string_set(&path_with_query, path);
  const char *refused = NULL;
  if (!wasi_http_types_method_outgoing_request_set_method(borrowed, &m)) refused = "the request's method was refused";
  else if (!wasi_http_types_method_outgoing_request_set_scheme(borrowed, &scheme)) refused = "the request's scheme was refused";
  else if (!wasi_http_types_method_outgoing_request_set_authority(borrowed, &authority)) refused = "the request's host was refused";
  else if (!wasi_http_types_method_outgoing_request_set_path_with_query(borrowed, &path_with_query)) refused = "the request's path was refused";
  plugin_string_free(&authority);
  wasi_http_types_own_outgoing_body_t outgoing;
  if (refused == NULL && !wasi_http_types_method_outgoing_request_body(borrowed, &outgoing))
    refused = "the request's body was refused";
  if (refused != NULL) {
    wasi_http_types_outgoing_request_drop_own(request);
    return lh_http_refused(why, refused);
  }
  /* Sent first, so the host reads the body as it is written. */
  wasi_http_types_own_future_incoming_response_t future;
  wasi_http_types_error_code_t code;
  if (!wasi_http_outgoing_handler_handle(request, NULL, &future, &code)) {
    wasi_http_types_outgoing_body_drop_own(outgoing);
    return lh_http_code_error(why, &code);
  }
  lh_http_write_body(outgoing, body, body_len);
  wasi_http_types_borrow_future_incoming_response_t pending = wasi_http_types_borrow_future_incoming_response(future);
  wasi_io_poll_own_pollable_t pollable = wasi_http_types_method_future_incoming_response_subscribe(pending);
  wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(pollable));
  wasi_io_poll_pollable_drop_own(pollable);
  wasi_http_types_option_result_result_own_incoming_response_error_code_void_t got;
  bool ok = wasi_http_types_method_future_incoming_response_get(pending, &got.val);
  wasi_http_types_future_incoming_response_drop_own(future);
  if (!ok || got.val.is_err) return lh_http_refused(why, "the answer was lost");
  if (got.val.val.ok.is_err) return lh_http_code_error(why, &got.val.val.ok.val.err);
  wasi_http_types_own_incoming_response_t answer = got.val.val.ok.val.ok;
  wasi_http_types_borrow_incoming_response_t borrowed_answer = wasi_http_types_borrow_incoming_response(answer);
  response->status = wasi_http_types_method_incoming_response_status(borrowed_answer);
  ok = lh_http_read_body(borrowed_answer, &response->body, why);
  wasi_http_types_incoming_response_drop_own(answer);
  return ok;
}

/* POSTs the JSON text `json` to `url`. */
static inline bool lh_http_post_json(const char *url, const char *json, lh_http_response_t *response,
                                     plugin_string_t *why) {
  return lh_http_send("POST", url, "application/json", (const uint8_t *)json, strlen(json), response, why);
}

/* GETs `url`. */
static inline bool lh_http_get(const char *url, lh_http_response_t *response, plugin_string_t *why) {
  return lh_http_send("GET", url, NULL, NULL, 0, response, why);
}

#endif
