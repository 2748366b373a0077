"""A's public API over real HTTP and websocket (hypercorn on 127.0.0.1:0), with a fake worker
that speaks the real link protocol."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from support import WORKER_TOKEN, FakeWorker, http_rpc, run_a, wait_task, ws_url

import rpc

HEX = "f7079c66cca02ab45934b9868572060010dfc97e"
MAGNET = f"magnet:?xt=urn:btih:{HEX}&dn=Big+Buck+Bunny"
MAGNET2 = "magnet:?xt=urn:btih:" + "ab" * 20


pytestmark = pytest.mark.deadline(30)


async def test_add_validates_and_deduplicates(service_a):
    _, url = service_a
    bad = await http_rpc(url, "task.add", {"magnet": "https://example.org/x.torrent"})
    assert bad["error"]["code"] == -32602
    assert bad["error"]["message"] == "not a magnet link"
    short = await http_rpc(url, "task.add", {"magnet": "magnet:?xt=urn:btih:abc"})
    assert short["error"]["message"] == "info hash must be 40 hex or 32 base32 characters"
    assert (await http_rpc(url, "task.list"))["result"] == []

    first = (await http_rpc(url, "task.add", {"magnet": f"  {MAGNET}\n"}))["result"]
    assert first["state"] == "waiting"
    assert first["info_hash"] == HEX
    assert first["name"] == "Big Buck Bunny"
    again = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]
    assert again["id"] == first["id"]
    assert len((await http_rpc(url, "task.list"))["result"]) == 1


async def test_task_shape_is_the_contract(service_a):
    _, url = service_a
    task = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]
    for key in ("id", "magnet", "info_hash", "name", "state", "error", "added_at", "files"):
        assert key in task
    assert set(task["progress"]) >= {
        "percent",
        "download_rate",
        "upload_rate",
        "peers",
        "downloaded",
        "total",
        "eta",
        "updated_at",
    }
    assert task["hls"] == []


async def test_unknown_task_and_bad_params_are_clear_errors(service_a):
    _, url = service_a
    reply = await http_rpc(url, "task.get", {"id": "nope"})
    assert reply["error"]["code"] == -32001
    assert "nope" in reply["error"]["message"]
    reply = await http_rpc(url, "task.get", {"id": 5})
    assert reply["error"]["code"] == -32602
    reply = await http_rpc(url, "task.retry", {"id": "nope"})
    assert reply["error"]["code"] == -32001
    reply = await http_rpc(url, "no.such.method")
    assert reply["error"]["code"] == -32601


async def test_oversized_and_malformed_bodies(service_a):
    a, url = service_a
    # A client announcing a body over the limit gets a JSON-RPC error before sending it.
    host, port = url.removeprefix("http://").split(":")
    sock = await trio.open_tcp_stream(host, int(port))
    async with sock:
        await sock.send_all(
            b"POST /rpc HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (a.config.max_body + 1)
        )
        response = b""
        while b"}}" not in response:
            chunk = await sock.receive_some()
            assert chunk, response
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error"]["code"] == -32600
    async with httpx.AsyncClient() as client:
        r = await client.post(url + "/rpc", content=b"{not json")
        assert r.status_code == 200
        assert r.json()["error"]["code"] == -32700
        r = await client.post(url + "/rpc", content=b"[]")
        assert r.json()["error"]["code"] == -32600
        r = await client.post(
            url + "/rpc", content=json.dumps({"jsonrpc": "2.0", "method": "task.list"})
        )
        assert r.status_code == 204


async def test_discover_describes_public_methods(service_a):
    _, url = service_a
    doc = (await http_rpc(url, "rpc.discover"))["result"]
    names = {m["name"] for m in doc["methods"]}
    assert {"task.add", "task.get", "task.list", "task.remove", "task.retry"} <= names
    assert {"worker.list", "stream.open", "stream.offer", "stream.candidate"} <= names
    add = next(m for m in doc["methods"] if m["name"] == "task.add")
    assert add["params"][0]["name"] == "magnet"


async def test_healthz(service_a):
    _, url = service_a
    async with httpx.AsyncClient() as client:
        r = await client.get(url + "/healthz")
    assert r.status_code == 200
    assert r.json()["ok"] is True


async def test_waiting_task_is_dispatched_when_a_worker_connects(service_a, fake_worker):
    _, url = service_a
    task = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]
    async with fake_worker.connect(url) as link:
        order = await fake_worker.wait_order("task.start")
        assert order == {"task_id": task["id"], "magnet": MAGNET}
        got = (await http_rpc(url, "task.get", {"id": task["id"]}))["result"]
        assert got["state"] == "downloading"
        assert got["phase"] == "metadata"
        assert got["worker_id"] == "fake-1"
        workers = (await http_rpc(url, "worker.list"))["result"]
        assert [(w["id"], w["connected"]) for w in workers] == [("fake-1", True)]

        # B's reports are stored and shown.
        files = [
            {"index": 0, "path": "movie/a.mkv", "size": 1000, "is_video": True},
            {"index": 1, "path": "movie/readme.txt", "size": 10, "is_video": False},
        ]
        await link.call(
            "task.metadata",
            {
                "task_id": task["id"],
                "name": "movie",
                "info_hash": HEX,
                "trackers": ["http://127.0.0.1:1/announce"],
                "files": files,
                "report_id": "r1",
            },
        )
        await link.call(
            "task.progress",
            {
                "task_id": task["id"],
                "percent": 50.0,
                "download_rate": 1000,
                "upload_rate": 0,
                "peers": 1,
                "downloaded": 500,
                "total": 1000,
                "eta": 1,
            },
        )
        got = (await http_rpc(url, "task.get", {"id": task["id"]}))["result"]
        assert got["name"] == "movie"
        assert got["phase"] == "data"
        assert [f["path"] for f in got["files"]] == ["movie/a.mkv", "movie/readme.txt"]
        assert got["progress"]["percent"] == 50.0
        for state in ("completed", "transcoding"):
            await link.call("task.state", {"task_id": task["id"], "state": state})
        await link.call(
            "task.hls_ready",
            {
                "task_id": task["id"],
                "file_index": 0,
                "playlist": "index.m3u8",
                "duration": 60.0,
                "segments": 15,
                "report_id": "r9",
            },
        )
        # The same report delivered again (after a reconnect) has no second effect.
        await link.call(
            "task.hls_ready",
            {
                "task_id": task["id"],
                "file_index": 0,
                "playlist": "index.m3u8",
                "duration": 60.0,
                "segments": 15,
                "report_id": "r9",
            },
        )
        got = (await http_rpc(url, "task.get", {"id": task["id"]}))["result"]
        assert got["state"] == "playable"
        assert [(h["file_index"], h["segments"]) for h in got["hls"]] == [(0, 15)]

        # An impossible report is refused with a readable error, not stored.
        with pytest.raises(rpc.RemoteError) as err:
            await link.call("task.state", {"task_id": task["id"], "state": "downloading"})
        assert "cannot go from playable to downloading" in err.value.message

        assert (await http_rpc(url, "task.remove", {"id": task["id"]}))["result"] is True
        assert await fake_worker.wait_order("task.remove") == {
            "task_id": task["id"],
            "delete_files": True,
        }
    assert (await http_rpc(url, "task.get", {"id": task["id"]}))["error"]["code"] == -32001


async def test_a_file_list_sent_in_parts_is_paged_through_task_files(service_a, fake_worker):
    _, url = service_a
    task = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]
    n = 2500
    files = [
        {"index": i, "path": f"m/{i:04d}.txt", "size": 1, "is_video": i == 2000} for i in range(n)
    ]
    async with fake_worker.connect(url) as link:
        await fake_worker.wait_order("task.start")
        params = {"task_id": task["id"], "name": "m", "info_hash": HEX, "files": files[:1200]}
        await link.call("task.metadata", {**params, "report_id": "m1"})
        more = {"task_id": task["id"], "files": files[1200:], "report_id": "m2"}
        await link.call("task.more_files", more)
        await link.call("task.more_files", more)  # delivered again after a reconnect

        got = (await http_rpc(url, "task.get", {"id": task["id"]}))["result"]
        assert (got["file_count"], got["total_size"]) == (n, n)
        assert [f["index"] for f in got["files"]] == [*range(1000), 2000]
        pages, offset = [], 0
        while page := (await http_rpc(url, "task.files", {"id": task["id"], "offset": offset}))[
            "result"
        ]["files"]:
            pages.append(len(page))
            offset += len(page)
        assert pages == [1000, 1000, 500]
        whole = await http_rpc(url, "task.files", {"id": task["id"], "offset": 2499, "limit": 5})
        assert whole["result"] == {"files": files[2499:], "total": n}

        for bad in ({"offset": -1}, {"limit": 0}, {"limit": 1001}, {"offset": "0"}):
            reply = await http_rpc(url, "task.files", {"id": task["id"], **bad})
            assert reply["error"]["code"] == -32602, bad
        reply = await http_rpc(url, "task.files", {"id": "nope"})
        assert reply["error"]["code"] == -32001 and "nope" in reply["error"]["message"]
        with pytest.raises(rpc.RemoteError) as err:  # a task that is not this worker's
            await link.call("task.more_files", {"task_id": "nope", "files": []})
        assert err.value.code == -32001


async def test_failed_task_retry(service_a, fake_worker):
    _, url = service_a
    task = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]
    not_failed = await http_rpc(url, "task.retry", {"id": task["id"]})
    assert not_failed["error"]["code"] == -32007
    async with fake_worker.connect(url) as link:
        await fake_worker.wait_order("task.start")
        await link.call(
            "task.state",
            {
                "task_id": task["id"],
                "state": "failed",
                "error": "no playable video in this torrent",
            },
        )
        got = (await http_rpc(url, "task.get", {"id": task["id"]}))["result"]
        assert (got["state"], got["error"]) == ("failed", "no playable video in this torrent")
        fake_worker.orders.clear()
        retried = (await http_rpc(url, "task.retry", {"id": task["id"]}))["result"]
        assert retried["error"] is None
        assert (await fake_worker.wait_order("task.start"))["task_id"] == task["id"]


async def test_hello_reconciles_snapshot(service_a, fake_worker):
    _, url = service_a
    kept = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]
    async with fake_worker.connect(url):
        await fake_worker.wait_order("task.start")
    # The worker comes back holding the task and one A never heard of.
    fake_worker.orders.clear()
    snapshot = [
        {"task_id": kept["id"], "info_hash": HEX, "state": "downloading", "hls": []},
        {"task_id": "stray", "info_hash": "00" * 20, "state": "downloading", "hls": []},
    ]
    async with fake_worker.connect(url, tasks=snapshot):
        assert (await fake_worker.wait_order("task.remove"))["task_id"] == "stray"
    assert [name for name, _ in fake_worker.orders] == ["task.remove"]
    tasks = (await http_rpc(url, "task.list"))["result"]
    assert [(t["id"], t["state"]) for t in tasks] == [(kept["id"], "downloading")]


async def test_worker_that_lost_its_task_gets_it_again(service_a, fake_worker):
    _, url = service_a
    task = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]
    async with fake_worker.connect(url):
        await fake_worker.wait_order("task.start")
    fake_worker.orders.clear()
    async with fake_worker.connect(url, tasks=[]):
        assert (await fake_worker.wait_order("task.start"))["task_id"] == task["id"]


async def test_events_pushed_to_subscribed_websocket(service_a, fake_worker):
    _, url = service_a
    got = []
    methods = rpc.Methods()
    arrived = trio.Event()

    @methods.add(name="task.updated")
    async def updated(task: dict) -> None:
        got.append((task["id"], task["state"]))
        if task["state"] == "downloading":
            arrived.set()

    async with rpc.open_websocket(ws_url(url, "/ws")) as ws:
        async with rpc.open_peer(rpc.TrioWebSocketStream(ws), methods) as peer:
            assert await peer.call("events.subscribe") is True
            task = await peer.call("task.add", {"magnet": MAGNET})
            async with fake_worker.connect(url):
                await arrived.wait()
    assert (task["id"], "waiting") in got
    assert (task["id"], "downloading") in got


async def test_api_token(tmp_path):
    async with run_a(tmp_path / "a", api_token="s3cret") as (_, url):
        denied = await http_rpc(url, "task.list")
        assert denied["error"]["code"] == -32004
        assert (await http_rpc(url, "task.list", token="s3cret"))["result"] == []
        async with rpc.open_websocket(ws_url(url, "/ws")) as ws:
            async with rpc.open_peer(rpc.TrioWebSocketStream(ws), rpc.Methods()) as peer:
                with pytest.raises(rpc.RemoteError) as err:
                    await peer.call("task.list")
                assert err.value.code == -32004
                with pytest.raises(rpc.RemoteError):
                    await peer.call("auth", {"token": "wrong"})
                assert await peer.call("auth", {"token": "s3cret"}) is True
                assert await peer.call("task.list") == []


async def test_wrong_worker_token_is_refused(service_a, fake_worker):
    a, url = service_a
    with pytest.raises((rpc.RemoteError, rpc.LinkClosed)):
        async with fake_worker.connect(url, token="wrong"):
            pass
    assert a.registry.connected_ids() == []
    assert WORKER_TOKEN != "wrong"


async def test_browser_cannot_call_worker_methods(service_a):
    _, url = service_a
    task = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]
    for method in ("task.metadata", "task.progress", "task.state", "task.hls_ready"):
        reply = await http_rpc(url, method, {"task_id": task["id"], "state": "playable"})
        assert reply["error"]["code"] == -32601


async def test_restart_keeps_everything(tmp_path, fake_worker):
    async with run_a(tmp_path / "a") as (_, url):
        task = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]
        async with fake_worker.connect(url) as link:
            await fake_worker.wait_order("task.start")
            await link.call(
                "task.metadata",
                {
                    "task_id": task["id"],
                    "name": "movie",
                    "info_hash": HEX,
                    "files": [{"index": 0, "path": "m.mp4", "size": 5, "is_video": True}],
                },
            )
    async with run_a(tmp_path / "a") as (_, url):
        again = (await http_rpc(url, "task.get", {"id": task["id"]}))["result"]
        assert again["name"] == "movie"
        assert again["files"][0]["path"] == "m.mp4"


async def test_tasks_go_to_the_least_loaded_worker(service_a):
    a, url = service_a
    first, second = FakeWorker(), FakeWorker()
    async with first.connect(url, worker_id="w1"), second.connect(url, worker_id="w2"):
        one = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]
        assert (await first.wait_order("task.start"))["task_id"] == one["id"]
        two = (await http_rpc(url, "task.add", {"magnet": MAGNET2}))["result"]
        assert (await second.wait_order("task.start"))["task_id"] == two["id"]
        await wait_task(a, two["id"], lambda t: t["worker_id"] == "w2", what="assignment")
        tasks = {t["id"]: t["worker_id"] for t in (await http_rpc(url, "task.list"))["result"]}
    assert tasks == {one["id"]: "w1", two["id"]: "w2"}
