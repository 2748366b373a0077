"""B's link to A: backoff, the outbox, one session on memory streams, and the real thing."""

import itertools
import json
import logging
import random
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket

import rpc
from torrentm3u8_a.workers import WorkerRegistry
from torrentm3u8_b import __version__
from torrentm3u8_b.link import (
    JsonFileStore,
    LinkState,
    Outbox,
    keep_connected,
    run_link,
    run_session,
)

DEADLINE = 10  # seconds, for tests on real time


# -- keep_connected ---------------------------------------------------------------------------


async def test_backoff_doubles_up_to_the_cap(autojump_clock) -> None:
    attempts = []

    async def connect() -> None:
        attempts.append(trio.current_time())
        raise OSError("connection refused")

    with trio.move_on_after(20):
        await keep_connected(connect, first_delay=1, max_delay=8, jitter=0)
    assert attempts == [0, 1, 3, 7, 15]

    attempts.clear()
    start = trio.current_time()
    with trio.move_on_after(100):
        await keep_connected(connect, jitter=0)  # defaults: 1 s doubling up to 30 s
    assert [t - start for t in attempts] == [0, 1, 3, 7, 15, 31, 61, 91]


async def test_delay_resets_after_a_stable_session(autojump_clock) -> None:
    attempts = []

    async def connect() -> None:
        attempts.append(trio.current_time())
        if len(attempts) == 3:
            await trio.sleep(100)  # a long, healthy session that then ends
            return
        raise rpc.LinkClosed("gone")

    with trio.move_on_after(108):
        await keep_connected(connect, first_delay=1, stable_after=60, jitter=0)
    # 0 fails, 1 fails, 3 lasts until 103; back to 1 s: 104, then 2 s: 106.
    assert attempts == [0, 1, 3, 104, 106]


async def test_short_sessions_keep_backing_off(autojump_clock) -> None:
    attempts = []

    async def connect() -> None:
        attempts.append(trio.current_time())
        await trio.sleep(10)  # connects, then drops after 10 s: not stable

    with trio.move_on_after(60):
        await keep_connected(connect, first_delay=1, stable_after=60, jitter=0)
    assert attempts == [0, 11, 23, 37, 55]


async def test_jitter_spreads_the_delays(autojump_clock) -> None:
    attempts = []

    async def connect() -> None:
        attempts.append(trio.current_time())
        raise OSError

    with trio.move_on_after(200):
        await keep_connected(connect, max_delay=16, jitter=0.1, rng=random.Random(7))
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    nominal = [1, 2, 4, 8, 16, 16, 16, 16]
    for gap, expected in zip(gaps, nominal, strict=False):
        assert expected * 0.9 <= gap <= expected * 1.1
    assert gaps[4:8] != [16, 16, 16, 16]


async def test_retries_are_logged_and_bugs_propagate(autojump_clock, caplog) -> None:
    calls = 0

    async def connect() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise trio_websocket.ConnectionRejected(403, (), b"")
        if calls == 2:
            raise ExceptionGroup("nursery", [OSError("network is unreachable")])
        raise KeyError("a bug")

    with caplog.at_level(logging.WARNING, logger="torrentm3u8.b.link"):
        with pytest.raises(KeyError):
            await keep_connected(connect, jitter=0)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "A rejected the websocket with HTTP 403; reconnecting in 1.0 s",
        "network is unreachable; reconnecting in 2.0 s",
    ]


# -- Outbox -----------------------------------------------------------------------------------


class FakeA:
    """A's side of the link, recording reports; `fail` decides how the next calls go."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        self.got = trio.Event()
        self.plan: list[str] = []  # per call: "ok", "refuse", "hang", "drop"
        self.methods = rpc.Methods()
        for name in ("task.state", "task.progress", "task.hls_ready"):
            self.methods.add(partial(self.record, name), name=name)

    async def record(self, method: str, **params: Any) -> None:
        action = self.plan.pop(0) if self.plan else "ok"
        if action == "hang":
            await trio.sleep_forever()
        if action == "drop":
            peer = rpc.current_peer()
            assert peer is not None
            await peer.aclose()
            return  # dropped before A applied it
        if action == "refuse":
            raise rpc.ApplicationError(-32001, "unknown task")
        self.received.append((method, params))
        self.got.set()

    async def wait_for(self, n: int) -> None:
        while len(self.received) < n:
            self.got = trio.Event()
            await self.got.wait()


async def serve_a(fake: FakeA, stream, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    async with rpc.open_peer(stream, fake.methods, name="worker") as peer:
        task_status.started(peer)
        await peer.wait_closed()


async def deliver_session(fake: FakeA, outbox: Outbox, **options: Any) -> None:
    """One link: B's outbox delivering to fake A until the link closes."""
    left, right = rpc.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_a, fake, right)
        async with rpc.open_peer(left, rpc.Methods(), name="A", **options) as peer:
            await outbox.deliver(peer)
        nursery.cancel_scope.cancel()


