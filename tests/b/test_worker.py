"""B as a whole: real A (hypercorn on 127.0.0.1:0), real B (libtorrent, FFmpeg, link), a real
libtorrent seeder on 127.0.0.1. A magnet goes in at A; A's database shows every step."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from support import WORKER_TOKEN, http_rpc, run_a, wait_task

from torrentm3u8_b.config import WorkerConfig
from torrentm3u8_b.samples import make_sample, make_torrent
from torrentm3u8_b.seeder import open_seeder
from torrentm3u8_b.transcode import probe
from torrentm3u8_b.worker import run_worker

pytestmark = pytest.mark.deadline(90)


@asynccontextmanager
async def run_b(url: str, data: Path, **overrides):
    config = WorkerConfig(
        server="ws" + url.removeprefix("http") + "/worker",
        data_dir=data,
        token=WORKER_TOKEN,
        worker_id="b-test",
        loopback_only=True,
        **overrides,
    )
    async with trio.open_nursery() as nursery:
        worker = await nursery.start(run_worker, config)
        yield worker
        nursery.cancel_scope.cancel()


@pytest.fixture
async def sample_torrent(tmp_path):
    content = tmp_path / "content"
    folder = content / "Two Clips"
    folder.mkdir(parents=True)
    await make_sample(folder / "first.mp4", seconds=6, size="320x240")
    await make_sample(folder / "second.mkv", seconds=5, size="320x240", vcodec="mpeg4")
    (folder / "notes.txt").write_text("not a video\n")
    torrent = await trio.to_thread.run_sync(make_torrent, folder)
    return torrent, content


async def test_magnet_to_playable_through_a(tmp_path, sample_torrent):
    torrent, content = sample_torrent
    async with run_a(tmp_path / "a") as (a, url), open_seeder(torrent, content) as seeder:
        task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
        async with run_b(url, tmp_path / "b"):
            done = await wait_task(
                a,
                task["id"],
                lambda t: t["state"] == "playable" and len(t["hls"]) == 2,
                what="two renditions",
            )
    assert done["name"] == "Two Clips"
    assert done["worker_id"] == "b-test"
    files = {f["path"].split("/")[-1]: f for f in done["files"]}
    assert {name: f["is_video"] for name, f in files.items()} == {
        "first.mp4": True,
        "second.mkv": True,
        "notes.txt": False,
    }
    assert done["progress"]["percent"] == 100.0
    durations = {h["file_index"]: h["duration"] for h in done["hls"]}
    by_index = {f["index"]: name for name, f in files.items()}
    for index, duration in durations.items():
        expected = 6 if by_index[index] == "first.mp4" else 5
        assert abs(duration - expected) < 1.0
    # Only the videos were downloaded; the renditions are H.264 TS segments.
    b_task = tmp_path / "b" / "tasks" / task["id"]
    assert not list(b_task.rglob("notes.txt")) or all(
        p.stat().st_size == 0 for p in b_task.rglob("notes.txt")
    )
    for index in durations:
        segment = sorted((b_task / "hls" / str(index)).glob("*.ts"))[0]
        info = await probe(str(segment))
        assert info.video_codec == "h264"


async def test_no_video_fails_with_reason(tmp_path):
    folder = tmp_path / "content" / "docs"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("hello\n" * 1000)
    torrent = await trio.to_thread.run_sync(make_torrent, folder)
    async with run_a(tmp_path / "a") as (a, url), open_seeder(torrent, folder.parent) as seeder:
        task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
        async with run_b(url, tmp_path / "b"):
            failed = await wait_task(
                a, task["id"], lambda t: t["state"] == "failed", what="failure"
            )
    assert failed["error"] == "no playable video in this torrent"
    assert failed["name"] == "docs"


async def test_metadata_timeout(tmp_path):
    magnet = "magnet:?xt=urn:btih:" + "12" * 20 + "&x.pe=127.0.0.1:9"
    async with run_a(tmp_path / "a") as (a, url):
        task = (await http_rpc(url, "task.add", {"magnet": magnet}))["result"]
        async with run_b(url, tmp_path / "b", metadata_timeout=1.0):
            failed = await wait_task(
                a, task["id"], lambda t: t["state"] == "failed", what="failure"
            )
    assert failed["error"] == "no peer sent the torrent's metadata within 1 s"


async def test_restart_of_b_keeps_hls_and_reports_snapshot(tmp_path, sample_torrent):
    torrent, content = sample_torrent
    async with run_a(tmp_path / "a") as (a, url), open_seeder(torrent, content) as seeder:
        task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
        async with run_b(url, tmp_path / "b"):
            await wait_task(a, task["id"], lambda t: len(t["hls"]) == 2, what="two renditions")
        playlist = tmp_path / "b" / "tasks" / task["id"] / "hls" / "0" / "index.m3u8"
        made = playlist.stat().st_mtime_ns
        async with run_b(url, tmp_path / "b") as worker:
            snapshot = await worker.snapshot()
            assert [(s["task_id"], s["state"]) for s in snapshot] == [(task["id"], "playable")]
            await worker.wait_idle()
            # The first B may have stopped before its last report reached A: its stored
            # outbox is sent by this one.
            await wait_task(a, task["id"], lambda t: t["state"] == "playable", what="playable")
        assert playlist.stat().st_mtime_ns == made  # HLS was not made again
        tasks = (await http_rpc(url, "task.list"))["result"]
        assert [(t["id"], t["state"]) for t in tasks] == [(task["id"], "playable")]
