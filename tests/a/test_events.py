"""Live events: every stored change of a task reaches `/ws` subscribers as `task.updated`, in
order, once; a subscriber too slow to follow is dropped without holding more than its bounded
queue, and the others still get every event."""

from __future__ import annotations

import json
import logging
import os
import socket
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
from support import http_rpc, run_a, ws_url

import rpc
from torrentm3u8_a.events import EventHub

HEX = "f7079c66cca02ab45934b9868572060010dfc97e"
MAGNET = f"magnet:?xt=urn:btih:{HEX}&dn=events"
MAGNET2 = "magnet:?xt=urn:btih:" + "ab" * 20
SMALL_WINDOW = 4096  # bytes of receive buffer of a client that stops reading
MAX_EVENTS = 20_000  # a subscriber must be dropped long before this many events

pytestmark = pytest.mark.deadline(60)


@asynccontextmanager
async def subscribed(
    ws: trio_websocket.WebSocketConnection,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """Turn events on for a /ws connection (no other traffic is expected before the reply)."""
    await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": "sub", "method": "events.subscribe"}))
    assert json.loads(await ws.get_message()) == {"jsonrpc": "2.0", "result": True, "id": "sub"}
    yield ws


@asynccontextmanager
async def open_subscriber(url: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    async with rpc.open_websocket(ws_url(url, "/ws")) as ws, subscribed(ws):
        yield ws


@asynccontextmanager
async def open_small_window_subscriber(
    url: str,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A subscriber whose socket buffers only SMALL_WINDOW bytes: once it stops reading, A's
    sends to it block after a few events (trio-websocket stops reading when its queue of one
    message is full)."""
    host, port = url.removeprefix("http://").split(":")
    sock = trio.socket.socket()
    stream: trio.SocketStream | None = None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_WINDOW)
        await sock.connect((host, int(port)))
        stream = trio.SocketStream(sock)
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(nursery, stream, f"{host}:{port}", "/ws")
            try:
                async with subscribed(ws):
                    yield ws
            finally:
                with trio.move_on_after(2) as closing:
                    closing.shield = True
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        else:
            sock.close()


async def next_notification(ws: trio_websocket.WebSocketConnection) -> tuple[str, dict]:
    """The next `task.*` notification; worker.updated ones (the fake worker's) are skipped."""
    while True:
        message = json.loads(await ws.get_message())
        assert "id" not in message, f"a reply nobody asked for: {message}"
        if message["method"] != "worker.updated":
            return message["method"], message["params"]


# ---- every change, as stored -----------------------------------------------------------------


async def test_every_stored_change_is_pushed_once_in_order(service_a, fake_worker):
    _, url = service_a
    files = [
        {"index": 0, "path": "movie/a.mkv", "size": 1000, "is_video": True},
        {"index": 1, "path": "movie/notes.txt", "size": 10, "is_video": False},
    ]
    seen: list[tuple[str, str | None, float]] = []
    async with AsyncExitStack() as stack:
        subscribers = [await stack.enter_async_context(open_subscriber(url)) for _ in range(2)]
        quiet = await stack.enter_async_context(rpc.open_websocket(ws_url(url, "/ws")))
        task_id: str = ""

        async def check_next_event() -> None:
            """Each subscriber's next event is the task exactly as A now stores it (read after
            the event: the dispatcher's change lands in its own time)."""
            events = [await next_notification(ws) for ws in subscribers]
            stored = (await http_rpc(url, "task.get", {"id": task_id}))["result"]
            assert events == [("task.updated", {"task": stored})] * len(subscribers)
            seen.append((stored["state"], stored["phase"], stored["progress"]["percent"]))

        async def report(method: str, **params: Any) -> None:
            await link.call(method, {"task_id": task_id, **params})
            await check_next_event()

        task_id = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]["id"]
        await check_next_event()
        link = await stack.enter_async_context(fake_worker.connect(url))
        await check_next_event()  # dispatched: downloading, phase metadata
        await report("task.metadata", name="movie", info_hash=HEX, files=files)
        for percent in (25.0, 50.0, 99.5):
            await report("task.progress", percent=percent, downloaded=10, total=1010, peers=1)
        await report("task.state", state="completed")
        await report("task.state", state="transcoding")
        await report("task.transcode_progress", file_index=0, percent=40.0)
        hls = {"file_index": 0, "playlist": "index.m3u8", "duration": 60.0, "segments": 3}
        await report("task.hls_ready", **hls, live=True)
        await report("task.hls_ready", **{**hls, "segments": 15})
        # A report that changes nothing (the same state again) is not an event.
        await link.call("task.state", {"task_id": task_id, "state": "playable"})
        assert (await http_rpc(url, "task.remove", {"id": task_id}))["result"] is True
        for ws in subscribers:
            assert await next_notification(ws) == ("task.removed", {"id": task_id})
        # Nothing else was queued for the first task: the next event is the second one's.
        other = (await http_rpc(url, "task.add", {"magnet": MAGNET2}))["result"]["id"]
        for ws in subscribers:
            method, params = await next_notification(ws)
            assert (method, params["task"]["id"]) == ("task.updated", other)
        # A /ws connection that never subscribed got no notification at all.
        await quiet.send_message(json.dumps({"jsonrpc": "2.0", "id": 9, "method": "task.list"}))
        assert json.loads(await quiet.get_message())["id"] == 9

    assert seen == [
        ("waiting", None, 0.0),
        ("downloading", "metadata", 0.0),
        ("downloading", "data", 0.0),
        ("downloading", "data", 25.0),
        ("downloading", "data", 50.0),
        ("downloading", "data", 99.5),
        ("completed", None, 99.5),
        ("transcoding", None, 99.5),
        ("transcoding", None, 99.5),
        ("transcoding", None, 99.5),
        ("playable", None, 99.5),
    ]


# ---- slow subscribers ------------------------------------------------------------------------


async def test_hub_drops_a_subscription_nobody_iterates_and_holds_only_its_queue():
    queue = 8
    hub = EventHub(queue_size=queue)
    followed = 0  # events the live subscriber got, each checked in order as it comes

    async with hub.subscribe() as stuck, hub.subscribe() as live, trio.open_nursery() as nursery:

        async def follow() -> None:
            nonlocal followed
            async for _, params in live:
                assert params["n"] == followed
                followed += 1

        nursery.start_soon(follow)

        def publish(n: int) -> None:
            # A fresh 1 kB string each time: what an unbounded queue would keep.
            hub.publish("task.updated", {"n": n, "pad": os.urandom(512).hex()})

        for n in range(queue):
            publish(n)
        assert not stuck.dropped and hub.subscriber_count == 2
        await trio.testing.wait_all_tasks_blocked()
        publish(queue)  # one more than the stuck queue holds
        assert stuck.dropped and hub.subscriber_count == 1

        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for n in range(queue + 1, 5_000):
                publish(n)
                if n % queue == 0:
                    await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert followed == 5_000
        # 5 000 events of 1 kB went by: an unbounded queue would hold 5 MB more.
        assert after - before < 256 * 1024
        assert stuck.receive.statistics().current_buffer_used == queue
        # The dropped subscription still yields what it had queued, then ends.
        assert [params["n"] async for _, params in stuck] == list(range(queue))
        nursery.cancel_scope.cancel()


async def test_a_websocket_that_stops_reading_is_dropped_and_others_get_everything(service_a):
    a, url = service_a
    received: list[int] = []
    caught_up = trio.Event()
    wanted = 0

    async with open_subscriber(url) as fast, open_small_window_subscriber(url) as slow:
        assert a.hub.subscriber_count == 2

        async def follow() -> None:
            nonlocal caught_up
            while True:
                _, params = await next_notification(fast)
                received.append(params["task"]["progress"]["percent"])
                if len(received) == wanted:
                    caught_up.set()

        async def publish_burst(first: int, count: int) -> int | None:
            """Publish events first..first+count-1 (a task-sized payload, as a report would),
            wait until the fast subscriber has them; the index that dropped `slow`, if any."""
            nonlocal wanted, caught_up
            dropped_at = None
            caught_up, wanted = trio.Event(), first + count
            for n in range(first, first + count):
                task = {"id": "t", "name": "x" * 1000, "progress": {"percent": n}}
                a.hub.publish("task.updated", {"task": task})
                if dropped_at is None and a.hub.subscriber_count == 1:
                    dropped_at = n
            await caught_up.wait()
            return dropped_at

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            published, dropped_at = 0, None
            while dropped_at is None:
                assert published < MAX_EVENTS, "a subscriber that never reads was not dropped"
                dropped_at = await publish_burst(published, 32)
                published += 32
            # After the drop, the others go on getting every event (bursts of 32: a queue holds
            # 256); the slow one's share stops.
            for _ in range(16):
                await publish_burst(published, 32)
                published += 32
            assert received == list(range(published))
            assert a.hub.subscriber_count == 1

            # When the slow client reads again, it finds exactly what was queued before the
            # drop, in order, then A's close: "too slow, reconnect".
            late = []
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                while True:
                    late.append((await next_notification(slow))[1]["task"]["progress"]["percent"])
            assert late == list(range(dropped_at))
            assert closed.value.reason.code == 1013
            assert "too slow" in closed.value.reason.reason
            nursery.cancel_scope.cancel()


async def test_an_event_too_large_for_the_websocket_is_skipped(tmp_path, fake_worker, caplog):
    """A task with thousands of files can outgrow the /ws message limit: its subscribers stay
    connected (they used to be dropped with a crash) and get the next events."""
    max_body = 64 * 1024
    async with run_a(tmp_path / "a", max_body=max_body) as (a, url), open_subscriber(url) as ws:
        task_id = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]["id"]
        assert (await next_notification(ws))[1]["task"]["state"] == "waiting"
        async with fake_worker.connect(url) as link:
            assert (await next_notification(ws))[1]["task"]["phase"] == "metadata"
            files = [
                {"index": i, "path": f"season/{'x' * 100}/{i}.mkv", "size": 1, "is_video": True}
                for i in range(max_body // 100)
            ]
            params = {"task_id": task_id, "name": "big", "info_hash": HEX, "files": files}
            with caplog.at_level(logging.WARNING, logger="torrentm3u8.a"):
                await link.call("task.metadata", params)
                other = (await http_rpc(url, "task.add", {"magnet": MAGNET2}))["result"]["id"]
                method, params = await next_notification(ws)
            assert (method, params["task"]["id"]) == ("task.updated", other)
            assert "event not sent to a /ws subscriber" in caplog.text
            assert a.hub.subscriber_count == 1