async def test_reports_are_delivered_in_order_with_unique_ids() -> None:
    fake, outbox = FakeA(), Outbox()
    outbox.put("task.state", {"task_id": "t1", "state": "downloading"})
    outbox.put("task.progress", {"task_id": "t1", "percent": 10.0})
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(deliver_session, fake, outbox)
            await fake.wait_for(2)
            outbox.put("task.state", {"task_id": "t1", "state": "completed"})  # while running
            await fake.wait_for(3)
            await trio.testing.wait_all_tasks_blocked()  # B got A's answer
            assert len(outbox) == 0
            nursery.cancel_scope.cancel()
    assert [(m, p["state"] if "state" in p else p["percent"]) for m, p in fake.received] == [
        ("task.state", "downloading"),
        ("task.progress", 10.0),
        ("task.state", "completed"),
    ]
    ids = [p["report_id"] for _, p in fake.received]
    assert len(set(ids)) == 3 and all(isinstance(i, str) and i for i in ids)


def test_progress_reports_coalesce() -> None:
    outbox = Outbox()
    outbox.put("task.progress", {"task_id": "t1", "percent": 1.0}, coalesce_key="progress:t1")
    outbox.put("task.progress", {"task_id": "t2", "percent": 5.0}, coalesce_key="progress:t2")
    outbox.put("task.state", {"task_id": "t1", "state": "completed"})
    outbox.put("task.progress", {"task_id": "t1", "percent": 100.0}, coalesce_key="progress:t1")
    assert outbox.pending() == [
        ("task.progress", {"task_id": "t2", "percent": 5.0}),
        ("task.state", {"task_id": "t1", "state": "completed"}),
        ("task.progress", {"task_id": "t1", "percent": 100.0}),
    ]


async def test_a_dropped_link_keeps_the_report_for_the_next_session() -> None:
    fake, outbox = FakeA(), Outbox()
    fake.plan = ["drop"]
    outbox.put("task.state", {"task_id": "t1", "state": "failed", "error": "disk full"})
    (report_id,) = [r.report_id for r in outbox._reports]
    with trio.fail_after(DEADLINE):
        await deliver_session(fake, outbox)  # returns: the link dropped mid-call
        assert len(outbox) == 1
        await deliver_session_until(fake, outbox, 1)
    ((method, params),) = fake.received
    assert method == "task.state" and params["error"] == "disk full"
    assert params["report_id"] == report_id  # the same report: A can tell it is a resend
    assert len(outbox) == 0


async def deliver_session_until(fake: FakeA, outbox: Outbox, n: int, **options: Any) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(deliver_session, fake, outbox, **options))
        await fake.wait_for(n)
        await trio.testing.wait_all_tasks_blocked()  # B got A's answer
        nursery.cancel_scope.cancel()


async def test_an_unanswered_report_is_sent_again_with_the_same_id(autojump_clock) -> None:
    fake, outbox = FakeA(), Outbox()
    fake.plan = ["hang"]
    outbox.put("task.hls_ready", {"task_id": "t1", "file_index": 0})
    (report_id,) = [r.report_id for r in outbox._reports]
    await deliver_session_until(fake, outbox, 1, call_timeout=30)
    assert trio.current_time() == pytest.approx(30)
    assert fake.received[0][1]["report_id"] == report_id


async def test_a_refused_report_is_dropped_not_retried_forever(caplog) -> None:
    fake, outbox = FakeA(), Outbox()
    fake.plan = ["refuse", "ok"]
    outbox.put("task.state", {"task_id": "gone", "state": "completed"})
    outbox.put("task.state", {"task_id": "t2", "state": "completed"})
    with trio.fail_after(DEADLINE):
        await deliver_session_until(fake, outbox, 1)
    assert [p["task_id"] for _, p in fake.received] == ["t2"]
    assert "A refused report task.state" in caplog.text


