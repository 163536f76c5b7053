"""Request body limits for every route of the app's server (an ASGI middleware).

Gradio bounds files sent to ``/upload`` (``max_file_size``), but every other route parses its JSON
body whole: a photo sent inline as a base64 data URL in ``/queue/join`` (321 MB in one probe) was
read into memory and decoded before any check ran. :class:`RequestBodyLimit` sits in front of the
whole app and refuses a body above the limit of its route *before it is read*:

* a declared ``Content-Length`` above the limit is answered ``413`` at once, nothing is read;
* a body without a length (chunked) is counted while the app reads it; at the limit the client gets
  ``413`` and the app sees the client disconnect, so it stops reading (memory stays at the limit).

Installed through ``launch(app_kwargs={"middleware": [...]})`` (:func:`body_limit_middleware`):
FastAPI puts it inside Starlette's error handler and outside every route, for local runs, share
links and Spaces alike.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Iterable, Sequence

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Multipart framing (boundaries, part headers) on top of an upload's file bytes.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


class RequestBodyLimit:
    """ASGI middleware: bodies larger than their route's limit are refused with ``413``.

    Args:
        app: the ASGI app to protect.
        default_limit: bytes allowed for any route not listed in ``limits``.
        limits: ``(path suffix, bytes)`` pairs, first match wins, e.g. ``[("/upload", 201 MB)]``.
            Suffixes are matched against the request path, so they hold under any root path or
            API prefix (``/gradio_api/upload``, ``/space/gradio_api/upload``).
        hint: added to the refusal message for routes that are not in ``limits``.
    """

    def __init__(self, app: ASGIApp, default_limit: int, limits: Iterable[tuple[str, int]] = (),
                 hint: str = "") -> None:
        self.app = app
        self.default_limit = int(default_limit)
        self.limits: Sequence[tuple[str, int]] = [(str(p).rstrip("/"), int(n)) for p, n in limits]
        self.hint = hint

    def limit_for(self, path: str) -> tuple[int, bool]:
        """(bytes allowed, whether the path has its own limit) for a request path."""
        path = path.rstrip("/")
        for suffix, limit in self.limits:
            if path.endswith(suffix):
                return limit, True
        return self.default_limit, False

    def _refusal(self, path: str, limit: int, size: int | None, listed: bool) -> bytes:
        what = f"{_megabytes(size)} " if size is not None else ""
        detail = (f"Request body {what}too large: {path} accepts at most {_megabytes(limit)}."
                  + ("" if listed or not self.hint else f" {self.hint}"))
        return json.dumps({"detail": detail}).encode()

    async def _send_refusal(self, send: Send, body: bytes) -> None:
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit, listed = self.limit_for(path)

        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                break
        if declared is not None and declared > limit:
            await self._send_refusal(send, self._refusal(path, limit, declared, listed))
            return

        received = 0
        refused = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not response_started:
                        await self._send_refusal(send, self._refusal(path, limit, None, listed))
                    return {"type": "http.disconnect"}  # the app stops reading
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused:
                return  # the 413 is the answer; drop whatever the app tries to send after it
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise  # a disconnect mid-body may make the app raise; only then is it ours


def body_limit_middleware(max_upload_bytes: int, max_body_bytes: int, hint: str = ""):
    """A ``starlette.middleware.Middleware`` for ``launch(app_kwargs={"middleware": [...]})``:
    uploads up to ``max_upload_bytes`` of file (plus multipart framing), any other body up to
    ``max_body_bytes``."""
    from starlette.middleware import Middleware

    return Middleware(RequestBodyLimit, default_limit=max_body_bytes,
                      limits=[("/upload", max_upload_bytes + MULTIPART_OVERHEAD_BYTES)], hint=hint)
