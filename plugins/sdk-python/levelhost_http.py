"""levelhost SDK for Python plugins: calls to the other systems of an
integration (connections), over ``wasi:http``.

A plugin names a connection as the host of its URL; the host checks the
request against the routes its grant names, adds the connection's
credential (the plugin never holds it), sends it, and hands back the answer
scrubbed of that credential::

    import levelhost_http as http

    ticket = http.post("https://ticketing/api/Tickets", json={"summary": "Disk full"}).json()
    http.post(f"https://ticketing/api/Tickets/{ticket['id']}/close")

``get``, ``post``, ``put``, ``patch`` and ``delete`` take ``json=`` (sent as
JSON), ``body=`` (bytes or text) and ``headers=``. A request the host refuses
(no route for it, a budget spent) or that cannot be sent raises
:class:`HttpError` with the host's reason; an answer with any status is a
:class:`Response` (``raise_for_status()`` turns 4xx and 5xx into
``HttpError``).

``levelhost build`` gives a plugin ``wasi:http`` when its ``plugin.toml``
names a connection (``[connections.NAME] routes = [...]``); import this
module only then.
"""

import json as _json
from urllib.parse import urlsplit

from componentize_py_types import Err
from wit_world.imports import outgoing_handler
from wit_world.imports import wasi_http_types as _t

__all__ = ["HttpError", "Response", "request", "get", "post", "put", "patch", "delete"]

# The most a write to a wasi:io output stream may carry at once.
_CHUNK = 4096


class HttpError(Exception):
    """A request that was refused, could not be sent, or (from
    ``raise_for_status``) answered with an error status."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class Response:
    """An answer: ``status``, ``headers`` (lower-case names), ``content`` (bytes)."""

    def __init__(self, url, status, headers, content):
        self.url = url
        self.status = status
        self.headers = headers
        self.content = content

    @property
    def ok(self):
        return self.status < 400

    @property
    def text(self):
        return self.content.decode("utf-8", errors="replace")

    def json(self):
        return _json.loads(self.content) if self.content else None

    def raise_for_status(self):
        if not self.ok:
            raise HttpError(f"{self.url} answered {self.status}: {self.text[:200]}", self.status)
        return self


_METHODS = {
    "GET": _t.Method_Get,
    "HEAD": _t.Method_Head,
    "POST": _t.Method_Post,
    "PUT": _t.Method_Put,
    "DELETE": _t.Method_Delete,
    "PATCH": _t.Method_Patch,
    "OPTIONS": _t.Method_Options,
}


def _reason(code):
    value = getattr(code, "value", None)
    return value if isinstance(value, str) else type(code).__name__.removeprefix("ErrorCode_")


def request(method, url, *, json=None, body=None, headers=None):
    """Sends one request to a connection and returns its :class:`Response`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HttpError(f"{url!r} is not an http(s) URL naming a connection (https://NAME/path)")
    fields = [(name.lower(), str(value).encode()) for name, value in (headers or {}).items()]
    if json is not None:
        body = _json.dumps(json).encode()
        if not any(name == "content-type" for name, _ in fields):
            fields.append(("content-type", b"application/json"))
    elif isinstance(body, str):
        body = body.encode()
    method = method.upper()
    outgoing = _t.OutgoingRequest(_t.Fields.from_list(fields))
    outgoing.set_method(_METHODS[method]() if method in _METHODS else _t.Method_Other(method))
    outgoing.set_scheme(_t.Scheme_Https() if parts.scheme == "https" else _t.Scheme_Http())
    outgoing.set_authority(parts.netloc)
    outgoing.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    outgoing_body = outgoing.body()
    # The host reads the headers when the request is handed over, the body after.
    try:
        future = outgoing_handler.handle(outgoing, None)
    except Err as e:
        raise HttpError(f"{method} {url}: {_reason(e.value)}") from None
    with outgoing_body.write() as stream:
        data = body or b""
        for at in range(0, len(data), _CHUNK):
            stream.blocking_write_and_flush(data[at : at + _CHUNK])
    _t.OutgoingBody.finish(outgoing_body, None)
    with future.subscribe() as ready:
        ready.block()
    answer = future.get()
    if answer is None or isinstance(answer, Err) or isinstance(answer.value, Err):
        code = answer.value.value if answer is not None and not isinstance(answer, Err) else None
        raise HttpError(f"{method} {url}: {_reason(code) if code is not None else 'no answer'}")
    response = answer.value.value
    status = response.status()
    answer_headers = {}
    for name, value in response.headers().entries():
        answer_headers[name.lower()] = value.decode("latin-1")
    incoming = response.consume()
    content = b""
    with incoming.stream() as stream:
        while True:
            try:
                content += stream.blocking_read(65536)
            except Err:
                break
    return Response(url, status, answer_headers, content)


def get(url, **kwargs):
    return request("GET", url, **kwargs)


def post(url, **kwargs):
    return request("POST", url, **kwargs)


def put(url, **kwargs):
    return request("PUT", url, **kwargs)


def patch(url, **kwargs):
    return request("PATCH", url, **kwargs)


def delete(url, **kwargs):
    return request("DELETE", url, **kwargs)
