// stale-tagger: tags the devices offline for `days` days or more (default 30)
// with `tag` (default "stale"), creating the tag if it is missing.
#include <time.h>

#include "gen/plugin.h"
#include "levelhost.h"

// Days since 1970-01-01 of a civil date (proleptic Gregorian).
static long days_from_civil(long y, unsigned m, unsigned d) {
  y -= m <= 2;
  long era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (long)doe - 719468;
}

// Whole days between an ISO-8601 UTC timestamp and `now`, or -1 if it cannot be read.
static long days_since(const plugin_string_t *timestamp, time_t now) {
  char text[40];
  size_t len = timestamp->len < sizeof text - 1 ? timestamp->len : sizeof text - 1;
  memcpy(text, timestamp->ptr, len);
  text[len] = '\0';
  long y;
  unsigned mo, d, h, mi, s;
  if (sscanf(text, "%ld-%u-%uT%u:%u:%u", &y, &mo, &d, &h, &mi, &s) != 6) return -1;
  long seen = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
  return ((long)now - seen) / 86400;
}

static bool has_tag(const plugin_list_string_t *tags, const char *name) {
  for (size_t i = 0; i < tags->len; i++) {
    if (tags->ptr[i].len == strlen(name) && memcmp(tags->ptr[i].ptr, name, tags->ptr[i].len) == 0) return true;
  }
  return false;
}

// The input's "days" (default 30) and "tag" (default "stale"); the input
// schema in plugin.toml has already checked their types.
static void read_input(const plugin_string_t *input, long *days, char *tag, size_t tag_size) {
  char text[512];
  size_t len = input->len < sizeof text - 1 ? input->len : sizeof text - 1;
  memcpy(text, input->ptr, len);
  text[len] = '\0';
  *days = 30;
  snprintf(tag, tag_size, "stale");
  const char *at = strstr(text, "\"days\"");
  if (at && (at = strchr(at, ':'))) *days = strtol(at + 1, NULL, 10);
  at = strstr(text, "\"tag\"");
  if (at && (at = strchr(at, ':')) && (at = strchr(at, '"'))) {
    const char *end = strchr(at + 1, '"');
    if (end) snprintf(tag, tag_size, "%.*s", (int)(end - at - 1), at + 1);
  }
}

bool exports_level_api_handler_run(exports_level_api_handler_invocation_t *invocation, plugin_string_t *ret,
                                   lh_run_error_t *err) {
  long days;
  char name[128];
  read_input(&invocation->input, &days, name, sizeof name);
  if (days < 1) return lh_invalid_input(err, "days must be a whole number, at least 1");

  // The tag, found or created.
  level_api_tags_tag_t tag;
  bool found = false;
  level_api_types_error_t level_error;
  lh_cursor_t cursor = {0};
  while (!cursor.done && !found) {
    level_api_types_page_request_t request = lh_page_request(&cursor);
    level_api_tags_tag_page_t page;
    if (!level_api_tags_list_tags(NULL, &request, &page, &level_error)) return lh_level(err, level_error);
    for (size_t i = 0; i < page.items.len && !found; i++) {
      plugin_string_t *n = &page.items.ptr[i].name;
      if (n->len == strlen(name) && memcmp(n->ptr, name, n->len) == 0) {
        plugin_string_dup_n(&tag.id, (const char *)page.items.ptr[i].id.ptr, page.items.ptr[i].id.len);
        found = true;
      }
    }
    lh_cursor_next(&cursor, page.items.len ? &page.items.ptr[page.items.len - 1].id : NULL, page.has_more);
    level_api_tags_tag_page_free(&page);
  }
  if (!found) {
    plugin_string_t tag_name;
    plugin_string_set(&tag_name, name);
    if (!level_api_tags_create_tag(&tag_name, &tag, &level_error)) return lh_level(err, level_error);
  }

  // The stale devices, and the ones among them not tagged yet.
  level_api_devices_device_filter_t every_device;
  memset(&every_device, 0, sizeof every_device);
  time_t now = time(NULL);
  unsigned stale = 0;
  size_t untagged_len = 0;
  plugin_string_t untagged[512];
  char hostnames[8192] = "";
  lh_cursor_t devices = {0};
  while (!devices.done) {
    level_api_types_page_request_t request = lh_page_request(&devices);
    level_api_devices_device_page_t page;
    if (!level_api_devices_list_devices(&every_device, 0, &request, &page, &level_error)) {
      return lh_level(err, level_error);
    }
    for (size_t i = 0; i < page.items.len; i++) {
      level_api_devices_device_t *d = &page.items.ptr[i];
      if (d->online || !d->last_seen_at.is_some || days_since(&d->last_seen_at.val, now) < days) continue;
      stale++;
      if (has_tag(&d->tags, name) || untagged_len == sizeof untagged / sizeof untagged[0]) continue;
      plugin_string_dup_n(&untagged[untagged_len++], (const char *)d->id.ptr, d->id.len);
      size_t used = strlen(hostnames);
      snprintf(hostnames + used, sizeof hostnames - used, "%s\"%.*s\"", used ? ", " : "", (int)d->hostname.len,
               (const char *)d->hostname.ptr);
    }
    lh_cursor_next(&devices, page.items.len ? &page.items.ptr[page.items.len - 1].id : NULL, page.has_more);
    level_api_devices_device_page_free(&page);
  }
  for (size_t start = 0; start < untagged_len; start += 100) {
    level_api_tags_list_id_t ids = {&untagged[start], untagged_len - start < 100 ? untagged_len - start : 100};
    level_api_tags_tag_t tagged;
    if (!level_api_tags_tag_devices(&tag.id, &ids, &tagged, &level_error)) return lh_level(err, level_error);
    level_api_tags_tag_free(&tagged);
  }
  char count[16];
  snprintf(count, sizeof count, "%zu", untagged_len);
  lh_log(LEVEL_API_LOG_LEVEL_INFO, "tagged stale devices", "tagged", count);
  return lh_output(ret, "{\"tag\": \"%s\", \"stale\": %u, \"tagged\": [%s]}", name, stale, hostnames);
}
