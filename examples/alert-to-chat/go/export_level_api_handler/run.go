// alert-to-chat: posts each Level alert that becomes active to a chat
// channel through the `chat` connection (a Teams or Slack incoming webhook,
// whose secret URL only the host holds), with Go's own http.Client. Any
// other event posts nothing; a chat that answers an error fails the run.
package export_level_api_handler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"wit_component/level_api_handler"
	"wit_component/levelhost"
	"wit_component/levelhost/connection"
)

type alert struct {
	Name           string `json:"name"`
	Description    string `json:"description"`
	Severity       string `json:"severity"`
	DeviceHostname string `json:"device_hostname"`
}

type event struct {
	EventType string `json:"event_type"`
	Data      alert  `json:"data"`
}

func message(a alert) string {
	text := fmt.Sprintf("[%s] %s on %s", a.Severity, a.Name, a.DeviceHostname)
	if a.Description != "" {
		text += ": " + a.Description
	}
	return text
}

func Run(invocation level_api_handler.Invocation) levelhost.Result {
	return levelhost.Plugin(invocation, func(input struct {
		Event *event `json:"event"`
	}) (any, error) {
		if input.Event == nil || input.Event.EventType == "" {
			return nil, levelhost.InvalidInput{Message: "the input has no Level event"}
		}
		if input.Event.EventType != "alert_active" {
			return map[string]any{"posted": false, "event_type": input.Event.EventType}, nil
		}
		text := message(input.Event.Data)
		body, err := json.Marshal(map[string]string{"text": text})
		if err != nil {
			return nil, err
		}
		resp, err := connection.Client().Post("https://chat/", "application/json", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 300 {
			answer, _ := io.ReadAll(resp.Body)
			return nil, fmt.Errorf("the chat answered %d: %s", resp.StatusCode, answer)
		}
		levelhost.Info("posted the alert", "alert", input.Event.Data.Name)
		return map[string]any{"posted": true, "text": text}, nil
	})
}
