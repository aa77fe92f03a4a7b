"""alert-to-chat: posts each Level alert that becomes active to a chat
channel through the ``chat`` connection (a Teams or Slack incoming webhook,
whose secret URL only the host holds). Any other event posts nothing; a chat
that answers an error fails the run."""

import levelhost
import levelhost_http as http


def message(alert):
    text = f"[{alert.get('severity', '')}] {alert.get('name', '')} on {alert.get('device_hostname', '')}"
    return f"{text}: {alert['description']}" if alert.get("description") else text


def run(input, invocation):
    event = input.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
        raise levelhost.InvalidInput("the input has no Level event")
    if event["event_type"] != "alert_active":
        return {"posted": False, "event_type": event["event_type"]}
    alert = event.get("data") or {}
    text = message(alert)
    http.post("https://chat/", json={"text": text}).raise_for_status()
    levelhost.log.info("posted the alert", alert=alert.get("name", ""))
    return {"posted": True, "text": text}


Handler = levelhost.plugin(run)
