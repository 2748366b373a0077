"""The workers (B) connected to A: their links, hello handshake, heartbeat and registry.

A worker connects to `/worker` and must first call `worker.hello` with the shared token.
Until then every call is refused with -32004; a wrong token is refused and the link closed.
After hello, A pings the worker every `heartbeat_interval` seconds and drops the link when
nothing arrived for `liveness_timeout` seconds. A reconnect under the same worker id replaces
the old link.
"""

from __future__ import annotations

import hmac
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

import rpc

log = logging.getLogger("torrentm3u8.a.workers")

UNAUTHORIZED = -32004
WORKER_GONE = -32010
HEARTBEAT_INTERVAL = 5.0  # seconds between two worker.ping
LIVENESS_TIMEOUT = 15.0  # seconds of silence before a worker counts as gone
CALL_TIMEOUT = 30.0  # seconds A waits for a worker's answer
CLEANUP_TIMEOUT = 2.0  # seconds granted to report a worker gone when its link ends


class WorkerGone(rpc.ApplicationError):
    """-32010: the worker is not connected (or dropped while we waited)."""

    def __init__(self, message: str) -> None:
        super().__init__(WORKER_GONE, message)


@dataclass
class WorkerLink:
    """What A knows about one worker."""

    id: str
    version: str
    peer: rpc.Peer | None
    connected: bool = True
    tasks: int = 0
    max_tasks: int | None = None
    last_seen: float = field(default_factory=time.time)  # unix seconds, frozen once gone
    # unix time minus trio time, taken once, to turn Peer.last_received into unix seconds
    clock_offset: float = field(default_factory=lambda: time.time() - trio.current_time())

    def seen(self) -> float:
        """Unix time of the last message from the worker."""
        if self.connected and self.peer is not None:
            return self.clock_offset + self.peer.last_received
        return self.last_seen

    def mark_gone(self) -> None:
        if self.connected:
            self.last_seen = self.seen()
            self.connected = False
        self.peer = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "connected": self.connected,
            "last_seen": self.seen(),
            "version": self.version,
            "tasks": self.tasks,
            "max_tasks": self.max_tasks,
        }


