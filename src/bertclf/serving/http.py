"""HTTP limits that uvicorn does not set by itself: a header-read timeout and header counts.

uvicorn closes idle keep-alive connections, but a client that opens a connection and
sends its request headers slowly (or never) holds it forever. `GuardedH11Protocol`
closes a connection whose request headers are not complete `--header-timeout` seconds
after they start (or after the connection opens). h11 bounds headers that arrive in
pieces (`MAX_HEADER_BYTES`, passed to uvicorn); `limit_headers` answers 431 to a request
whose headers, however they arrived, are over `MAX_HEADER_BYTES` or `MAX_HEADERS` lines.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.h11_impl import H11Protocol

from bertclf.serving.config import ServeConfig

MAX_HEADER_BYTES = 16 * 1024  # h11's bound on one request's headers
MAX_HEADERS = 100


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on every request's headers.

    `with_timeout(seconds)` makes a subclass with another deadline (uvicorn creates
    the protocol objects itself, from a class).
    """

    header_timeout = ServeConfig.header_timeout  # the option's default

    @classmethod
    def with_timeout(cls, seconds: float) -> type[GuardedH11Protocol]:
        return type(cls.__name__, (cls,), {"header_timeout": seconds})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        if not self._in_request():
            self._arm()  # the next request's headers start now
        super().data_received(data)
        if self._in_request():
            self._disarm()  # its headers are complete

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def limit_headers(app):
    """ASGI middleware: 431 for more than MAX_HEADERS header lines, or for a request line and
    headers over MAX_HEADER_BYTES together (h11 bounds only what arrives in pieces, and
    counts the request line apart: a 100 KB URL was served)."""

    async def guarded(scope, receive, send):
        headers = scope.get("headers", []) if scope["type"] == "http" else []
        size = sum(len(k) + len(v) + 4 for k, v in headers)
        if scope["type"] == "http":  # METHOD SP target SP HTTP/1.1 CRLF
            target = scope.get("raw_path", b"") + b"?" + scope.get("query_string", b"")
            size += len(scope["method"]) + len(target) + 12
        if len(headers) > MAX_HEADERS or size > MAX_HEADER_BYTES:
            message = (
                f"request line and headers over {MAX_HEADER_BYTES} bytes, or headers over "
                f"{MAX_HEADERS} lines"
            )
            body = json.dumps({"error": message}).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 431, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return guarded
