"""Watching while downloading: the HLS of one video file made while its torrent downloads.

    result = await make_live_hls(torrent, file_index, size, out_dir,
                                 on_live=report_live, on_progress=report_percent)

The torrent downloads sequentially; FFmpeg reads the file through `piece_server` (a Range
endpoint on 127.0.0.1 that waits for pieces and gives them deadlines) and writes an EVENT
playlist in out_dir that grows segment by segment and ends with #EXT-X-ENDLIST. Remux or
re-encode is chosen by `transcode.plan` on the probe, as for a complete file, and the same
checks apply at the end (no empty or zero-length segment). `on_live(LiveRendition)` is called
once the playlist lists MIN_LIVE_SEGMENTS segments, then each time it grows, until FFmpeg ends.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from .piece_server import open_piece_server, unwrapped
from .transcode import PLAYLIST, HlsResult, make_hls, probe

log = logging.getLogger("torrentm3u8.b.live")

MIN_LIVE_SEGMENTS = 2  # segments in the playlist before a viewer is told it can play
PLAYLIST_POLL_INTERVAL = 0.25  # seconds between two looks at the growing playlist


@dataclass(frozen=True)
class LiveRendition:
    playlist: str
    duration: float  # seconds listed so far
    segments: int


def read_live_playlist(out_dir: Path) -> LiveRendition | None:
    """What a growing playlist in out_dir lists so far: only segments with a positive
    duration whose file exists and is not empty count. None when there is no playlist."""
    try:
        text = (Path(out_dir) / PLAYLIST).read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    segments, duration, pending = 0, 0.0, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            try:
                pending = float(line[len("#EXTINF:") :].split(",")[0])
            except ValueError:
                pending = None
        elif line and not line.startswith("#") and pending is not None:
            path = Path(out_dir) / line
            ok = "/" not in line and path.is_file() and path.stat().st_size > 0
            if pending <= 0 or not ok:
                break  # a viewer can only use the segments before this one
            segments += 1
            duration += pending
            pending = None
    return LiveRendition(playlist=PLAYLIST, duration=round(duration, 6), segments=segments)


async def _watch_playlist(out_dir: Path, on_live: Callable[[LiveRendition], None]) -> None:
    told = 0
    while True:
        await trio.sleep(PLAYLIST_POLL_INTERVAL)
        now = await trio.to_thread.run_sync(read_live_playlist, out_dir)
        if now is not None and now.segments >= MIN_LIVE_SEGMENTS and now.segments > told:
            told = now.segments
            on_live(now)


async def make_live_hls(
    torrent,
    file_index: int,
    size: int,
    out_dir: Path,
    *,
    on_live: Callable[[LiveRendition], None],
    on_progress: Callable[[float], None] | None = None,
) -> HlsResult:
    """Make the HLS of file `file_index` (`size` bytes) of `torrent` while it downloads.

    Turns on sequential download. Returns the finished rendition (ENDLIST written, every
    segment checked); raises TranscodeError like `make_hls`, TorrentError when the torrent
    goes away. Cancelling stops FFmpeg and the piece server.
    """
    torrent.set_sequential(True)
    # A rendition left by an earlier run (B restarted) must not be announced as this one.
    await trio.to_thread.run_sync(lambda: shutil.rmtree(out_dir, ignore_errors=True))
    async with open_piece_server(torrent, file_index, size) as url:
        media = await probe(url)
        log.info("live HLS of file %d from %s (%s)", file_index, url, media.video_codec)
        with unwrapped():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_playlist, Path(out_dir), on_live)
                result = await make_hls(
                    url, Path(out_dir), on_progress=on_progress, playlist_type="event", media=media
                )
                nursery.cancel_scope.cancel()
    return result
