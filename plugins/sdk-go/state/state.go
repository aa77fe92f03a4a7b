// Package state is the levelhost SDK's help with the plugin's durable
// state, for Go plugins. `levelhost new --lang go` copies it into the
// project as levelhost/state/state.go; import it (wit_component/levelhost/state)
// only in a plugin whose plugin.toml asks for state:read (and state:write to
// write), since it imports level:api/state:
//
//	runs, err := state.Increment("runs", 1)
//	var cursor string
//	found, err := state.GetJSON("cursor", &cursor)
//	_, err = state.SetJSON("cursor", "2025-03-15T14:30:00.000Z")
//
// Writes are kept only when the run ends ok; a run reads its own writes. A
// Level error comes back as levelhost.LevelError, which levelhost.Plugin
// turns into the run's level error.
package state

import (
	"encoding/json"

	"wit_component/level_api_state"
	"wit_component/levelhost"
)

// Increment adds delta to the integer a key holds (none holds 0) and returns the sum.
func Increment(key string, delta int64) (int64, error) {
	answer := level_api_state.Increment(key, delta)
	if answer.IsErr() {
		return 0, levelhost.Level(answer.Err())
	}
	return answer.Ok(), nil
}

// GetJSON parses a key's value as JSON into into; false when the key has no value.
func GetJSON(key string, into any) (bool, error) {
	answer := level_api_state.Get(key)
	if answer.IsErr() {
		return false, levelhost.Level(answer.Err())
	}
	entry := answer.Ok()
	if entry.IsNone() {
		return false, nil
	}
	return true, json.Unmarshal(entry.Some().Value, into)
}

// SetJSON sets a key to value as JSON and returns its new version.
func SetJSON(key string, value any) (uint64, error) {
	bytes, err := json.Marshal(value)
	if err != nil {
		return 0, err
	}
	answer := level_api_state.Set(key, bytes)
	if answer.IsErr() {
		return 0, levelhost.Level(answer.Err())
	}
	return answer.Ok(), nil
}

// Delete deletes a key; true when it had a value.
func Delete(key string) (bool, error) {
	answer := level_api_state.Delete(key)
	if answer.IsErr() {
		return false, levelhost.Level(answer.Err())
	}
	return answer.Ok(), nil
}
