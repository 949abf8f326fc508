"""uvicorn's httptools HTTP/1.1 protocol with read deadlines and a cap on open connections.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but it arms that timer only
after a response, and every byte received cancels it: a connection that never sends anything, or one
that sends its headers or body a byte at a time (slowloris), is held forever, and a few hundred of
them use up the process's file descriptors. ``GuardedHttpToolsProtocol`` adds what it lacks:

* the request line and headers must have arrived ``header_timeout_s`` after the connection opened
  (or, on a kept-alive connection, after the request's first byte);
* the body must have arrived ``body_timeout_s`` after the headers;
* at most ``max_connections`` connections are open at once; one more is answered 503 and closed.

The deadlines are totals, not per-read timeouts, so trickling bytes does not extend them. A request
that misses one is answered ``408 Request Timeout`` (unless its response has started) and closed;
a connection that sent nothing is just closed. Time spent by the application is never counted.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _plain_response(status: bytes, detail: str) -> bytes:
    body = b'{"detail": "' + detail.encode() + b'"}'
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """One connection; the limits are class attributes, set by ``guarded_protocol``."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 512

    _deadline: asyncio.TimerHandle | None = None
    _request_started = False  # some bytes of the current request arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            detail = f"too many open connections (max_connections={self.max_connections}); retry later"
            transport.write(_plain_response(b"503 Service Unavailable", detail))
            transport.close()
            return
        self._arm(self.header_timeout_s, "header")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_started = True
        if self._deadline is None:  # a new request on a kept-alive connection
            self._arm(self.header_timeout_s, "header")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout_s, "body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._request_started = False
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, part: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._timed_out, part, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self, part: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle  # body: this request's; header: the previous request's, if any
        if part == "header":  # answer only on a connection no response is being written to
            may_answer = self._request_started and (cycle is None or cycle.response_complete)
        else:
            may_answer = not cycle.response_started
        if may_answer:
            name = "header_timeout_s" if part == "header" else "body_timeout_s"
            detail = f"request {part} not received within {seconds:g} s ({name})"
            self.transport.write(_plain_response(b"408 Request Timeout", detail))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application's receive() now answers http.disconnect
            cycle.message_event.set()
        self.logger.info("closed a connection whose request %s did not arrive within %g s", part, seconds)
        self.transport.close()


def guarded_protocol(
    header_timeout_s: float, body_timeout_s: float, max_connections: int
) -> type[GuardedHttpToolsProtocol]:
    """The protocol class with these limits, for ``uvicorn.Config(http=...)``."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "header_timeout_s": header_timeout_s,
            "body_timeout_s": body_timeout_s,
            "max_connections": max_connections,
        },
    )
