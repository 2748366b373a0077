"""Seeking past what is downloaded, on B (task.seek), with the real parts: A (hypercorn), B
(libtorrent, FFmpeg), one throttled libtorrent seeder per clip at about twice its bitrate."""

from __future__ import annotations

import math
import os
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from support import http_rpc, run_a, wait_task

import rpc
from torrentm3u8_b.ffmpeg import MediaInfo
from torrentm3u8_b.progressive import LiveFile, LiveRendition
from torrentm3u8_b.samples import make_torrent
from torrentm3u8_b.seeder import open_seeder
from torrentm3u8_b.seeking import (
    KEPT_SEEK_FOLDERS,
    NotSeekable,
    OutsideVideo,
    SeekFailed,
    SeekRuns,
    check_position,
    clock,
    prune_seek_folders,
    seek_folder,
)
from torrentm3u8_b.seeking import seek as answer_seek
from torrentm3u8_b.transcode import is_complete_rendition

pytestmark = [pytest.mark.slow, pytest.mark.deadline(150)]

PIECE_SIZE = 65_536  # bytes: small pieces, so the download moves piece by piece
SPEED = 2.0  # the seeder sends at this many times the clip's bitrate
SEEK_BEFORE = 25.0  # percent downloaded, at most, when the viewer seeks
SEEK_TO = 0.75  # of the video's duration
FAR_SEEK_TO = 0.55  # of the video's duration: outside the first seek rendition
ANSWER_BEFORE = 50.0  # percent downloaded, at most, when the seek is answered
KEYFRAME_GAP = 2.1  # seconds: the samples have a keyframe every 2 s


def live_entry(task):
    return next((h for h in task["hls"] if h["live"]), None)


def between_keyframes(seconds: float) -> float:
    """A whole odd second near `seconds`: midway between two keyframes, so a container's
    timestamp offsets (B-frame delay, audio first) cannot move the keyframe before it."""
    whole = math.floor(seconds)
    return float(whole + 1 if whole % 2 == 0 else whole)


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def seek_ffmpegs(folder: Path) -> dict[int, str]:
    """pid: command line of the FFmpeg children of this process writing a seek rendition
    under `folder`."""
    found = {}
    for thread in Path("/proc/self/task").iterdir():
        for pid in (thread / "children").read_text().split():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue  # it just ended
            if "-ss" in command and str(folder) in command:
                found[int(pid)] = command
    return found


async def seek(worker, task_id: str, file_index: int, position: float) -> dict:
    """task.seek as A calls it: through B's method table."""
    params = {"task_id": task_id, "file_index": file_index, "position": position}
    return await worker.methods().invoke("task.seek", params)


async def check_errors(worker, task_id: str, file_index: int, duration: float) -> None:
    for position in (duration + 5, duration, -1.0, math.nan):
        with pytest.raises(rpc.InvalidParams, match="outside the video"):
            await seek(worker, task_id, file_index, position)
    with pytest.raises(rpc.InvalidParams):
        await seek(worker, task_id, file_index, "60")
    with pytest.raises(rpc.ApplicationError) as unknown:
        await seek(worker, "no-such-task", 0, 1.0)
    assert unknown.value.code == -32003
    with pytest.raises(rpc.ApplicationError) as no_file:
        await seek(worker, task_id, file_index + 7, 1.0)
    assert no_file.value.code == -32003


