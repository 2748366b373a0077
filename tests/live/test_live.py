"""Watching while downloading, with the real parts: A (hypercorn), B (libtorrent, FFmpeg),
one throttled libtorrent seeder per clip at about twice the clip's bitrate. The live rendition
of each container (faststart MP4, moov-at-end MP4, MKV) below 25 % downloaded, and seeks past
the download, are in test_seek_b.py (one run of the three downloads for both)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio
from support import http_rpc, run_a, wait_task

from torrentm3u8_b.samples import make_sample, make_torrent
from torrentm3u8_b.seeder import open_seeder

pytestmark = [pytest.mark.slow, pytest.mark.deadline(180)]

PIECE_SIZE = 65_536  # bytes: small pieces, so the download moves piece by piece
SPEED = 2.0  # the seeder sends at this many times the clip's bitrate


async def seed(stack: AsyncExitStack, clip, clip_seconds: int, speed: float = SPEED) -> tuple:
    torrent = await trio.to_thread.run_sync(lambda: make_torrent(clip, piece_size=PIECE_SIZE))
    size = clip.stat().st_size
    limit = int(speed * size / clip_seconds)
    seeder = await stack.enter_async_context(open_seeder(torrent, clip.parent, upload_limit=limit))
    return seeder, size


def live_entry(task):
    return next((h for h in task["hls"] if h["live"]), None)


async def test_restart_during_live_ends_playable(tmp_path, clips, clip_seconds, start_b):
    async with AsyncExitStack() as stack:
        a, url = await stack.enter_async_context(run_a(tmp_path / "a"))
        # Faster than elsewhere: what matters here is a restart while the HLS is live.
        seeder, size = await seed(stack, clips["faststart_mp4"], clip_seconds, speed=2 * SPEED)
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


async def test_only_a_live_reencode_waits_for_the_transcode_slot(tmp_path, start_b):
    """One transcode slot (the default), three downloads at once: two VP9 files (re-encoded)
    and one H.264 file (remuxed). While one VP9 live run holds the slot, the other VP9 task has
    no live rendition, and the H.264 task has one anyway; all three end playable."""
    seconds = 24
    specs = {
        "vp9_a": ("a.mkv", {"vcodec": "libvpx-vp9", "acodec": "libopus"}),
        "vp9_b": ("b.mkv", {"vcodec": "libvpx-vp9", "acodec": "libopus"}),
        "h264": ("c.mp4", {}),
    }
    clips = {}
    async with trio.open_nursery() as nursery:
        for name, (file_name, options) in specs.items():
            (tmp_path / name).mkdir()
            clips[name] = tmp_path / name / file_name
            nursery.start_soon(
                lambda p=clips[name], o=options: make_sample(
                    p, seconds=seconds, size="320x240", **o
                )
            )
    async with AsyncExitStack() as stack:
        a, url = await stack.enter_async_context(run_a(tmp_path / "a"))
        ids = {}
        for name, clip in clips.items():
            seeder, _ = await seed(stack, clip, seconds)
            ids[name] = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"][
                "id"
            ]
        worker = await stack.enter_async_context(start_b(url, tmp_path / "b"))
        assert worker.transcode_limit.total_tokens == 1

        async def snapshot() -> dict[str, dict]:
            return {name: await a.service.get(task_id) for name, task_id in ids.items()}

        async with a.hub.subscribe() as events:
            tasks = await snapshot()
            # Until the H.264 task and one VP9 task are live (or something is no longer
            # downloading, which fails the test below).
            while not (
                live_entry(tasks["h264"])
                and (live_entry(tasks["vp9_a"]) or live_entry(tasks["vp9_b"]))
            ) and all(t["state"] in ("waiting", "downloading") for t in tasks.values()):
                async for method, _ in events:
                    if method == "task.updated":
                        break
                tasks = await snapshot()
            borrowed = worker.transcode_limit.borrowed_tokens
        done = {
            name: await wait_task(a, task_id, lambda t: t["state"] == "playable", what="end")
            for name, task_id in ids.items()
        }

    vp9_live = [name for name in ("vp9_a", "vp9_b") if live_entry(tasks[name])]
    assert len(vp9_live) == 1, {
        n: (t["state"], t["hls"], t["progress"]["percent"]) for n, t in tasks.items()
    }
    [holder] = vp9_live
    assert tasks[holder]["state"] == "downloading"  # so its live run holds the slot
    assert borrowed == 1
    assert live_entry(tasks["h264"]) is not None  # a remux did not need the slot
    for name, task in done.items():
        [final] = task["hls"]
        assert final["live"] is False and abs(final["duration"] - seconds) < 1.0, name
