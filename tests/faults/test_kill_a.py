"""`kill -9` of A (a real `torrentm3u8-a` process) in the middle of a download: A started again
on the same port and database is found by B by itself (backoff), and the task is neither lost
nor duplicated: it ends playable, seen through POST /rpc like any client would."""

from __future__ import annotations

import sys

import httpx
import pytest
import trio
from support import WORKER_TOKEN, http_rpc, worker_command

from torrentm3u8_b.seeder import open_seeder

pytestmark = [pytest.mark.slow, pytest.mark.deadline(120)]

DOWNLOAD_SECONDS = 10  # the seeder's upload limit makes the download last about this long
POLL_INTERVAL = 0.2  # seconds between task.get calls (A is another process: no event hub)


def a_command(port: int, data) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torrentm3u8_a.cli",
        "--listen",
        f"127.0.0.1:{port}",
        "--data",
        str(data),
        "--worker-token",
        WORKER_TOKEN,
        "--loopback-only",
    ]


async def wait_serving(url: str) -> None:
    """Until A answers GET /healthz (it is starting in another process)."""
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url + "/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await trio.sleep(POLL_INTERVAL)


async def poll_task(url: str, task_id: str, predicate, *, what: str) -> dict:
    while True:
        task = (await http_rpc(url, "task.get", {"id": task_id}))["result"]
        if predicate(task):
            return task
        assert task["state"] != "failed", f"failed while waiting for {what}: {task['error']}"
        await trio.sleep(POLL_INTERVAL)


def percent(task: dict) -> float:
    return (task["progress"] or {}).get("percent", 0)


async def test_kill_9_of_a_mid_download(tmp_path, clip_torrent, processes, port):
    torrent, content, size = clip_torrent
    url = f"http://127.0.0.1:{port}"
    async with open_seeder(torrent, content, upload_limit=size // DOWNLOAD_SECONDS) as seeder:
        a = await processes.start(a_command(port, tmp_path / "a"))
        await wait_serving(url)
        task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
        command = worker_command(url, tmp_path / "b", progress_interval=0.3)
        b = await processes.start(command)
        seen = await poll_task(url, task["id"], lambda t: percent(t) >= 30, what="30 %")
        await processes.kill_9(a)
        assert seen["state"] == "downloading" and percent(seen) < 100

        await processes.start(a_command(port, tmp_path / "a"))  # same port, same database
        await wait_serving(url)
        done = await poll_task(
            url, task["id"], lambda t: t["state"] == "playable", what="playable after A's restart"
        )
        workers = (await http_rpc(url, "worker.list"))["result"]
        tasks = (await http_rpc(url, "task.list"))["result"]
        assert b.returncode is None  # B lived through it: it reconnected by itself

    assert [w["id"] for w in workers] == ["b-proc"] and workers[0]["connected"]
    assert [(t["id"], t["state"]) for t in tasks] == [(task["id"], "playable")]
    assert done["worker_id"] == "b-proc"
    assert done["progress"]["percent"] == 100.0
    assert [(f["size"], f["is_video"]) for f in done["files"]] == [(size, True)]
    assert [(h["file_index"], h["live"]) for h in done["hls"]] == [(0, False)]
    assert done["hls"][0]["duration"] == pytest.approx(8.0, abs=1.0)
