"""alert-to-ticket: opens a ticket in the ticketing system (the ``ticketing``
connection) for each Level alert that becomes active, and closes it when the
alert resolves. ``alert:<alert id>`` in the plugin's state holds the ticket's
id: an event delivered twice opens one ticket, and a failed run keeps no
half-made mapping."""

import levelhost
import levelhost_http as http
import levelhost_state as state


def open_ticket(alert):
    key = f"alert:{alert.get('id')}"
    known = state.get_json(key)
    if known is not None:
        return {"ticket": known, "opened": False}
    answer = http.post(
        "https://ticketing/tickets",
        json={
            "summary": f"{alert.get('name')} on {alert.get('device_hostname')}",
            "details": alert.get("description", ""),
            "severity": alert.get("severity", ""),
            "device": alert.get("device_hostname", ""),
        },
    ).raise_for_status()
    created = answer.json()
    if not isinstance(created, dict) or created.get("id") is None:
        raise levelhost.Failed(f"the ticketing system's answer has no ticket id: {answer.text}")
    ticket = str(created["id"])
    state.set_json(key, ticket)
    levelhost.log.info("opened a ticket", alert=alert.get("id"), ticket=ticket)
    return {"ticket": ticket, "opened": True}


def close_ticket(alert):
    key = f"alert:{alert.get('id')}"
    ticket = state.get_json(key)
    if ticket is None:
        return {"ticket": None, "closed": False}
    http.post(
        f"https://ticketing/tickets/{ticket}/close",
        json={"resolution": f"Level resolved the alert {alert.get('name')}"},
    ).raise_for_status()
    state.delete(key)
    levelhost.log.info("closed a ticket", alert=alert.get("id"), ticket=ticket)
    return {"ticket": ticket, "closed": True}


def run(input, invocation):
    event = input.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
        raise levelhost.InvalidInput("the input has no Level event")
    alert = event.get("data") or {}
    if event["event_type"] == "alert_active":
        return open_ticket(alert)
    if event["event_type"] == "alert_resolved":
        return close_ticket(alert)
    return {"ignored": event["event_type"]}


Handler = levelhost.plugin(run)
