"""uvicorn's httptools protocol with a lingering close, so that a client still sending gets its answer.

When the server answers before it has read the whole request (a 413 for a body over --max-body, a
415 sent before the body is read) and then closes the connection, the kernel answers the unread
bytes with a reset (RST), and a client that writes the whole body before it reads (Python's urllib,
requests, httpx) sees "Connection reset by peer" instead of the answer. uvicorn closes at once
whenever the connection does not stay open: a client that sent `Connection: close` (urllib always
does) or a response that says so.

Here such a close is graceful, as nginx's `lingering_close` and Apache's lingering close are: the
answer goes out, then only our side is shut (shutdown(SHUT_WR): the client reads the answer and an
end of stream), and what the client still sends is read and thrown away, unparsed and unbuffered,
until it closes its side, or for at most LINGER_BYTES bytes, LINGER_SECONDS in all or LINGER_IDLE
seconds without data, after which the connection is closed (and may be reset) regardless. A close
with nothing unread (a whole request answered) is immediate, as before.

$MNISTLAB_LINGER_IDLE (seconds, more than 0 and at most LINGER_SECONDS) sets LINGER_IDLE in the server
processes started with it (the tests shorten the wait they check it with); unset, unparsable or out of
range, it is the default of 2 seconds.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LINGER_BYTES = 64 * 1024 * 1024  # the most a client may still send after its answer: a 50 MB upload still gets its 413
LINGER_SECONDS = 10.0  # the longest a connection lingers in all
LINGER_IDLE_DEFAULT = 2.0


def _linger_idle() -> float:
    try:
        value = float(os.environ.get("MNISTLAB_LINGER_IDLE", LINGER_IDLE_DEFAULT))
    except ValueError:
        return LINGER_IDLE_DEFAULT
    return value if math.isfinite(value) and 0 < value <= LINGER_SECONDS else LINGER_IDLE_DEFAULT


LINGER_IDLE = _linger_idle()  # ... or without receiving anything ($MNISTLAB_LINGER_IDLE; 2 s by default)


class _Transport:
    """The real transport, except that `close()` asks the protocol, which may linger first."""

    def __init__(self, real: asyncio.Transport, protocol: "LingeringHttpToolsProtocol") -> None:
        self._real = real
        self._protocol = protocol

    def close(self) -> None:
        self._protocol.close_gracefully()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._real.is_closing()

    def __getattr__(self, name: str) -> Any:  # write, get_extra_info, pause_reading, ...
        return getattr(self._real, name)


class LingeringHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose close, while a request is still arriving, shuts only the sending side
    and discards what comes in (bounded) until the client closes, instead of resetting the connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.lingering = False
        self.receiving = False  # between a request's first byte and its end
        self.stopping = False
        self.real_transport = transport
        super().connection_made(transport)
        self.transport = _Transport(transport, self)  # type: ignore[assignment]

    def on_message_begin(self) -> None:
        self.receiving = True
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self.receiving = False
        super().on_message_complete()

    def close_gracefully(self) -> None:
        real = self.real_transport
        if self.lingering:
            return
        if not self.receiving or self.stopping or real.is_closing() or not real.can_write_eof():
            real.close()  # nothing unread (or the server stops): a plain close
            return
        self.lingering = True
        self.left = LINGER_BYTES
        now = self.loop.time()
        self.deadline, self.last_data = now + LINGER_SECONDS, now
        real.write_eof()  # after the answer still buffered: the client reads it, then the end of the stream
        real.resume_reading()  # the body may have paused reading: the kernel's buffer must be emptied
        self.linger_timer = self.loop.call_later(LINGER_IDLE, self._linger_check)

    def _linger_check(self) -> None:
        now = self.loop.time()
        end = min(self.deadline, self.last_data + LINGER_IDLE)
        if now >= end:
            self.real_transport.close()  # past the bound: the client gets a reset if it still sends
        else:
            self.linger_timer = self.loop.call_later(end - now, self._linger_check)

    def data_received(self, data: bytes) -> None:
        if not self.lingering:
            super().data_received(data)
            return
        self.left -= len(data)  # thrown away: never parsed, never kept
        self.last_data = self.loop.time()
        if self.left < 0:
            self.real_transport.close()

    def eof_received(self) -> bool | None:
        if self.lingering:
            self.real_transport.close()  # the client has sent everything and closed its side: done
            return None
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lingering:
            self.linger_timer.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self.stopping = True  # the server stops: no lingering from now on
        if self.lingering:
            self.real_transport.close()
            return
        super().shutdown()