class _HelloGate(rpc.Methods):
    """A worker connection's methods: only `worker.hello` until it succeeded, then the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.after_hello: rpc.Methods | None = None

    async def invoke(self, name: str, params: Any) -> Any:
        if name == "worker.hello":
            return await super().invoke(name, params)
        if self.after_hello is None:
            raise rpc.ApplicationError(UNAUTHORIZED, "say worker.hello first")
        return await self.after_hello.invoke(name, params)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class WorkerRegistry:
    """Every worker link A has, keyed by worker id.

    `on_change(worker_dict)` is called (sync or async) when a worker connects or drops.
    `hello_hook(worker_id, params) -> dict` (sync or async) sees every accepted hello's params
    (without the token) and returns the hello result (ice_servers...); default `{}`.
    """

    def __init__(
        self,
        *,
        token: str,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        liveness_timeout: float = LIVENESS_TIMEOUT,
        call_timeout: float = CALL_TIMEOUT,
        max_message_size: int = rpc.DEFAULT_MAX_MESSAGE_SIZE,
        on_change: Callable[[dict[str, Any]], Any] | None = None,
        hello_hook: Callable[[str, dict[str, Any]], Any] | None = None,
    ) -> None:
        if not token:
            raise ValueError("the worker token must not be empty")
        self._token = token.encode()
        self.heartbeat_interval = heartbeat_interval
        self.liveness_timeout = liveness_timeout
        self.call_timeout = call_timeout
        self.max_message_size = max_message_size
        self._on_change = on_change
        self._hello_hook = hello_hook
        self._workers: dict[str, WorkerLink] = {}

    # -- what the rest of A asks ---------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        return [self._workers[id].to_dict() for id in sorted(self._workers)]

    def get(self, worker_id: str) -> dict[str, Any] | None:
        link = self._workers.get(worker_id)
        return link.to_dict() if link is not None else None

    def connected_ids(self) -> list[str]:
        return sorted(id for id, link in self._workers.items() if link.connected)

    async def call(self, worker_id: str, method: str, params: Any = None) -> Any:
        """Call a worker. Raises WorkerGone (-32010), rpc.RemoteError or rpc.CallTimeout."""
        link = self._workers.get(worker_id)
        if link is None or not link.connected or link.peer is None:
            raise WorkerGone(f"worker {worker_id} is not connected")
        try:
            return await link.peer.call(method, params)
        except rpc.LinkClosed:
            raise WorkerGone(f"worker {worker_id} disconnected before answering {method}")

    # -- one worker connection -----------------------------------------------------------------

    async def serve_worker(
        self,
        stream: rpc.MessageStream,
        methods_for_worker: Callable[[str], rpc.Methods],
    ) -> None:
        """Run one worker connection until it closes (`/worker` websocket handler)."""
        gate = _HelloGate()
        hello_done = trio.Event()
        accepted: list[WorkerLink] = []  # the link, once registered: cleanup unregisters it
        hello_started = False

        async def hello(
            worker_id: str,
            token: Any = None,
            version: str = "",
            tasks: list | None = None,
            max_tasks: int | None = None,
            **extra: Any,
        ) -> dict:
            """A worker introduces itself; the first call on a worker link."""
            nonlocal hello_started
            peer = rpc.current_peer()
            assert peer is not None
            if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self._token):
                log.warning("worker %r refused: wrong or missing token", worker_id)
                peer.close_after_reply()
                raise rpc.ApplicationError(UNAUTHORIZED, "worker token refused")
            if hello_started:
                raise rpc.InvalidRequest("worker.hello was already sent on this link")
            if not worker_id.strip():
                raise rpc.InvalidParams("param 'worker_id' must not be empty")
            hello_started = True
            params = {"worker_id": worker_id, "version": version, "tasks": tasks or []}
            params.update(max_tasks=max_tasks, **extra)
            hook = self._hello_hook
            result = await _maybe_await(hook(worker_id, params)) if hook else {}
            if peer.closed:  # gone while the hook ran: nothing to register, nobody to answer
                return {}
            link = WorkerLink(worker_id, version, peer, tasks=len(tasks or []), max_tasks=max_tasks)
            accepted.append(link)
            peer.name = f"worker {worker_id}"
            gate.after_hello = methods_for_worker(worker_id)
            await self._register(link)
            hello_done.set()
            return result if result is not None else {}

        gate.add(hello, name="worker.hello")
        async with rpc.open_peer(
            stream,
            gate,
            call_timeout=self.call_timeout,
            max_message_size=self.max_message_size,
            name="worker (before hello)",
        ) as peer:
            try:
                with trio.move_on_after(self.liveness_timeout) as waiting:
                    await hello_done.wait()
                if waiting.cancelled_caught:
                    log.warning("a worker connected but said no worker.hello: link closed")
                    await peer.aclose()
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._ping, peer, nursery)
                    await self._watch(peer, accepted[0])
                    nursery.cancel_scope.cancel()
            finally:
                if accepted:
                    with trio.move_on_after(CLEANUP_TIMEOUT) as cleanup:
                        cleanup.shield = True
                        await self._unregister(accepted[0])

    async def _register(self, link: WorkerLink) -> None:
        old = self._workers.get(link.id)
        self._workers[link.id] = link
        if old is not None and old.peer is not None:
            log.info("worker %s reconnected: the old link is replaced", link.id)
            old_peer = old.peer
            old.mark_gone()
            await old_peer.aclose()
        log.info("worker %s connected (version %s, %d tasks)", link.id, link.version, link.tasks)
        await self._notify(link)

    async def _unregister(self, link: WorkerLink) -> None:
        link.mark_gone()
        if self._workers.get(link.id) is link:  # not replaced by a newer link
            log.info("worker %s disconnected", link.id)
            await self._notify(link)

    async def _notify(self, link: WorkerLink) -> None:
        if self._on_change is None:
            return
        try:
            await _maybe_await(self._on_change(link.to_dict()))
        except Exception:
            log.exception("on_change failed for worker %s", link.id)

    async def _ping(self, peer: rpc.Peer, nursery: trio.Nursery) -> None:
        """worker.ping every heartbeat_interval: its answer proves the worker is alive."""
        while True:
            await trio.sleep(self.heartbeat_interval)
            nursery.start_soon(self._ping_once, peer)

    async def _ping_once(self, peer: rpc.Peer) -> None:
        try:
            await peer.call("worker.ping")
        except (rpc.RemoteError, rpc.CallTimeout, rpc.LinkClosed) as exc:
            log.debug("%s: worker.ping failed: %s", peer.name, exc)

    async def _watch(self, peer: rpc.Peer, link: WorkerLink) -> None:
        """Close the link once nothing arrived for liveness_timeout seconds."""
        while True:
            deadline = peer.last_received + self.liveness_timeout
            if trio.current_time() >= deadline:
                break
            await trio.sleep_until(deadline)
        log.warning(
            "worker %s sent nothing for %g s: marked disconnected", link.id, self.liveness_timeout
        )
        link.mark_gone()
        await peer.aclose()
