"""levelhost SDK: the plugin's durable state, for Python plugins.

`levelhost new` copies it beside levelhost.py; import it only in a plugin
whose plugin.toml asks for `state:read` (and `state:write` to write), since it
imports `level:api/state`::

    import levelhost_state as state

    runs = state.increment("runs")              # an int
    cursor = state.get_json("cursor")           # None when never set
    state.set_json("cursor", {"at": "2025-03-15T14:30:00.000Z"})

Writes are kept only when the run ends ok; a run reads its own writes. A
failed call raises componentize-py's Err with the WIT error, which
levelhost.plugin() turns into the run's `level` error.
"""

import json

from wit_world.imports import state as _state


def get_json(key):
    """A key's value parsed as JSON; None when the key has no value."""
    entry = _state.get(key)
    return None if entry is None else json.loads(bytes(entry.value).decode("utf-8"))


def set_json(key, value):
    """Sets a key to value as JSON; returns its new version."""
    return _state.set(key, json.dumps(value).encode("utf-8"))


def delete(key):
    """Deletes a key; returns whether it had a value."""
    return _state.delete(key)


def increment(key, delta=1):
    """Adds delta to the integer a key holds and returns the sum."""
    return _state.increment(key, delta)


def entries(prefix=""):
    """Every entry whose key starts with prefix, as (key, parsed JSON value, version)."""
    after = None
    while True:
        page = _state.list_entries(prefix, after, 100)
        for entry in page.items:
            yield entry.key, json.loads(bytes(entry.value).decode("utf-8")), entry.version
        if page.next is None:
            return
        after = page.next
