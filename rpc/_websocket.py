"""A trio-websocket client connection that never leaks its socket."""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio_websocket
import wsproto.utilities

from ._peer import DEFAULT_MAX_MESSAGE_SIZE, _reraise

CONNECT_TIMEOUT = 10.0  # seconds for the TCP connection, then as much for the handshake
CLOSE_TIMEOUT = 2.0  # seconds granted to the closing handshake


@asynccontextmanager
async def open_websocket(
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A client websocket to `url` (ws:// or wss://) whose TCP stream is always closed.

    Use it instead of `trio_websocket.open_websocket_url`: trio-websocket 0.12 leaves the socket
    open when the server closes the websocket first or rejects the handshake (a ResourceWarning
    and an fd held until garbage collection, on every reconnect). Raises OSError when nothing
    listens, trio_websocket.ConnectionTimeout / ConnectionRejected / HandshakeError otherwise.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a websocket URL (ws://host:port/path): {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    host_header = parts.hostname if port in (80, 443) else f"{parts.hostname}:{port}"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream: trio.abc.Stream
    with trio.move_on_after(connect_timeout) as connecting:
        if secure:
            stream = await trio.open_ssl_over_tcp_stream(
                parts.hostname,
                port,
                ssl_context=ssl_context or ssl.create_default_context(),
                https_compatible=True,
            )
        else:
            stream = await trio.open_tcp_stream(parts.hostname, port)
    if connecting.cancelled_caught:
        raise trio_websocket.ConnectionTimeout(f"no TCP connection to {host_header} in time")
    try:
        async with trio.open_nursery() as nursery:
            with trio.move_on_after(connect_timeout) as handshaking:
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    host_header,
                    resource,
                    extra_headers=extra_headers,
                    max_message_size=max_message_size,
                )
            if handshaking.cancelled_caught:
                raise trio_websocket.ConnectionTimeout(f"no websocket handshake from {url}")
            try:
                yield ws
            finally:
                with trio.move_on_after(CLOSE_TIMEOUT) as closing:
                    closing.shield = True
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        pong, rest = group.split(_pong_while_closing)
        if rest is None:
            return  # the link was ending anyway (its close then waits out CLOSE_TIMEOUT)
        if len(rest.exceptions) == 1:  # the handshake's (rejection) or the block's own error
            _reraise(rest.exceptions[0])
        if pong is None:
            raise
        raise rest from None
    finally:
        await trio.aclose_forcefully(stream)


def _pong_while_closing(exc: BaseException) -> bool:
    """trio-websocket 0.12 answers a Ping that arrives after our Close with a Pong wsproto
    refuses to send, and that LocalProtocolError escapes its reader task into our nursery
    (python-trio/trio-websocket#184). It only happens while we are closing: harmless."""
    return isinstance(exc, wsproto.utilities.LocalProtocolError) and str(exc).startswith(
        "Event Pong("
    )