async def test_live_hls_and_seeks_past_the_download(tmp_path, clips, clip_seconds, start_b):
    """For each container: a live rendition below 25 % downloaded (the task still
    downloading), seeks past the download answered long before it gets there, and in the end
    the main rendition complete (ENDLIST, no empty segment) and the task playable."""
    seen: dict[str, dict] = {}

    async def follow(a, worker, name, task_id, seeder, size):
        got = seen[name] = {}
        live = await wait_task(a, task_id, live_entry, what="live HLS")
        got["before"] = 100 * seeder.uploaded_bytes() / size
        got["state"] = live["state"]
        entry = live_entry(live)
        file_index, media = entry["file_index"], entry["media_duration"]
        got["live"], got["task"] = entry, task_id
        hls = tmp_path / "b" / "tasks" / task_id / "hls" / str(file_index)
        got["hls"] = hls

        if name == "faststart_mp4":  # inside what the main rendition lists: no FFmpeg
            got["inside"] = await seek(worker, task_id, file_index, entry["duration"] / 2)
            got["inside_ffmpegs"] = seek_ffmpegs(hls)
            got["inside_folders"] = [p.name for p in hls.glob("seek-*")]
            await check_errors(worker, task_id, file_index, media)

        position = between_keyframes(SEEK_TO * media)
        answer = await seek(worker, task_id, file_index, position)
        got["sent"] = 100 * seeder.uploaded_bytes() / size
        got["position"], got["answer"] = position, answer
        got["seg0"] = (hls / Path(answer["playlist"]).parent / "seg00000.ts").stat().st_size

        if name == "mkv":  # nearby: the same run; far: a new one, the first FFmpeg gone
            first = seek_ffmpegs(hls)
            got["nearby"] = await seek(worker, task_id, file_index, position + 2)
            got["nearby_ffmpegs"] = (first, seek_ffmpegs(hls))
            far = between_keyframes(FAR_SEEK_TO * media)
            got["far"] = await seek(worker, task_id, file_index, far)
            got["far_position"] = far
            got["far_ffmpegs"] = (first, seek_ffmpegs(hls))

        got["done"] = await wait_task(
            a, task_id, lambda t: t["state"] == "playable", what="playable"
        )

    async with AsyncExitStack() as stack:
        a, url = await stack.enter_async_context(run_a(tmp_path / "a"))
        tasks = {}
        for name, clip in clips.items():
            torrent = await trio.to_thread.run_sync(
                lambda c=clip: make_torrent(c, piece_size=PIECE_SIZE)
            )
            size = clip.stat().st_size
            limit = int(SPEED * size / clip_seconds)
            seeder = await stack.enter_async_context(
                open_seeder(torrent, clip.parent, upload_limit=limit)
            )
            task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
            tasks[name] = (task["id"], seeder, size)
        worker = await stack.enter_async_context(start_b(url, tmp_path / "b"))

        async with trio.open_nursery() as nursery:
            for name, (task_id, seeder, size) in tasks.items():
                nursery.start_soon(follow, a, worker, name, task_id, seeder, size)
        await worker.wait_idle()  # every pipeline ended, and with it every seek run

    for name, got in seen.items():
        live, answer, position = got["live"], got["answer"], got["position"]
        assert live["media_duration"] == pytest.approx(clip_seconds, abs=0.5), name
        assert got["before"] < SEEK_BEFORE, f"{name}: live at {got['before']:.0f} %"
        assert got["state"] == "downloading", name
        assert live["segments"] >= 2, name
        assert answer["playlist"] == f"{seek_folder(position)}/index.m3u8", name
        assert position - KEYFRAME_GAP <= answer["start"] <= position, (name, answer)
        assert got["seg0"] > 0, name
        # It did not wait for the sequential download to get there.
        assert got["sent"] < ANSWER_BEFORE, f"{name}: answered at {got['sent']:.0f} %"
        done = got["done"]
        assert done["progress"]["percent"] == 100.0, name
        [final] = done["hls"]
        assert final["live"] is False
        assert final["duration"] == pytest.approx(clip_seconds, abs=1.0), name
        assert final["media_duration"] == pytest.approx(clip_seconds, abs=0.5), name
        main = is_complete_rendition(got["hls"])
        assert main is not None and main.segments == final["segments"], name
        last = "far" if name == "mkv" else "answer"
        folder = Path(got[last]["playlist"]).parent
        seek_rendition = is_complete_rendition(got["hls"] / folder)  # ENDLIST, no empty segment
        assert seek_rendition is not None, name
        assert seek_rendition.duration == pytest.approx(
            clip_seconds - got[last]["start"], abs=1.0
        ), name

    fast = seen["faststart_mp4"]
    assert fast["inside"] == {"playlist": "index.m3u8", "start": 0.0}
    assert fast["inside_ffmpegs"] == {}
    assert fast["inside_folders"] == []

    mkv = seen["mkv"]
    first, during_nearby = mkv["nearby_ffmpegs"]
    assert len(first) == 1 and during_nearby == first  # the same FFmpeg
    assert mkv["nearby"] == mkv["answer"]
    far = mkv["far_position"]
    assert mkv["far"]["playlist"] == f"{seek_folder(far)}/index.m3u8"
    assert far - KEYFRAME_GAP <= mkv["far"]["start"] <= far
    first, after_far = mkv["far_ffmpegs"]
    assert not set(first) & set(after_far)  # the first run's FFmpeg is gone
    assert not any(alive(pid) for pid in first)
    kept = sorted(p.name for p in mkv["hls"].glob("seek-*"))  # both: at most 2 are kept
    assert kept == [seek_folder(far), seek_folder(mkv["position"])]


