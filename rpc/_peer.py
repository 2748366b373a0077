"""The trio side: a Peer that calls and answers over a MessageStream, and one-shot dispatch."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import outcome
import trio

from ._core import Connection, ErrorResponse, Event, Id, Notification, Params, Request, Response
from ._errors import (
    ApplicationError,
    CallTimeout,
    LinkClosed,
    MethodNotFound,
    RemoteError,
    RPCError,
)
from ._methods import Methods
from ._streams import MessageStream

logger = logging.getLogger("rpc")

DEFAULT_MAX_MESSAGE_SIZE = 1_048_576  # bytes
CLOSE_TIMEOUT = 2.0  # seconds granted to close the stream on the way out
BUSY = -32000  # answered when max_concurrent_handlers requests already run on the link

_current_peer: ContextVar[Peer | None] = ContextVar("rpc_current_peer", default=None)


def current_peer() -> Peer | None:
    """The Peer whose request the running handler serves (None outside a peer, e.g. HTTP)."""
    return _current_peer.get()


async def _answer(methods: Methods, conn: Connection, event: Request | Notification) -> str | None:
    """Run the method for a request or notification; the text to send, if any."""
    try:
        result = await methods.invoke(event.method, event.params)
    except RPCError as error:
        if isinstance(event, Request):
            return conn.reply_error(event, error)
        if isinstance(error, MethodNotFound):
            logger.warning("notification for an unknown method: %r", event.method)
        else:
            logger.warning("notification %r failed: %s", event.method, error.message)
        return None
    return conn.reply(event, result) if isinstance(event, Request) else None


async def dispatch(
    methods: Methods, body: bytes | str, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> str | None:
    """Answer one HTTP POST body. None means "no reply" (notifications only: HTTP 204).

    The requests of a batch run concurrently; the reply collects them in order.
    """
    conn = Connection(max_message_size=max_size, accept_responses=False)
    received = conn.receive(body)
    replies = [received.reply] if received.reply is not None else []

    async def answer(event: Request | Notification) -> None:
        text = await _answer(methods, conn, event)
        if text is not None:
            replies.append(text)

    async with trio.open_nursery() as nursery:
        for event in received.events:
            assert isinstance(event, Request | Notification)
            nursery.start_soon(answer, event)
    return replies[0] if replies else None


class _Waiter:
    """One of our calls waiting for its answer."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.event = trio.Event()
        self.outcome: outcome.Outcome[Any] | None = None

    def settle(self, result: outcome.Outcome[Any]) -> None:
        if self.outcome is None:
            self.outcome = result
            self.event.set()


