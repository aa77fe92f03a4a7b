// alert-to-chat: posts each Level alert that becomes active to a chat
// channel through the `chat` connection (a Teams or Slack incoming webhook,
// whose secret URL only the host holds). Any other event posts nothing; a
// chat that answers an error fails the run.
#include "gen/plugin.h"
#include "levelhost.h"
#include "levelhost_http.h"

// The string value of the first "key" in the JSON text `json` into `out`
// (unescaping \" and \\ only), or "" when there is none.
static void json_string(const char *json, const char *key, char *out, size_t size) {
  char quoted[64];
  snprintf(quoted, sizeof quoted, "\"%s\"", key);
  out[0] = '\0';
  const char *at = strstr(json, quoted);
  if (!at || !(at = strchr(at + strlen(quoted), ':'))) return;
  while (*++at == ' ') {
  }
  if (*at != '"') return;
  size_t n = 0;
  for (at++; *at && *at != '"' && n + 1 < size; at++) {
    if (*at == '\\' && at[1]) at++;
    out[n++] = *at;
  }
  out[n] = '\0';
}

// `text` as a JSON string, quotes included.
static void json_quote(const char *text, char *out, size_t size) {
  size_t n = 0;
  out[n++] = '"';
  for (; *text && n + 3 < size; text++) {
    if (*text == '"' || *text == '\\') out[n++] = '\\';
    if ((unsigned char)*text < 0x20) continue;
    out[n++] = *text;
  }
  out[n++] = '"';
  out[n] = '\0';
}

bool exports_level_api_handler_run(exports_level_api_handler_invocation_t *invocation, plugin_string_t *ret,
                                   lh_run_error_t *err) {
  char input[4096];
  snprintf(input, sizeof input, "%.*s", (int)invocation->input.len, (const char *)invocation->input.ptr);
  char event_type[64], severity[64], name[256], hostname[256], description[512];
  json_string(input, "event_type", event_type, sizeof event_type);
  if (!strstr(input, "\"event\"") || event_type[0] == '\0') return lh_invalid_input(err, "the input has no Level event");
  if (strcmp(event_type, "alert_active") != 0) return lh_output(ret, "{\"posted\":false,\"event_type\":\"%s\"}", event_type);
  json_string(input, "severity", severity, sizeof severity);
  json_string(input, "name", name, sizeof name);
  json_string(input, "device_hostname", hostname, sizeof hostname);
  json_string(input, "description", description, sizeof description);
  char text[1200], quoted[1400], body[1500];
  int len = snprintf(text, sizeof text, "[%s] %s on %s", severity, name, hostname);
  if (description[0]) snprintf(text + len, sizeof text - len, ": %s", description);
  json_quote(text, quoted, sizeof quoted);
  snprintf(body, sizeof body, "{\"text\":%s}", quoted);

  lh_http_response_t response;
  plugin_string_t why;
  if (!lh_http_post_json("https://chat/", body, &response, &why)) {
    bool failed = lh_fail(err, "%.*s", (int)why.len, (const char *)why.ptr);
    plugin_string_free(&why);
    return failed;
  }
  if (response.status >= 300) {
    bool failed = lh_fail(err, "the chat answered %u: %.*s", (unsigned)response.status, (int)response.body.len,
                          (const char *)response.body.ptr);
    lh_http_response_free(&response);
    return failed;
  }
  lh_http_response_free(&response);
  lh_log(LEVEL_API_LOG_LEVEL_INFO, "posted the alert", "alert", name);
  return lh_output(ret, "{\"posted\":true,\"text\":%s}", quoted);
}
