"""Live events for `/ws` subscribers: `task.updated`, `task.removed`, `worker.updated`.

Every subscriber has a bounded queue. Publishing never waits: a subscriber whose queue is full
(a slow or stuck browser) is dropped and its websocket closed, so one bad client can neither
grow A's memory nor delay the others. A dropped page reconnects and re-reads `task.list`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

log = logging.getLogger("torrentm3u8.a.events")

SUBSCRIBER_QUEUE = 256  # events buffered per subscriber before it is dropped


class Subscription:
    def __init__(self, hub: EventHub, send: trio.MemorySendChannel, receive) -> None:
        self._hub = hub
        self._send = send
        self.receive = receive
        self.dropped = False

    def __aiter__(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return self.receive.__aiter__()


class EventHub:
    def __init__(self, *, queue_size: int = SUBSCRIBER_QUEUE) -> None:
        self._queue_size = queue_size
        self._subs: set[Subscription] = set()
        self.published = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """Yield a subscription; iterate it for `(method, params)` pairs.

        Iteration ends when the hub drops the subscriber for being too slow
        (`subscription.dropped` is then True).
        """
        send, receive = trio.open_memory_channel(self._queue_size)
        sub = Subscription(self, send, receive)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)
            send.close()
            receive.close()

    def publish(self, method: str, params: dict[str, Any]) -> None:
        """Queue an event for every subscriber; never blocks."""
        self.published += 1
        for sub in list(self._subs):
            try:
                sub._send.send_nowait((method, params))
            except trio.WouldBlock:
                log.warning("dropping a slow event subscriber (%d events queued)", self._queue_size)
                sub.dropped = True
                self._subs.discard(sub)
                sub._send.close()
            except trio.ClosedResourceError:
                self._subs.discard(sub)