def test_the_outbox_survives_a_restart(tmp_path) -> None:
    path = tmp_path / "outbox.json"
    store = JsonFileStore(path)
    assert Outbox(store).pending() == []
    outbox = Outbox(store)
    outbox.put("task.state", {"task_id": "t1", "state": "completed"})
    outbox.put("task.progress", {"task_id": "t1", "percent": 3.5}, coalesce_key="p:t1")
    ids = [r.report_id for r in outbox._reports]

    again = Outbox(JsonFileStore(path))  # a new process reading the same file
    assert again.pending() == outbox.pending()
    assert [r.report_id for r in again._reports] == ids
    again.put("task.progress", {"task_id": "t1", "percent": 9.0}, coalesce_key="p:t1")
    assert Outbox(JsonFileStore(path)).pending()[-1] == (
        "task.progress",
        {"task_id": "t1", "percent": 9.0},
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.json"]  # no temp file left

    path.write_text("{broken")
    assert Outbox(JsonFileStore(path)).pending() == []


# -- one session (memory streams) -------------------------------------------------------------


def worker_methods(calls: list) -> rpc.Methods:
    methods = rpc.Methods()

    @methods.add(name="task.start")
    async def start(task_id: str, magnet: str) -> None:
        calls.append(("task.start", task_id))

    return methods


SNAPSHOT = [{"task_id": "t1", "info_hash": "ab" * 20, "state": "downloading", "hls": []}]


async def snapshot() -> list[dict]:
    return SNAPSHOT


def fake_a_methods(log: list, hello_result: Any = None) -> rpc.Methods:
    """A's worker-facing methods; `hello_result` may be an exception to raise, or "hang"."""
    methods = rpc.Methods()

    @methods.add(name="worker.hello")
    async def hello(**params: Any) -> dict:
        log.append(("worker.hello", params))
        if hello_result == "hang":
            await trio.sleep_forever()
        if isinstance(hello_result, Exception):
            raise hello_result
        return hello_result or {}

    @methods.add(name="task.state")
    async def state(**params: Any) -> None:
        log.append(("task.state", params))

    return methods


async def run_fake_a(stream, methods, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    async with rpc.open_peer(stream, methods, name="worker w1") as peer:
        task_status.started(peer)
        await peer.wait_closed()


def session(stream, outbox: Outbox, calls: list | None = None, **options: Any):
    return partial(
        run_session,
        stream,
        token="secret",
        worker_id="w1",
        methods=worker_methods(calls if calls is not None else []),
        snapshot=snapshot,
        outbox=outbox,
        **options,
    )


async def test_session_says_hello_then_delivers_and_answers_a() -> None:
    left, right = rpc.memory_stream_pair()
    a_log: list = []
    hello_result = {"ice_servers": [{"urls": "turn:127.0.0.1:3478"}], "loopback_only": True}
    outbox = Outbox()
    outbox.put("task.state", {"task_id": "t1", "state": "completed"})
    link = LinkState()
    calls: list = []
    ended = trio.Event()

    async def b_side(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await session(left, outbox, calls, state=link, max_tasks=3)(task_status=task_status)
        ended.set()

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            a = await nursery.start(run_fake_a, right, fake_a_methods(a_log, hello_result))
            assert await nursery.start(b_side) == hello_result
            assert link.connected
            assert link.ice_servers == [{"urls": "turn:127.0.0.1:3478"}]
            assert (await a.call("worker.ping"))["time"] > 0
            await a.call("task.start", {"task_id": "t2", "magnet": "magnet:?xt=urn:btih:x"})
            assert calls == [("task.start", "t2")]
            await trio.testing.wait_all_tasks_blocked()
            assert len(outbox) == 0
            await a.aclose()  # A goes away: the session ends by itself
            await ended.wait()
    assert not link.connected
    assert a_log[0] == (
        "worker.hello",
        {
            "worker_id": "w1",
            "token": "secret",
            "version": __version__,
            "tasks": SNAPSHOT,
            "max_tasks": 3,
        },
    )
    assert a_log[1][0] == "task.state"  # reports only after hello
    assert a_log[1][1]["state"] == "completed" and a_log[1][1]["report_id"]


async def test_a_refused_token_is_logged_and_raised(caplog) -> None:
    left, right = rpc.memory_stream_pair()
    refusal = rpc.ApplicationError(-32004, "worker token refused")
    outbox = Outbox()
    outbox.put("task.state", {"task_id": "t1", "state": "completed"})
    a_log: list = []
    with trio.fail_after(DEADLINE), caplog.at_level(logging.ERROR, "torrentm3u8.b.link"):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_fake_a, right, fake_a_methods(a_log, refusal))
            with pytest.raises(rpc.RemoteError) as refused:
                await session(left, outbox)()
            nursery.cancel_scope.cancel()
    assert refused.value.code == -32004
    assert "A refused the worker token: check --token" in caplog.text
    assert [m for m, _ in a_log] == ["worker.hello"]  # no report leaked before hello
    assert len(outbox) == 1


async def test_hello_has_a_deadline(autojump_clock) -> None:
    left, right = rpc.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_fake_a, right, fake_a_methods([], "hang"))
        with pytest.raises(rpc.CallTimeout, match=r"A did not answer worker\.hello within 15 s"):
            await session(left, Outbox(), hello_timeout=15)()
        assert trio.current_time() == pytest.approx(15)
        nursery.cancel_scope.cancel()


async def test_a_silent_a_is_dropped(autojump_clock) -> None:
    left, right = rpc.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        a = await nursery.start(run_fake_a, right, fake_a_methods([]))
        await session(left, Outbox(), liveness_timeout=45)()  # returns: B gave up on A
        assert trio.current_time() == pytest.approx(45)
        await a.wait_closed()


async def test_pings_from_a_keep_the_session_up(autojump_clock) -> None:
    left, right = rpc.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        a = await nursery.start(run_fake_a, right, fake_a_methods([]))
        nursery.start_soon(session(left, Outbox(), liveness_timeout=45))
        for _ in range(30):  # 150 s of A pinging every 5 s
            await trio.sleep(5)
            await a.call("worker.ping")
        assert not a.closed
        nursery.cancel_scope.cancel()


# -- the real thing: B's link and A's registry over a websocket on 127.0.0.1 ------------------


async def test_worker_connects_to_a_registry_over_a_real_websocket(tmp_path) -> None:
    connected = trio.Event()
    reports: list[dict] = []
    got_report = trio.Event()
    attempts = 0

    def on_change(worker: dict) -> None:
        if worker["connected"]:
            connected.set()

    registry = WorkerRegistry(token="secret", on_change=on_change)

    def methods_for_worker(worker_id: str) -> rpc.Methods:
        methods = rpc.Methods()

        @methods.add(name="task.state")
        async def state(task_id: str, state: str, report_id: str, error: str | None = None):
            reports.append({"worker": worker_id, "task_id": task_id, "state": state})
            got_report.set()

        return methods

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        nonlocal attempts
        attempts += 1
        ws = await request.accept()
        if attempts == 1:
            await ws.aclose()  # A going down right away: B must come back
            return
        await registry.serve_worker(rpc.TrioWebSocketStream(ws), methods_for_worker)

    calls: list = []
    outbox = Outbox(JsonFileStore(tmp_path / "outbox.json"))
    outbox.put("task.state", {"task_id": "t1", "state": "completed"})
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, ssl_context=None)
            )
            connect = partial(
                run_link,
                f"ws://127.0.0.1:{server.port}/worker",
                token="secret",
                worker_id="w1",
                methods=worker_methods(calls),
                snapshot=snapshot,
                outbox=outbox,
            )
            nursery.start_soon(partial(keep_connected, connect, first_delay=0.01))
            await connected.wait()
            await got_report.wait()
            assert registry.connected_ids() == ["w1"]
            await registry.call("w1", "task.start", {"task_id": "t2", "magnet": "m"})
            nursery.cancel_scope.cancel()
    assert attempts == 2
    assert reports == [{"worker": "w1", "task_id": "t1", "state": "completed"}]
    assert calls == [("task.start", "t2")]
    assert json.loads((tmp_path / "outbox.json").read_text()) == []
