"""B's link to A: connect out, say hello, deliver reports in order, reconnect with backoff.

`keep_connected(connect)` runs sessions forever with exponential backoff; `run_link(...)` is one
session over trio-websocket; `Outbox` holds the reports A has not acknowledged yet (persisted
through a store, so they survive a restart) and delivers them oldest first.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import trio
import trio_websocket

import rpc

from . import __version__

log = logging.getLogger("torrentm3u8.b.link")

UNAUTHORIZED = -32004
CONNECT_TIMEOUT = 10.0  # seconds to open the websocket to A
HELLO_TIMEOUT = 15.0  # seconds A has to answer worker.hello
LIVENESS_TIMEOUT = 45.0  # seconds without any message from A (it pings every 5 s) before we drop
RETRYABLE = (OSError, rpc.Error, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed)


def describe(exc: BaseException) -> str:
    """Why a session ended, in words an operator can act on."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return f"A rejected the websocket with HTTP {exc.status_code}"
    if isinstance(exc, trio_websocket.ConnectionTimeout):
        return "A did not accept the websocket in time"
    if isinstance(exc, trio_websocket.HandshakeError) and exc.__cause__ is not None:
        return f"cannot connect to A: {exc.__cause__}"
    if isinstance(exc, rpc.RemoteError):
        return f"A answered error {exc.code}: {exc.message}"
    return str(exc) or type(exc).__name__


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_retryable(e) for e in exc.exceptions)
    return isinstance(exc, RETRYABLE)


