"""Watching while downloading: the HLS of one video file made while its torrent downloads.

    live = LiveFile(torrent, file_index, size, out_dir)
    result = await make_live_hls(live, on_live=report_live, on_progress=report_percent,
                                 slot=worker.transcode_limit)

The torrent downloads sequentially; FFmpeg reads the file through `piece_server` (a Range
endpoint on 127.0.0.1 that waits for pieces and gives them deadlines) and writes an EVENT
playlist in out_dir that grows segment by segment and ends with #EXT-X-ENDLIST. Remux or
re-encode is chosen by `transcode.plan` on the probe, as for a complete file, and the same
checks apply at the end (no empty or zero-length segment). The probe runs at once. A
re-encode waits for `slot` (the worker's transcode limit), so many downloading tasks do not
run many encoders; a remux does not: it costs next to nothing while it waits for the
download, and every downloading task can be watched at once. `on_live(LiveRendition)` is
called once the playlist lists MIN_LIVE_SEGMENTS segments, then each time it grows, until
FFmpeg ends.

The `LiveFile` is what a seek (seeking.py) needs of this run: the probe, what the playlist
lists, and the reader whose piece deadlines a seek rendition pauses while it runs.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import trio

from .ffmpeg import MediaInfo
from .piece_server import FileReader, open_piece_server, unwrapped
from .transcode import (
    LIVE_SEGMENT_SECONDS,
    PLAYLIST,
    HlsResult,
    make_hls,
    plan,
    playlist_segments,
    probe,
    segment_file_ok,
)

log = logging.getLogger("torrentm3u8.b.live")

MIN_LIVE_SEGMENTS = 2  # segments in the playlist before a viewer is told it can play
PLAYLIST_POLL_INTERVAL = 0.25  # seconds between two looks at the growing playlist


@dataclass(frozen=True)
class LiveRendition:
    playlist: str
    duration: float  # seconds listed so far
    segments: int


class LiveFile:
    """One file's live (main) run: set up by the pipeline, filled in by `make_live_hls`."""

    def __init__(self, torrent, file_index: int, size: int, out_dir: Path) -> None:
        self.torrent = torrent
        self.file_index = file_index
        self.size = size
        self.out_dir = Path(out_dir)
        self.reader = FileReader(torrent, file_index, size)
        self.media: MediaInfo | None = None  # the probe, once done
        self.started = False  # FFmpeg was started (a re-encode took the transcode slot first)
        self.listed: LiveRendition | None = None  # once announced: what the playlist lists


def read_live_playlist(out_dir: Path) -> LiveRendition | None:
    """What a growing playlist in out_dir lists so far: only segments with a positive
    duration whose file exists and is not empty count. None when there is no playlist."""
    try:
        text = (Path(out_dir) / PLAYLIST).read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    segments, duration = 0, 0.0
    for name, seconds in playlist_segments(text):
        if seconds is None or seconds <= 0 or not segment_file_ok(out_dir, name):
            break  # a viewer can only use the segments before this one
        segments += 1
        duration += seconds
    return LiveRendition(playlist=PLAYLIST, duration=round(duration, 6), segments=segments)


async def _watch_playlist(live: LiveFile, on_live: Callable[[LiveRendition], None]) -> None:
    told = 0
    while True:
        await trio.sleep(PLAYLIST_POLL_INTERVAL)
        now = await trio.to_thread.run_sync(read_live_playlist, live.out_dir)
        if now is not None and now.segments >= MIN_LIVE_SEGMENTS and now.segments > told:
            told = now.segments
            live.listed = now
            on_live(now)


async def make_live_hls(
    live: LiveFile,
    *,
    on_live: Callable[[LiveRendition], None],
    on_progress: Callable[[float], None] | None = None,
    slot: AbstractAsyncContextManager | None = None,
) -> HlsResult:
    """Make the HLS of `live`'s file in live.out_dir while it downloads.

    Turns on sequential download. Returns the finished rendition (ENDLIST written, every
    segment checked); raises TranscodeError like `make_hls`, TorrentError when the torrent
    goes away. Cancelling stops FFmpeg and the piece server.
    """
    live.torrent.set_sequential(True)
    # A rendition left by an earlier run (B restarted) must not be announced as this one.
    await trio.to_thread.run_sync(lambda: shutil.rmtree(live.out_dir, ignore_errors=True))
    index = live.file_index
    async with open_piece_server(live.torrent, index, live.size, reader=live.reader) as url:
        live.media = await probe(url)
        log.info("live HLS of file %d from %s (%s)", index, url, live.media.video_codec)
        needs_slot = slot is not None and plan(live.media) == "full"
        async with slot if needs_slot else nullcontext():
            live.started = True
            with unwrapped():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_watch_playlist, live, on_live)
                    result = await make_hls(
                        url,
                        live.out_dir,
                        on_progress=on_progress,
                        playlist_type="event",
                        media=live.media,
                        segment_seconds=LIVE_SEGMENT_SECONDS,
                    )
                    nursery.cancel_scope.cancel()
    return result
