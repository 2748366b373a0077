"""Load on one B: 50 small tasks at once, from one local seeder, all reach `playable`.
The 50 torrents share one 2 s 160x120 clip and differ by a text file, so they are quick to
make; each still has its own info hash, download, live HLS and final rendition on B."""

from __future__ import annotations

import shutil
import time

import pytest
import trio
from support import WORKER_TOKEN, http_rpc, run_a

from torrentm3u8_b.config import WorkerConfig
from torrentm3u8_b.samples import make_torrent
from torrentm3u8_b.seeder import open_seeder
from torrentm3u8_b.worker import run_worker

pytestmark = [pytest.mark.slow, pytest.mark.deadline(300)]

TASKS = 50


def make_torrents(content, clip) -> list[bytes]:
    torrents = []
    for n in range(TASKS):
        folder = content / f"Clip {n:02d}"
        folder.mkdir(parents=True)
        shutil.copy(clip, folder / "clip.mp4")
        (folder / "which.txt").write_text(f"torrent number {n}\n")
        torrents.append(make_torrent(folder))
    return torrents


async def wait_all_playable(a, ids: set[str]) -> dict[str, dict]:
    done: dict[str, dict] = {}
    async with a.hub.subscribe() as events:
        for task in await a.service.list():
            if task["id"] in ids and task["state"] == "playable":
                done[task["id"]] = task
        if len(done) == len(ids):
            return done
        async for method, params in events:
            task = params.get("task") if method == "task.updated" else None
            if task is None or task["id"] not in ids:
                continue
            assert task["state"] != "failed", f"{task['name']}: {task['error']}"
            if task["state"] == "playable":
                done[task["id"]] = task
                if len(done) == len(ids):
                    break
    return done


async def test_fifty_tasks_on_one_b(tmp_path, clips, record_property):
    torrents = await trio.to_thread.run_sync(make_torrents, tmp_path / "seed", clips["short"])
    async with run_a(tmp_path / "a") as (a, url), open_seeder() as seeder:
        for torrent in torrents:
            await seeder.add(torrent, tmp_path / "seed")
        ids = set()
        for torrent in torrents:
            added = await http_rpc(url, "task.add", {"magnet": seeder.magnet(torrent)})
            ids.add(added["result"]["id"])
        config = WorkerConfig(
            server="ws" + url.removeprefix("http") + "/worker",
            data_dir=tmp_path / "b",
            token=WORKER_TOKEN,
            worker_id="b-load",
            loopback_only=True,
        )
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            await nursery.start(run_worker, config)
            done = await wait_all_playable(a, ids)
            nursery.cancel_scope.cancel()
        took = time.monotonic() - started
        tasks = (await http_rpc(url, "task.list"))["result"]

    assert len(tasks) == TASKS and {t["id"] for t in tasks} == ids
    assert {t["state"] for t in tasks} == {"playable"}
    assert len({t["info_hash"] for t in tasks}) == TASKS
    assert all(t["worker_id"] == "b-load" for t in tasks)
    assert all([h["live"] for h in t["hls"]] == [False] for t in done.values())
    record_property("seconds_to_playable", round(took, 1))
    print(f"\n{TASKS} tasks on one B: all playable {took:.1f} s after B started")
