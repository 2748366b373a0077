"""Watching while downloading, with the real parts: A (hypercorn), B (libtorrent, FFmpeg),
one throttled libtorrent seeder per clip at about twice the clip's bitrate."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio
from support import http_rpc, run_a, wait_task

from torrentm3u8_b.samples import make_torrent
from torrentm3u8_b.seeder import open_seeder
from torrentm3u8_b.transcode import is_complete_rendition

pytestmark = [pytest.mark.slow, pytest.mark.deadline(180)]

PIECE_SIZE = 65_536  # bytes: small pieces, so the download moves piece by piece
SPEED = 2.0  # the seeder sends at this many times the clip's bitrate
LIVE_BEFORE = 25.0  # percent of the file downloaded, at most, when the live HLS is announced


async def seed(stack: AsyncExitStack, clip, clip_seconds: int) -> tuple:
    torrent = await trio.to_thread.run_sync(lambda: make_torrent(clip, piece_size=PIECE_SIZE))
    size = clip.stat().st_size
    limit = int(SPEED * size / clip_seconds)
    seeder = await stack.enter_async_context(open_seeder(torrent, clip.parent, upload_limit=limit))
    return seeder, size


def live_entry(task):
    return next((h for h in task["hls"] if h["live"]), None)


async def test_live_hls_while_downloading(tmp_path, clips, clip_seconds, start_b):
    seen: dict[str, dict] = {}

    async def follow(a, name, task_id, seeder, size):
        task = await wait_task(
            a, task_id, lambda t: live_entry(t) or t["state"] == "playable", what="live HLS"
        )
        sent = seeder.uploaded_bytes()  # at least what B has: an upper bound
        percent = 100 * sent / size
        seen[name] = {"live": live_entry(task), "state": task["state"], "percent": percent}
        seen[name]["done"] = await wait_task(
            a, task_id, lambda t: t["state"] == "playable", what="playable"
        )

    async with AsyncExitStack() as stack:
        a, url = await stack.enter_async_context(run_a(tmp_path / "a"))
        tasks = {}
        for name, clip in clips.items():
            seeder, size = await seed(stack, clip, clip_seconds)
            task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
            tasks[name] = (task["id"], seeder, size)
        async with start_b(url, tmp_path / "b"), trio.open_nursery() as nursery:
            for name, (task_id, seeder, size) in tasks.items():
                nursery.start_soon(follow, a, name, task_id, seeder, size)

    for name, (task_id, _, _) in tasks.items():
        got = seen[name]
        assert got["live"] is not None, f"{name}: no live rendition before the end"
        assert got["state"] == "downloading", name
        assert got["live"]["segments"] >= 2, name
        assert got["percent"] < LIVE_BEFORE, f"{name}: announced at {got['percent']:.0f} %"
        done = got["done"]
        assert done["progress"]["percent"] == 100.0
        [final] = done["hls"]
        assert final["live"] is False
        assert abs(final["duration"] - clip_seconds) < 1.0, name
        rendition = tmp_path / "b" / "tasks" / task_id / "hls" / str(final["file_index"])
        on_disk = is_complete_rendition(rendition)  # ENDLIST, no empty segment
        assert on_disk is not None and on_disk.segments == final["segments"], name


async def test_restart_during_live_ends_playable(tmp_path, clips, clip_seconds, start_b):
    async with AsyncExitStack() as stack:
        a, url = await stack.enter_async_context(run_a(tmp_path / "a"))
        seeder, size = await seed(stack, clips["faststart_mp4"], clip_seconds)
        task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
        async with start_b(url, tmp_path / "b"):
            live = await wait_task(a, task["id"], live_entry, what="live HLS")
        assert live["state"] == "downloading"
        before = seeder.uploaded_bytes()
        async with start_b(url, tmp_path / "b"):
            done = await wait_task(a, task["id"], lambda t: t["state"] == "playable", what="end")
        [final] = done["hls"]
        assert final["live"] is False
        assert abs(final["duration"] - clip_seconds) < 1.0
        # The second run fetched only what was missing.
        assert seeder.uploaded_bytes() - before < size


async def test_a_file_ffmpeg_cannot_read_fails_the_task_not_the_worker(tmp_path, start_b):
    folder = tmp_path / "content" / "broken"
    folder.mkdir(parents=True)
    (folder / "movie.mp4").write_bytes(bytes(range(256)) * 2000)  # not a video
    torrent = await trio.to_thread.run_sync(lambda: make_torrent(folder, piece_size=PIECE_SIZE))
    async with (
        run_a(tmp_path / "a") as (a, url),
        open_seeder(torrent, folder.parent) as seeder,
        start_b(url, tmp_path / "b") as worker,
    ):
        task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
        failed = await wait_task(a, task["id"], lambda t: t["state"] == "failed", what="failure")
        assert failed["hls"] == []
        await worker.wait_idle()  # the worker is still running
    assert failed["error"]
