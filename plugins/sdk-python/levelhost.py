"""levelhost SDK for Python plugins (componentize-py).

`levelhost new --lang python` copies this file into the project; the plugin
imports it next to the `level:api` interfaces it calls::

    import levelhost
    from wit_world.imports import devices

    def run(input, invocation):
        nothing = devices.DeviceFilter(group=None, tag_id=None, hostname=None, serial_number=None)
        every = levelhost.pages(lambda page: devices.list_devices(nothing, devices.DeviceInclude(0), page))
        total = sum(1 for _ in every)
        levelhost.log.info("counted devices", devices=total)
        return {"devices": total}

    Handler = levelhost.plugin(run)

What it does for the plugin:

- ``plugin(run)`` makes the ``Handler`` class componentize-py exports. It parses
  the input (a JSON document), calls ``run(input, invocation)`` and returns what
  ``run`` returns as JSON. Whatever ``run`` raises ends the run as the matching
  ``run-error``: ``InvalidInput`` and ``Failed`` as themselves, a Level call's
  ``Err`` as ``level``, and any other exception as ``failed`` with its
  traceback.
- ``pages(list_page)`` walks every page of a Level list, yielding its items.
- ``log.info(message, **fields)`` (and trace, debug, warn, error) writes a
  structured log line.
- ``print`` works: its output is kept with the run's logs.

It imports only ``level:api/log`` and the handler's own types, which every
plugin world has, so it fits a world narrowed to the plugin's capabilities.
"""

import json
import traceback

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import handler as _handler
from wit_world.imports import log as _log

__all__ = ["Failed", "InvalidInput", "log", "pages", "plugin"]


class InvalidInput(Exception):
    """The input is not what the plugin accepts; the message says what is wrong."""


class Failed(Exception):
    """The plugin gave up; the message says why."""


def plugin(run):
    """The ``Handler`` class of a plugin whose work is ``run(input, invocation)``."""

    class Handler(exports.Handler):
        def run(self, invocation):
            try:
                data = json.loads(invocation.input or "{}")
            except ValueError as e:
                raise Err(_handler.RunError_InvalidInput(f"the input is not JSON: {e}"))
            try:
                output = run(data, invocation)
            except InvalidInput as e:
                raise Err(_handler.RunError_InvalidInput(str(e)))
            except Failed as e:
                raise Err(_handler.RunError_Failed(str(e)))
            except Err as e:
                if isinstance(e.value, (_handler.RunError_InvalidInput, _handler.RunError_Level, _handler.RunError_Failed)):
                    raise
                # A Level call's error the plugin did not handle.
                raise Err(_handler.RunError_Level(e.value))
            except Exception:
                text = "uncaught " + traceback.format_exc().rstrip()
                raise Err(_handler.RunError_Failed(text))
            return json.dumps(output)

    return Handler


def pages(list_page, limit=100):
    """Every item of a cursor-paged Level list; ``list_page(page_request)`` returns one page."""
    from wit_world.imports import types

    after = None
    while True:
        page = list_page(types.PageRequest(limit=limit, starting_after=after, ending_before=None))
        yield from page.items
        if not page.has_more or not page.items:
            return
        after = page.items[-1].id


class _Log:
    """Structured logs: ``log.info("tagged", device=device.id)``."""

    def _write(self, level, message, fields):
        _log.log(level, str(message), [(key, str(value)) for key, value in fields.items()])

    def trace(self, message, **fields):
        self._write(_log.Level.TRACE, message, fields)

    def debug(self, message, **fields):
        self._write(_log.Level.DEBUG, message, fields)

    def info(self, message, **fields):
        self._write(_log.Level.INFO, message, fields)

    def warn(self, message, **fields):
        self._write(_log.Level.WARN, message, fields)

    def error(self, message, **fields):
        self._write(_log.Level.ERROR, message, fields)


log = _Log()