def test_at_most_two_seek_folders_are_kept(tmp_path):
    for n, name in enumerate(["seek-000010000", "seek-000020000", "seek-000030000"]):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (n, n))
    (tmp_path / "seg00000.ts").write_bytes(b"G")
    prune_seek_folders(tmp_path, keep="seek-000040000")
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["seek-000030000", "seg00000.ts"]
    assert KEPT_SEEK_FOLDERS == 2


@pytest.mark.parametrize(
    ("position", "duration", "message"),
    [
        (80.0, 80.0, "position 80 s is outside the video (0 to 80 s)"),
        (-0.5, 80.0, "position -0.5 s is outside the video (0 to 80 s)"),
        (math.nan, 80.0, "position nan s is outside the video (0 to 80 s)"),
        (math.inf, None, "position inf s is outside the video (0 to ? s)"),
        (True, 80.0, "position must be a number of seconds, not True"),
    ],
)
def test_positions_outside_the_video(position, duration, message):
    with pytest.raises(OutsideVideo) as refused:
        check_position(position, duration)
    assert str(refused.value) == message


def test_names_and_clock():
    assert check_position(61, 80.0) == 61.0
    assert seek_folder(61.0) == "seek-000061000" and seek_folder(3723.4567) == "seek-003723457"
    assert clock(61.9) == "01:01" and clock(3723) == "62:03"


async def test_seek_answers_from_the_record_alone(tmp_path):
    final = {"file_index": 0, "playlist": "index.m3u8", "duration": 79.9, "segments": 20}
    answer = await answer_seek(final, 50, out_dir=tmp_path, live=None, runs=None, what="file 0")
    assert answer == {"playlist": "index.m3u8", "start": 0.0}
    with pytest.raises(OutsideVideo, match=r"\(0 to 79.9 s\)"):  # no media_duration: the HLS's
        await answer_seek(final, 80, out_dir=tmp_path, live=None, runs=None, what="file 0")
    live = {**final, "live": True, "media_duration": 80.0}
    with pytest.raises(NotSeekable, match="file 0 is not being made now"):  # B restarted
        await answer_seek(live, 50, out_dir=tmp_path, live=None, runs=None, what="file 0")
    with pytest.raises(NotSeekable, match="no HLS for file 3"):
        await answer_seek(None, 50, out_dir=tmp_path, live=None, runs=None, what="file 3")


class Unreachable:
    """A torrent (`PieceSource`) whose pieces never come; counts deadline clearings."""

    piece_length = 65_536

    def __init__(self) -> None:
        self.cleared = 0

    def map_file(self, index: int, offset: int) -> tuple[int, int]:
        return divmod(offset, self.piece_length)

    def have_piece(self, piece: int) -> bool:
        return False

    def set_piece_deadline(self, piece: int, deadline: int) -> None:
        pass

    def clear_piece_deadlines(self) -> None:
        self.cleared += 1

    async def wait_piece(self, piece: int) -> None:
        await trio.sleep_forever()

    async def read_piece(self, piece: int) -> bytes:
        raise AssertionError("no piece is here")


async def test_a_seek_that_cannot_start_in_time_fails_and_stops(tmp_path, autojump_clock):
    torrent = Unreachable()
    live = LiveFile(torrent, 0, 10_000_000, tmp_path / "hls" / "0")
    live.media = MediaInfo(duration=80.0, video_codec="h264", audio_codec="aac")
    live.listed = LiveRendition(playlist="index.m3u8", duration=8.0, segments=2)
    async with trio.open_nursery() as nursery:
        runs = SeekRuns(nursery)
        with pytest.raises(SeekFailed) as failed:
            entry = {"file_index": 0, "live": True}
            await answer_seek(entry, 61, out_dir=live.out_dir, live=live, runs=runs, what="f")
        assert not live.reader.sets_deadlines  # the seek's reader had them meanwhile
    assert str(failed.value) == "the worker could not reach 01:01 in time; try again"
    assert live.reader.sets_deadlines  # the run stopped: the main reader asks again
    assert torrent.cleared == 2  # when the seek started, and when it stopped
    assert seek_ffmpegs(tmp_path) == {}