class Peer:
    """Both ends of a JSON-RPC link: call the other side, and answer its calls.

    Made by `open_peer`. `context` is a free dict for the owner (handlers reach the Peer with
    `rpc.current_peer()`); `last_received` is the trio time of the last message received.
    """

    def __init__(
        self,
        stream: MessageStream,
        methods: Methods,
        *,
        call_timeout: float,
        max_message_size: int,
        max_concurrent_handlers: int,
        name: str,
    ) -> None:
        self.stream = stream
        self.methods = methods
        self.call_timeout = call_timeout
        self.max_concurrent_handlers = max_concurrent_handlers
        self.name = name
        self.context: dict[str, Any] = {}
        self.last_received = trio.current_time()
        self._conn = Connection(max_message_size=max_message_size)
        self._waiters: dict[Id, _Waiter] = {}
        self._send_lock = trio.Lock()
        self._closed = trio.Event()
        self._running_handlers = 0
        self._nursery: trio.Nursery | None = None
        self._body_scope: trio.CancelScope | None = None
        self._close_after_reply: set[trio.lowlevel.Task] = set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def call(self, method: str, params: Params = None) -> Any:
        """Call `method` on the other side and return its result.

        Raises RemoteError (its answer was an error), CallTimeout (no answer within
        call_timeout), LinkClosed, or MessageTooLarge.
        """
        if self.closed:
            raise LinkClosed(f"link to {self.name} is closed: cannot call {method!r}")
        id, text = self._conn.call(method, params)
        waiter = self._waiters[id] = _Waiter(method)
        try:
            with trio.move_on_after(self.call_timeout):
                try:
                    await self._send(text)
                except LinkClosed:
                    raise LinkClosed(
                        f"link to {self.name} closed: cannot call {method!r}"
                    ) from None
                await waiter.event.wait()
        finally:
            self._waiters.pop(id, None)
            self._conn.forget(id)
        if waiter.outcome is None:
            raise CallTimeout(
                f"{self.name} did not answer {method!r} within {self.call_timeout:g} s"
            )
        return waiter.outcome.unwrap()

    async def notify(self, method: str, params: Params = None) -> None:
        """Send a notification (no answer). Raises LinkClosed or MessageTooLarge."""
        if self.closed:
            raise LinkClosed(f"link to {self.name} is closed: cannot notify {method!r}")
        await self._send(self._conn.notify(method, params))

    def close_after_reply(self) -> None:
        """Called from a handler: close the link once this handler's reply is sent.

        For answers that end a conversation, such as a refused token.
        """
        self._close_after_reply.add(trio.lowlevel.current_task())

    async def aclose(self) -> None:
        """Close the link: pending calls fail, handlers stop, the owner's block is cancelled."""
        self._shut_down()
        await self._close_stream()

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            await self.stream.send_message(text)

    async def _send_quietly(self, text: str) -> None:
        try:
            await self._send(text)
        except LinkClosed:
            logger.debug("%s: reply not sent, the link is closed", self.name)

    def _shut_down(self) -> None:
        """Mark closed, fail every pending call, cancel the background tasks and owner block."""
        if not self._closed.is_set():
            self._closed.set()
            for waiter in self._waiters.values():
                closed = LinkClosed(
                    f"link to {self.name} closed while waiting for {waiter.method!r}"
                )
                waiter.settle(outcome.Error(closed))
        for scope in (self._body_scope, self._nursery and self._nursery.cancel_scope):
            if scope is not None:
                scope.cancel()

    async def _close_stream(self) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT) as scope:
            scope.shield = True
            try:
                await self.stream.aclose()
            except LinkClosed:
                pass

    async def _receive_loop(self) -> None:
        try:
            while True:
                try:
                    data = await self.stream.receive_message()
                except LinkClosed as exc:
                    logger.debug("%s: link closed (%s)", self.name, exc)
                    return
                self.last_received = trio.current_time()
                received = self._conn.receive(data)
                if received.reply is not None:
                    self._start(self._send_quietly, received.reply)
                for event in received.events:
                    self._on_event(event)
        finally:
            self._shut_down()

    def _start(self, fn: Any, *args: Any) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Response | ErrorResponse):
            if event.id is None:
                assert isinstance(event, ErrorResponse)
                logger.warning("%s could not read a message of ours: %s", self.name, event.message)
                return
            waiter = self._waiters.get(event.id)
            if waiter is None:
                return
            if isinstance(event, Response):
                waiter.settle(outcome.Value(event.result))
            else:
                error = RemoteError(event.code, event.message, event.data)
                waiter.settle(outcome.Error(error))
            return
        if self._running_handlers >= self.max_concurrent_handlers:
            busy = f"busy: {self._running_handlers} requests already running, retry later"
            if isinstance(event, Request):
                text = self._conn.reply_error(event, ApplicationError(BUSY, busy))
                if text is not None:
                    self._start(self._send_quietly, text)
            else:
                logger.warning("%s: dropped notification %r (%s)", self.name, event.method, busy)
            return
        self._running_handlers += 1
        self._start(self._handle, event)

    async def _handle(self, event: Request | Notification) -> None:
        _current_peer.set(self)  # this task's own context: only its handler sees it
        try:
            text = await _answer(self.methods, self._conn, event)
        finally:
            self._running_handlers -= 1
        if text is not None:
            await self._send_quietly(text)
        if trio.lowlevel.current_task() in self._close_after_reply:
            await self.aclose()


@asynccontextmanager
async def open_peer(
    stream: MessageStream,
    methods: Methods,
    *,
    call_timeout: float = 30.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_concurrent_handlers: int = 64,
    name: str = "peer",
) -> AsyncIterator[Peer]:
    """Run a Peer over `stream` for the duration of the block.

    `name` names the other side in messages ("link to worker w1 closed while waiting for ...").

    When the other side closes the link, pending calls fail with LinkClosed and the block is
    cancelled: the `async with` then exits normally. Leaving the block closes the stream.
    """
    peer = Peer(
        stream,
        methods,
        call_timeout=math.inf if call_timeout is None else call_timeout,
        max_message_size=max_message_size,
        max_concurrent_handlers=max_concurrent_handlers,
        name=name,
    )
    try:
        async with trio.open_nursery() as nursery:
            peer._nursery = nursery
            nursery.start_soon(peer._receive_loop)
            try:
                with trio.CancelScope() as body_scope:
                    peer._body_scope = body_scope
                    yield peer
            finally:
                peer._shut_down()
                await peer._close_stream()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            _reraise(group.exceptions[0])
        raise


def _reraise(exc: BaseException) -> None:
    """Raise the one exception of a nursery's group as itself (keeping its own context)."""
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context