async def keep_connected(
    connect: Callable[[], Awaitable[Any]],
    *,
    first_delay: float = 1.0,
    max_delay: float = 30.0,
    stable_after: float = 60.0,
    jitter: float = 0.1,
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run `await connect()` (one whole session) forever, backing off between sessions.

    Delays go first_delay, x2, x2... up to max_delay, each spread by +/- `jitter` (a fraction;
    0 in tests). A session that lasted `stable_after` seconds resets the delay. Errors other
    than connection/link errors propagate.
    """
    rng = rng or random.Random()
    delay = first_delay
    task_status.started()
    while True:
        began = trio.current_time()
        try:
            await connect()
            reason = "link to A closed"
        except Exception as exc:
            if not _retryable(exc):
                raise
            reason = describe(exc)
        if trio.current_time() - began >= stable_after:
            delay = first_delay
        wait = max(0.0, delay * (1 + rng.uniform(-jitter, jitter))) if jitter else delay
        log.warning("%s; reconnecting in %.1f s", reason, wait)
        await trio.sleep(wait)
        delay = min(delay * 2, max_delay)


@dataclass
class LinkState:
    """What the worker can read about its link: up or not, and A's last hello result."""

    connected: bool = False
    hello: dict[str, Any] = field(default_factory=dict)

    @property
    def ice_servers(self) -> list[dict[str, Any]]:
        return list(self.hello.get("ice_servers") or [])


def _with_ping(methods: rpc.Methods) -> rpc.Methods:
    table = methods.copy()
    if "worker.ping" not in table:

        async def ping() -> dict:
            """A's heartbeat."""
            return {"time": time.time()}

        table.add(ping, name="worker.ping")
    return table


async def run_link(
    url: str,
    *,
    token: str,
    worker_id: str,
    methods: rpc.Methods,
    snapshot: Callable[[], Awaitable[list[dict[str, Any]]]],
    outbox: Outbox,
    ssl_context: Any = None,
    max_message_size: int = rpc.DEFAULT_MAX_MESSAGE_SIZE,
    task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """One session with A over a websocket to `url`; returns when the link closes.

    `options` go to `run_session` (max_tasks, state, liveness_timeout, hello_timeout).
    """
    async with rpc.open_websocket(
        url, ssl_context, max_message_size=max_message_size, connect_timeout=CONNECT_TIMEOUT
    ) as ws:
        await run_session(
            rpc.TrioWebSocketStream(ws),
            token=token,
            worker_id=worker_id,
            methods=methods,
            snapshot=snapshot,
            outbox=outbox,
            max_message_size=max_message_size,
            task_status=task_status,
            **options,
        )


async def run_session(
    stream: rpc.MessageStream,
    *,
    token: str,
    worker_id: str,
    methods: rpc.Methods,
    snapshot: Callable[[], Awaitable[list[dict[str, Any]]]],
    outbox: Outbox,
    max_tasks: int | None = None,
    state: LinkState | None = None,
    max_message_size: int = rpc.DEFAULT_MAX_MESSAGE_SIZE,
    hello_timeout: float = HELLO_TIMEOUT,
    liveness_timeout: float = LIVENESS_TIMEOUT,
    task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One session over an open stream: hello, then deliver the outbox and answer A.

    Reports A's hello result through `task_status` (and `state.hello`). Raises RemoteError
    when A refuses the hello, CallTimeout when it does not answer it.
    """
    state = state if state is not None else LinkState()
    async with rpc.open_peer(
        stream, _with_ping(methods), max_message_size=max_message_size, name="A"
    ) as peer:
        hello = {
            "worker_id": worker_id,
            "token": token,
            "version": __version__,
            "tasks": await snapshot(),
            "max_tasks": max_tasks,
        }
        with trio.move_on_after(hello_timeout) as waiting:
            try:
                result = await peer.call("worker.hello", hello)
            except rpc.RemoteError as exc:
                if exc.code == UNAUTHORIZED:
                    log.error("A refused the worker token: check --token (%s)", exc.message)  # noqa: TRY400
                raise
        if waiting.cancelled_caught:
            raise rpc.CallTimeout(f"A did not answer worker.hello within {hello_timeout:g} s")
        state.hello = result if isinstance(result, dict) else {}
        state.connected = True
        log.info("connected to A as worker %s", worker_id)
        task_status.started(state.hello)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(outbox.deliver, peer)
                await _watch(peer, liveness_timeout)
                nursery.cancel_scope.cancel()
        finally:
            state.connected = False


async def _watch(peer: rpc.Peer, liveness_timeout: float) -> None:
    """Return once the link closed; close it first if A went silent (a half-open TCP link)."""
    while not peer.closed:
        deadline = peer.last_received + liveness_timeout
        if trio.current_time() >= deadline:
            log.warning("A sent nothing for %g s: dropping the link", liveness_timeout)
            await peer.aclose()
            return
        with trio.move_on_at(deadline):
            await peer.wait_closed()


class OutboxStore(Protocol):
    """Where the outbox survives restarts (B's sqlite file, or JsonFileStore)."""

    def load(self) -> list[dict[str, Any]]: ...
    def save(self, reports: list[dict[str, Any]]) -> None: ...


class JsonFileStore:
    """An OutboxStore in one JSON file, replaced atomically on every save."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> list[dict[str, Any]]:
        try:
            reports = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("outbox file %s is unreadable (%s): starting empty", self.path, exc)
            return []
        return reports if isinstance(reports, list) else []

    def save(self, reports: list[dict[str, Any]]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(reports, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


@dataclass
class Report:
    method: str
    params: dict[str, Any]
    report_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    coalesce_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "params": self.params,
            "report_id": self.report_id,
            "coalesce_key": self.coalesce_key,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        return cls(d["method"], d["params"], d["report_id"], d.get("coalesce_key"))


class Outbox:
    """Reports for A, delivered in order and kept until A's answer acknowledges them.

    Each report carries a unique `report_id` param so A applies it once even if resent.
    """

    def __init__(self, store: OutboxStore | None = None) -> None:
        self._store = store
        self._reports: list[Report] = []
        for d in store.load() if store is not None else []:
            try:
                self._reports.append(Report.from_dict(d))
            except (KeyError, TypeError):
                log.warning("dropped an unreadable stored report: %.200r", d)
        self._in_flight: Report | None = None
        self._changed = trio.Event()

    def __len__(self) -> int:
        return len(self._reports)

    def pending(self) -> list[tuple[str, dict[str, Any]]]:
        """(method, params) of every undelivered report, oldest first."""
        return [(r.method, r.params) for r in self._reports]

    def put(self, method: str, params: dict[str, Any], *, coalesce_key: str | None = None) -> None:
        """Queue a report; it replaces an undelivered one with the same coalesce_key."""
        if coalesce_key is not None:
            self._reports = [
                r for r in self._reports if r.coalesce_key != coalesce_key or r is self._in_flight
            ]
        self._reports.append(Report(method, dict(params), coalesce_key=coalesce_key))
        self._save()
        self._changed.set()

    def _save(self) -> None:
        if self._store is not None:
            self._store.save([r.to_dict() for r in self._reports])

    def _remove(self, report: Report) -> None:
        if report in self._reports:
            self._reports.remove(report)
            self._save()

    async def deliver(self, peer: rpc.Peer) -> None:
        """Send reports oldest first while the link is up; returns when it closes."""
        while True:
            if not self._reports:
                self._changed = trio.Event()
                await self._changed.wait()
                continue
            report = self._reports[0]
            self._in_flight = report
            try:
                await peer.call(report.method, {**report.params, "report_id": report.report_id})
            except rpc.LinkClosed:
                return  # kept: the next session sends it again
            except rpc.CallTimeout:
                log.warning("A did not acknowledge %s in time: sending it again", report.method)
                continue
            except rpc.RemoteError as exc:
                log.warning("A refused report %s %s: %s", report.method, report.params, exc)
            except rpc.MessageTooLarge as exc:
                log.error("report %s dropped: %s", report.method, exc)  # noqa: TRY400
            finally:
                self._in_flight = None
            self._remove(report)
