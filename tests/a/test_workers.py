"""A's worker registry over rpc.memory_stream_pair: hello, tokens, heartbeat, reconnects."""

import json
import logging
import time
from typing import Any

import pytest
import trio
import trio.testing

import rpc
from torrentm3u8_a.workers import WorkerGone, WorkerRegistry

TOKEN = "s3cret"
DEADLINE = 10  # seconds, for tests on real time
HELLO = {
    "worker_id": "w1",
    "token": TOKEN,
    "version": "1.2",
    "max_tasks": 4,
    "tasks": [{"task_id": "t1", "info_hash": "ab" * 20, "state": "downloading", "hls": []}],
}


class Worker:
    """B's side: a real Peer answering A's calls and recording them."""

    def __init__(self, name: str = "w1") -> None:
        self.orders: list[tuple[str, Any]] = []
        self.pings = 0
        self.release = trio.Event()
        self.methods = rpc.Methods()

        @self.methods.add(name="worker.ping")
        async def ping() -> dict:
            self.pings += 1
            return {"time": time.time()}

        @self.methods.add(name="task.start")
        async def start(task_id: str, magnet: str) -> None:
            self.orders.append((name, task_id))

        @self.methods.add(name="task.cancel")
        async def cancel(task_id: str) -> None:
            await self.release.wait()

    async def run(self, stream, hello=HELLO, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with rpc.open_peer(stream, self.methods, name="A") as peer:
            task_status.started((peer, await peer.call("worker.hello", hello)))
            await peer.wait_closed()


def a_methods(seen: list) -> Any:
    """methods_for_worker: what a worker may call on A after its hello."""

    def make(worker_id: str) -> rpc.Methods:
        methods = rpc.Methods()

        @methods.add(name="task.state")
        async def state(task_id: str, state: str, report_id: str | None = None) -> None:
            seen.append((worker_id, task_id, state))

        return methods

    return make


async def call_raw(stream, method: str, params: Any, id: int = 1) -> dict:
    await stream.send_message(
        json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": id})
    )
    return json.loads(await stream.receive_message())


async def test_hello_is_accepted_and_the_worker_is_listed() -> None:
    hooked: list = []
    changes: list[dict] = []
    seen: list = []

    async def hello_hook(worker_id: str, params: dict) -> dict:
        hooked.append((worker_id, params))
        return {"ice_servers": [], "loopback_only": True}

    registry = WorkerRegistry(token=TOKEN, hello_hook=hello_hook, on_change=changes.append)
    left, right = rpc.memory_stream_pair()
    worker = Worker()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(registry.serve_worker, right, a_methods(seen))
            peer, result = await nursery.start(worker.run, left)
            assert result == {"ice_servers": [], "loopback_only": True}
            (listed,) = registry.list()
            assert listed == {
                "id": "w1",
                "connected": True,
                "last_seen": pytest.approx(time.time(), abs=5),
                "version": "1.2",
                "tasks": 1,
                "max_tasks": 4,
            }
            assert registry.get("w1") == registry.list()[0]
            assert registry.get("w9") is None
            assert registry.connected_ids() == ["w1"]
            await registry.call("w1", "task.start", {"task_id": "t2", "magnet": "m"})
            assert worker.orders == [("w1", "t2")]
            await peer.call("task.state", {"task_id": "t1", "state": "completed"})
            assert seen == [("w1", "t1", "completed")]
            nursery.cancel_scope.cancel()
    ((worker_id, params),) = hooked
    assert worker_id == "w1"
    assert "token" not in params
    assert params["tasks"] == HELLO["tasks"] and params["max_tasks"] == 4
    assert [c["connected"] for c in changes] == [True, False]


@pytest.mark.parametrize("token", ["wrong", None, 42, ""])
async def test_a_wrong_or_missing_token_is_refused_and_the_link_closed(token, caplog) -> None:
    registry = WorkerRegistry(token=TOKEN)
    left, right = rpc.memory_stream_pair()
    hello = {**HELLO, "token": token} if token is not None else {"worker_id": "w1"}
    with trio.fail_after(DEADLINE), caplog.at_level(logging.WARNING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(registry.serve_worker, right, a_methods([]))
            reply = await call_raw(left, "worker.hello", hello)
            assert reply["error"] == {"code": -32004, "message": "worker token refused"}
            with pytest.raises(rpc.LinkClosed):
                await left.receive_message()
    assert registry.list() == []
    assert "worker 'w1' refused: wrong or missing token" in caplog.text


async def test_calls_before_hello_are_refused() -> None:
    seen: list = []
    registry = WorkerRegistry(token=TOKEN)
    left, right = rpc.memory_stream_pair()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(registry.serve_worker, right, a_methods(seen))
            params = {"task_id": "t1", "state": "completed"}
            reply = await call_raw(left, "task.state", params)
            assert reply["error"] == {"code": -32004, "message": "say worker.hello first"}
            reply = await call_raw(left, "worker.hello", HELLO, id=2)
            assert reply["result"] == {}
            reply = await call_raw(left, "task.state", params, id=3)
            assert reply == {"jsonrpc": "2.0", "result": None, "id": 3}
            reply = await call_raw(left, "worker.hello", HELLO, id=4)
            assert reply["error"]["code"] == -32600  # one hello per link
            nursery.cancel_scope.cancel()
    assert seen == [("w1", "t1", "completed")]


async def test_a_link_without_hello_is_closed(autojump_clock) -> None:
    registry = WorkerRegistry(token=TOKEN, liveness_timeout=15)
    left, right = rpc.memory_stream_pair()
    await registry.serve_worker(right, a_methods([]))  # returns once it gave up
    assert trio.current_time() == pytest.approx(15)
    with pytest.raises(rpc.LinkClosed):
        await left.receive_message()


async def test_heartbeat_keeps_an_answering_worker(autojump_clock) -> None:
    registry = WorkerRegistry(token=TOKEN, heartbeat_interval=5, liveness_timeout=15)
    left, right = rpc.memory_stream_pair()
    worker = Worker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(registry.serve_worker, right, a_methods([]))
        await nursery.start(worker.run, left)
        await trio.sleep(101)
        assert registry.connected_ids() == ["w1"]
        assert worker.pings == 20
        nursery.cancel_scope.cancel()


async def test_a_silent_worker_is_marked_disconnected(autojump_clock) -> None:
    changes: list[tuple[float, bool]] = []
    registry = WorkerRegistry(
        token=TOKEN,
        heartbeat_interval=5,
        liveness_timeout=15,
        on_change=lambda w: changes.append((trio.current_time(), w["connected"])),
    )
    left, right = rpc.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(registry.serve_worker, right, a_methods([]))
        assert "result" in await call_raw(left, "worker.hello", HELLO)
        await trio.sleep(3)
        params = {"task_id": "t1", "state": "downloading"}
        assert "result" in await call_raw(left, "task.state", params, id=2)  # last sign of life
        # From now on the worker reads A's pings but never answers: a hung process.
        pings = 0
        with pytest.raises(rpc.LinkClosed):
            while True:
                message = json.loads(await left.receive_message())
                pings += message["method"] == "worker.ping"
    assert changes == [(0, True), (pytest.approx(18), False)]  # 15 s after its last message
    assert pings == 3
    assert registry.list()[0]["connected"] is False
    with pytest.raises(WorkerGone, match="worker w1 is not connected") as gone:
        await registry.call("w1", "task.start", {"task_id": "t1", "magnet": "m"})
    assert gone.value.code == -32010
    assert isinstance(gone.value, rpc.ApplicationError)


async def test_a_reconnect_replaces_the_old_link() -> None:
    changes: list[dict] = []

    async def on_change(worker: dict) -> None:  # async callbacks are fine too
        changes.append(worker)

    registry = WorkerRegistry(token=TOKEN, on_change=on_change)
    first, second = Worker("first"), Worker("second")
    left1, right1 = rpc.memory_stream_pair()
    left2, right2 = rpc.memory_stream_pair()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(registry.serve_worker, right1, a_methods([]))
            old_peer, _ = await nursery.start(first.run, left1)
            nursery.start_soon(registry.serve_worker, right2, a_methods([]))
            await nursery.start(second.run, left2)
            await old_peer.wait_closed()  # A dropped the old link
            await trio.testing.wait_all_tasks_blocked()
            assert [w["connected"] for w in registry.list()] == [True]
            await registry.call("w1", "task.start", {"task_id": "t1", "magnet": "m"})
            nursery.cancel_scope.cancel()
    assert first.orders == [] and second.orders == [("second", "t1")]
    # Two connects; the replaced link's end is no "disconnected" event; the last one's is.
    assert [c["connected"] for c in changes] == [True, True, False]


async def test_a_call_fails_with_worker_gone_when_the_link_drops() -> None:
    registry = WorkerRegistry(token=TOKEN)
    left, right = rpc.memory_stream_pair()
    worker = Worker()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(registry.serve_worker, right, a_methods([]))
            peer, _ = await nursery.start(worker.run, left)

            async def drop_soon() -> None:
                await trio.testing.wait_all_tasks_blocked()
                await peer.aclose()

            nursery.start_soon(drop_soon)
            with pytest.raises(WorkerGone, match="worker w1 disconnected before answering"):
                await registry.call("w1", "task.cancel", {"task_id": "t1"})
    with pytest.raises(WorkerGone, match="worker w2 is not connected"):
        await registry.call("w2", "task.cancel", {"task_id": "t1"})
