/* levelhost SDK: the plugin's durable state, for C plugins.
 *
 * `levelhost new --lang c` copies it beside levelhost.h; include it only in a
 * plugin whose plugin.toml asks for state:read (and state:write to write),
 * since it calls level:api/state:
 *
 *   int64_t runs;
 *   level_api_types_error_t level_error;
 *   if (!lh_state_increment("runs", 1, &runs, &level_error)) return lh_level(err, level_error);
 *
 * Writes are kept only when the run ends ok; a run reads its own writes.
 * Each function returns false with the Level error in *level_error. */
#ifndef LEVELHOST_STATE_H
#define LEVELHOST_STATE_H

#include "levelhost.h"

/* Adds `delta` to the integer `key` holds (none holds 0); *sum gets the sum. */
static inline bool lh_state_increment(const char *key, int64_t delta, int64_t *sum,
                                      level_api_types_error_t *level_error) {
  plugin_string_t k;
  plugin_string_set(&k, key);
  return level_api_state_increment(&k, delta, sum, level_error);
}

/* Sets `key` to the text `value`; *version gets its new version. */
static inline bool lh_state_set_text(const char *key, const char *value, uint64_t *version,
                                     level_api_types_error_t *level_error) {
  plugin_string_t k;
  plugin_string_set(&k, key);
  plugin_list_u8_t v = {(uint8_t *)value, strlen(value)};
  return level_api_state_set(&k, &v, version, level_error);
}

/* Reads `key` as text into *value (a copy the caller frees with
 * plugin_string_free); *found says whether the key has a value. */
static inline bool lh_state_get_text(const char *key, plugin_string_t *value, bool *found,
                                     level_api_types_error_t *level_error) {
  plugin_string_t k;
  plugin_string_set(&k, key);
  level_api_state_option_entry_t entry;
  if (!level_api_state_get(&k, &entry, level_error)) return false;
  *found = entry.is_some;
  if (entry.is_some) {
    plugin_string_dup_n(value, (const char *)entry.val.value.ptr, entry.val.value.len);
    level_api_state_option_entry_free(&entry);
  }
  return true;
}

#endif
