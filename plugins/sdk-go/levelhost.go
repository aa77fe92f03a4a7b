// Package levelhost is the levelhost SDK for Go plugins (stock Go for
// wasip1 with wit-bindgen go). `levelhost new --lang go` copies it into the
// project as levelhost/levelhost.go; the plugin's Run hands its work to
// levelhost.Plugin:
//
//	func Run(invocation level_api_handler.Invocation) levelhost.Result {
//		return levelhost.Plugin(invocation, func(input map[string]any) (any, error) {
//			devices, err := levelhost.Walk(func(page level_api_types.PageRequest) ([]level_api_devices.Device, bool, error) {
//				answer := level_api_devices.ListDevices(level_api_devices.DeviceFilter{}, 0, page)
//				if answer.IsErr() {
//					return nil, false, levelhost.Level(answer.Err())
//				}
//				return answer.Ok().Items, answer.Ok().HasMore, nil
//			}, func(d level_api_devices.Device) string { return d.Id })
//			if err != nil {
//				return nil, err
//			}
//			levelhost.Info("counted devices", "devices", len(devices))
//			return map[string]int{"devices": len(devices)}, nil
//		})
//	}
//
// Plugin parses the input into the run function's input type, encodes what
// it returns as JSON, and turns what goes wrong into the matching run error:
// an InvalidInput error as invalid-input, a Level error as level, any other
// error as failed, and a panic as failed with its message and stack.
//
// It imports only the handler's and log's bindings, which every plugin world
// has, so it fits a world narrowed to the plugin's capabilities.
package levelhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"

	witTypes "go.bytecodealliance.org/pkg/wit/types"

	"wit_component/level_api_handler"
	"wit_component/level_api_log"
	"wit_component/level_api_types"
)

// Result is what the plugin's Run returns.
type Result = witTypes.Result[string, level_api_handler.RunError]

// InvalidInput is an error saying the input is not what the plugin accepts.
type InvalidInput struct{ Message string }

func (e InvalidInput) Error() string { return "invalid input: " + e.Message }

// LevelError is a Level call's error, as an error value.
type LevelError struct{ Err level_api_types.Error }

func (e LevelError) Error() string { return fmt.Sprintf("Level call failed: %v", e.Err) }

// Level wraps a Level call's error as an error value.
func Level(err level_api_types.Error) error { return LevelError{Err: err} }

// Plugin runs the plugin's work and turns its outcome into the run's result.
func Plugin[I any](invocation level_api_handler.Invocation, run func(input I) (any, error)) (result Result) {
	defer func() {
		if r := recover(); r != nil {
			result = failed(fmt.Sprintf("panic: %v\n%s", r, debug.Stack()))
		}
	}()
	var input I
	if invocation.Input != "" {
		if err := json.Unmarshal([]byte(invocation.Input), &input); err != nil {
			return witTypes.Err[string](level_api_handler.MakeRunErrorInvalidInput(err.Error()))
		}
	}
	output, err := run(input)
	if err != nil {
		var invalid InvalidInput
		var level LevelError
		switch {
		case errors.As(err, &invalid):
			return witTypes.Err[string](level_api_handler.MakeRunErrorInvalidInput(invalid.Message))
		case errors.As(err, &level):
			return witTypes.Err[string](level_api_handler.MakeRunErrorLevel(level.Err))
		default:
			return failed(err.Error())
		}
	}
	text, err := json.Marshal(output)
	if err != nil {
		return failed("cannot encode the output: " + err.Error())
	}
	return witTypes.Ok[string, level_api_handler.RunError](string(text))
}

func failed(message string) Result {
	return witTypes.Err[string](level_api_handler.MakeRunErrorFailed(message))
}

// Walk returns every item of a cursor-paged Level list: list gets each page
// request (100 items after the last one seen) and returns that page's items
// and whether more follow; id gives an item's id, the next cursor.
func Walk[T any](list func(page level_api_types.PageRequest) ([]T, bool, error), id func(T) string) ([]T, error) {
	var all []T
	after := witTypes.None[string]()
	for {
		items, more, err := list(level_api_types.PageRequest{Limit: witTypes.Some[uint32](100), StartingAfter: after})
		if err != nil {
			return all, err
		}
		all = append(all, items...)
		if !more || len(items) == 0 {
			return all, nil
		}
		after = witTypes.Some(id(items[len(items)-1]))
	}
}

func write(level level_api_log.Level, message string, fields []any) {
	pairs := make([]witTypes.Tuple2[string, string], 0, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		pairs = append(pairs, witTypes.Tuple2[string, string]{F0: fmt.Sprint(fields[i]), F1: fmt.Sprint(fields[i+1])})
	}
	level_api_log.Log(level, message, pairs)
}

// Debug writes a structured log line; fields are key, value, key, value...
func Debug(message string, fields ...any) { write(level_api_log.Level_Debug, message, fields) }

// Info writes a structured log line; fields are key, value, key, value...
func Info(message string, fields ...any) { write(level_api_log.Level_Info, message, fields) }

// Warn writes a structured log line; fields are key, value, key, value...
func Warn(message string, fields ...any) { write(level_api_log.Level_Warn, message, fields) }

// Error writes a structured log line; fields are key, value, key, value...
func Error(message string, fields ...any) { write(level_api_log.Level_Error, message, fields) }
