"""Seeking past what is downloaded: a second rendition that starts where the viewer goes.

    runs = SeekRuns(nursery)                     # one per task pipeline
    answer = await seek(entry, 61.0, out_dir=hls, live=live, runs=runs, what="file 0")
    # {"playlist": "seek-000061000/index.m3u8", "start": 59.845}

While a file downloads, its main rendition (progressive.py) grows from the start. A position
it already lists is played there ("index.m3u8", start 0.0). A position past it gets a seek
rendition in `seek-<ms>/` under the main one's folder (the viewer's session root): FFmpeg
reads the file through its own piece server from `-ss position`, with the video's own
timestamps, so it starts at the keyframe at or before the position. `start` is where that
playlist's time 0 sits on the video's timeline as hls.js sees it (it maps the lowest timestamp
of a playlist's first segment to 0): the seek seg00000's start time minus the main seg00000's.

While a seek rendition runs, its piece server sets the piece deadlines and the main reader
sets none (sequential download still brings the main run's pieces); when it ends or fails the
main reader asks again. At most one seek run per file: a seek inside the current rendition
reuses it, any other replaces it. A run reads to the end of the file and stops at ENDLIST.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

import trio

from .piece_server import open_piece_server, unwrapped
from .progressive import PLAYLIST_POLL_INTERVAL, LiveFile, read_live_playlist
from .torrents import TorrentError
from .transcode import (
    LIVE_SEGMENT_SECONDS,
    PLAYLIST,
    SEGMENT_PATTERN,
    SEGMENT_SECONDS,
    is_complete_rendition,
    make_hls,
    start_time,
)

log = logging.getLogger("torrentm3u8.b.seek")

SEEK_TIMEOUT = 25.0  # seconds for a seek rendition to list its first segment (A waits 30)
KEPT_SEEK_FOLDERS = 2  # seek renditions kept on disk per file, the running one included
SEEK_PREFIX = "seek-"
REUSE_MARGIN = 2 * SEGMENT_SECONDS  # seconds past what a running rendition lists that reuse it
TS_OFFSET = 1.4  # seconds FFmpeg's MPEG-TS muxer adds to timestamps (main seg00000 missing)
MAIN_ANSWER = {"playlist": PLAYLIST, "start": 0.0}


class SeekError(Exception):
    """A seek cannot be answered; the message is for the viewer."""


class NotSeekable(SeekError):
    """The file has no rendition here, or none that a seek can start from now."""


class OutsideVideo(SeekError):
    """The position is not a time of the video."""


class SeekFailed(SeekError):
    """The seek rendition did not start (in time)."""


def seek_folder(position: float) -> str:
    return f"{SEEK_PREFIX}{round(position * 1000):09d}"


def clock(seconds: float) -> str:
    """mm:ss, as a player shows it."""
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def check_position(position: Any, media_duration: float | None) -> float:
    """The position as a float; OutsideVideo unless 0 <= position < media_duration."""
    if isinstance(position, bool) or not isinstance(position, int | float):
        raise OutsideVideo(f"position must be a number of seconds, not {position!r}")
    position = float(position)
    end = media_duration if media_duration else math.inf
    if not (0 <= position < end):  # NaN too
        until = f"{media_duration:g}" if media_duration else "?"
        raise OutsideVideo(f"position {position:g} s is outside the video (0 to {until} s)")
    return position


async def seek(
    entry: dict | None,
    position: Any,
    *,
    out_dir: Path,
    live: LiveFile | None,
    runs: SeekRuns | None,
    what: str,
) -> dict:
    """The answer to `task.seek` for the file whose recorded HLS is `entry` (None: none) and
    whose rendition folder is out_dir; `live`: its live run in this process, if any."""
    if entry is None:
        raise NotSeekable(f"this worker has no HLS for {what}")
    media_duration = entry.get("media_duration")
    if live is not None and live.media is not None:
        media_duration = live.media.duration
    if media_duration is None and not entry.get("live"):
        media_duration = entry.get("duration")
    position = check_position(position, media_duration)
    if not entry.get("live"):
        return dict(MAIN_ANSWER)
    if await trio.to_thread.run_sync(is_complete_rendition, out_dir):
        return dict(MAIN_ANSWER)  # the live run ended: the final report is on its way
    if live is None or live.listed is None or runs is None:
        raise NotSeekable(f"the HLS of {what} is not being made now; try again once it is ready")
    if position < live.listed.duration:
        return dict(MAIN_ANSWER)
    return await runs.seek(live, position)


class SeekRun:
    """One seek rendition of a file, in live.out_dir / seek_folder(position)."""

    def __init__(self, live: LiveFile, position: float) -> None:
        self.live = live
        self.position = position
        self.folder = seek_folder(position)
        self.out_dir = live.out_dir / self.folder
        self.start: float | None = None  # known once the first segment is listed
        self.listed = 0.0  # seconds listed so far
        self.complete = False  # ENDLIST written
        self.error: str | None = None
        self.ready = trio.Event()  # start is known, or the run ended
        self.done = trio.Event()
        self.scope = trio.CancelScope()

    def answer(self) -> dict:
        return {"playlist": f"{self.folder}/{PLAYLIST}", "start": self.start}

    def covers(self, position: float) -> bool:
        if self.error is not None:
            return False
        if self.start is None:  # starting: a seek just after the same position waits for it
            ahead = position - self.position
            return not self.done.is_set() and 0 <= ahead <= REUSE_MARGIN
        if self.complete:
            return self.start <= position  # it reaches the end of the video
        return self.start <= position <= self.start + self.listed + REUSE_MARGIN


class SeekRuns:
    """The seek renditions of one task, at most one running per file. The runs live in
    `nursery` (the task pipeline's), so they end with it."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._runs: dict[int, SeekRun] = {}  # file index -> the running or last complete one

    async def seek(self, live: LiveFile, position: float) -> dict:
        """A seek rendition of `live`'s file covering `position`, once it lists a segment."""
        run = self._runs.get(live.file_index)
        if run is None or not run.covers(position):
            old, run = run, SeekRun(live, position)
            self._runs[live.file_index] = run
            if old is not None:
                old.scope.cancel()
            live.reader.pause_deadlines()
            self._nursery.start_soon(self._run, run, old)
        with trio.move_on_after(SEEK_TIMEOUT):
            await run.ready.wait()
        if run.start is not None:
            return run.answer()
        if not run.done.is_set():
            run.scope.cancel()
            raise SeekFailed(f"the worker could not reach {clock(position)} in time; try again")
        raise SeekFailed(f"the worker could not start the video at {clock(position)}: {run.error}")

    async def _run(self, run: SeekRun, old: SeekRun | None) -> None:
        live = run.live
        try:
            with run.scope:
                if old is not None:
                    await old.done.wait()
                live.torrent.clear_piece_deadlines()  # the main run's, or the last seek's
                await trio.to_thread.run_sync(prune_seek_folders, live.out_dir, run.folder)
                log.info("file %d: seek rendition from %s", live.file_index, clock(run.position))
                with unwrapped():
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._watch, run)
                        async with open_piece_server(
                            live.torrent, live.file_index, live.size
                        ) as url:
                            result = await make_hls(
                                url,
                                run.out_dir,
                                playlist_type="event",
                                media=live.media,
                                seek=run.position,
                                segment_seconds=LIVE_SEGMENT_SECONDS,
                            )
                        nursery.cancel_scope.cancel()
                run.listed = result.duration
                if run.start is None:
                    run.start = await self._start_of(run)
                run.complete = True
                log.info("file %d: seek rendition %s complete", live.file_index, run.folder)
            if run.scope.cancelled_caught:
                run.error = "it was stopped (a later seek, or too slow)"
        except Exception as exc:  # a seek that fails is the viewer's problem, not the task's
            run.error = str(exc) or type(exc).__name__
            log.warning("file %d: no seek rendition at %s: %s", live.file_index, run.folder, exc)
        finally:
            run.ready.set()
            run.done.set()
            if self._runs.get(live.file_index) is run:  # not replaced: the main run asks again
                if not run.complete:
                    del self._runs[live.file_index]
                live.reader.resume_deadlines()
                try:
                    live.torrent.clear_piece_deadlines()
                except TorrentError:
                    pass  # the torrent went away with the pipeline

    async def _watch(self, run: SeekRun) -> None:
        while True:
            await trio.sleep(PLAYLIST_POLL_INTERVAL)
            now = await trio.to_thread.run_sync(read_live_playlist, run.out_dir)
            if now is None or now.segments < 1:
                continue
            run.listed = now.duration
            if run.start is None:
                run.start = await self._start_of(run)
                run.ready.set()

    async def _start_of(self, run: SeekRun) -> float:
        first = SEGMENT_PATTERN % 0
        seek_start = await start_time(run.out_dir / first)
        main_start = await start_time(run.live.out_dir / first)
        if seek_start is None:
            log.warning("%s: cannot read where %s starts; assuming the position", run.folder, first)
            return run.position
        if main_start is None:
            log.warning("%s: no main %s; assuming it starts at %g s", run.folder, first, TS_OFFSET)
            main_start = TS_OFFSET
        return round(max(0.0, seek_start - main_start), 6)


def prune_seek_folders(folder: Path, keep: str) -> None:
    """Delete the oldest seek renditions in `folder` so that, with `keep`, at most
    KEPT_SEEK_FOLDERS remain."""
    others = []
    try:
        for path in folder.iterdir():
            if path.name.startswith(SEEK_PREFIX) and path.name != keep and path.is_dir():
                others.append((path.stat().st_mtime, path))
    except OSError:
        return  # no folder yet, or one vanished meanwhile: nothing to prune now
    others.sort(reverse=True)
    for _, stale in others[KEPT_SEEK_FOLDERS - 1 :]:
        shutil.rmtree(stale, ignore_errors=True)
