"""MessageStream: what a Peer needs from a transport, and adapters for the ones we use."""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import trio
import trio_websocket

from ._errors import LinkClosed

NORMAL_CLOSURE = 1000  # websocket close code


@runtime_checkable
class MessageStream(Protocol):
    """A bidirectional stream of whole text messages (a websocket, or a fake of one)."""

    async def send_message(self, message: str) -> None:
        """Send one message; raises LinkClosed when the link is gone."""

    async def receive_message(self) -> str | bytes:
        """The next message; raises LinkClosed when the other side is gone."""

    async def aclose(self) -> None:
        """Close the link (idempotent)."""


class TrioWebSocketStream:
    """A trio_websocket.WebSocketConnection as a MessageStream."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws

    async def send_message(self, message: str) -> None:
        try:
            await self.ws.send_message(message)
        except trio_websocket.ConnectionClosed as exc:
            raise LinkClosed(f"websocket closed: {_reason(exc)}") from None

    async def receive_message(self) -> str | bytes:
        try:
            return await self.ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise LinkClosed(f"websocket closed: {_reason(exc)}") from None

    async def aclose(self) -> None:
        await self.ws.aclose()


def _reason(exc: trio_websocket.ConnectionClosed) -> str:
    reason = exc.reason
    if reason is None:
        return "connection lost"
    return f"{reason.code} {reason.name}" + (f" ({reason.reason})" if reason.reason else "")


class QuartWebSocketStream:
    """Quart's `websocket` object as a MessageStream (duck-typed: send, receive, close).

    Quart cancels the websocket handler when the client goes away, so receive rarely raises;
    the channel errors quart-trio can surface are mapped to LinkClosed anyway.
    """

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._closed = False

    async def send_message(self, message: str) -> None:
        if self._closed:
            raise LinkClosed("websocket closed")
        try:
            await self.ws.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise LinkClosed("websocket closed") from None

    async def receive_message(self) -> str | bytes:
        if self._closed:
            raise LinkClosed("websocket closed")
        try:
            message = await self.ws.receive()
        except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
            raise LinkClosed("websocket closed") from None
        # Quart reads `event.get("bytes") or event["text"]`: an empty binary frame is None.
        return b"" if message is None else message

    async def aclose(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.ws.close(code, reason)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except RuntimeError:  # Quart: "Cannot close websocket multiple times" (the app did)
            pass


class MemoryMessageStream:
    """One end of `memory_stream_pair`: a fake websocket for tests, over memory channels."""

    def __init__(
        self,
        send_channel: trio.MemorySendChannel[str],
        receive_channel: trio.MemoryReceiveChannel[str | bytes],
    ) -> None:
        self._send_channel = send_channel
        self._receive_channel = receive_channel

    async def send_message(self, message: str) -> None:
        try:
            await self._send_channel.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise LinkClosed("memory stream closed") from None

    async def receive_message(self) -> str | bytes:
        try:
            return await self._receive_channel.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise LinkClosed("memory stream closed") from None

    async def aclose(self) -> None:
        await self._send_channel.aclose()
        await self._receive_channel.aclose()


def memory_stream_pair(
    max_buffer: float = math.inf,
) -> tuple[MemoryMessageStream, MemoryMessageStream]:
    """Two connected in-memory MessageStreams: closing one makes the other's receive raise."""
    left_send, right_receive = trio.open_memory_channel[str | bytes](max_buffer)
    right_send, left_receive = trio.open_memory_channel[str | bytes](max_buffer)
    return (
        MemoryMessageStream(left_send, left_receive),  # type: ignore[arg-type]
        MemoryMessageStream(right_send, right_receive),  # type: ignore[arg-type]
    )
