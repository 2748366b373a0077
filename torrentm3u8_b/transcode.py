"""The HLS step: one video file (or URL) in, out_dir/index.m3u8 + segNNNNN.ts out.

    result = await make_hls(str(path), hls_dir(data, task_id, index), on_progress=report)

`plan` picks the cheapest conversion browsers can play (H.264 + AAC/MP3 in MPEG-TS): copy both
streams, copy the video and convert the audio to AAC, or re-encode both. A VOD rendition is
made in a sibling temp directory and renamed into place once checked, so a crash never leaves
a half rendition looking complete; `is_complete_rendition` tells whether a finished one is on
disk. `source` may be an http URL on 127.0.0.1 (read with -seekable 1): with
playlist_type="event" the playlist grows in out_dir while the file still downloads.

`seek=T` starts the rendition at T seconds (`-ss T` before `-i`) and keeps the video's own
timestamps (`-copyts -start_at_zero`): with stream copy the first segment starts at the
keyframe at or before T. `start_time(path)` reads where a segment starts on that timeline.
Forced keyframes (re-encoding) count from the first frame FFmpeg encodes, not from 0, so
they keep SEGMENT_SECONDS apart after a seek too (checked with FFmpeg 5.1 and 9).
"""

import json
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import trio

from .ffmpeg import (
    MediaInfo,
    TranscodeError,
    ffprobe_exe,
    find_ffmpeg,
    is_url,
    last_error,
    probe,
    run_ffmpeg,
)

__all__ = [
    "HlsResult",
    "TranscodeError",
    "is_complete_rendition",
    "make_hls",
    "plan",
    "start_time",
]

PLAYLIST = "index.m3u8"
SEGMENT_PATTERN = "seg%05d.ts"
SEGMENT_SECONDS = 4  # -hls_time; keyframes are forced at this interval when re-encoding
LIVE_SEGMENT_SECONDS = 2  # -hls_time while the file downloads: a viewer can start sooner
PROGRESS_STEP = 1.0  # percent between two on_progress calls
AUDIO_BITRATE = "128k"
MUXING_QUEUE = "4096"  # packets: sparse or late audio otherwise stops FFmpeg 5

COPY_AUDIO = frozenset({"aac", "mp3"})
CODEC_ARGS = {
    "copy": ["-c", "copy"],
    "audio": ["-c:v", "copy", "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ac", "2"],
    "full": [
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-force_key_frames", "expr:gte(t,n_forced*{segment_seconds})",
        "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ac", "2",
    ],
}  # fmt: skip

Mode = Literal["copy", "audio", "full"]


@dataclass(frozen=True)
class HlsResult:
    playlist: str  # file name in out_dir: "index.m3u8"
    duration: float  # seconds, the sum of the segments' EXTINF
    segments: int


def plan(info: MediaInfo) -> Mode:
    """ "copy" for H.264 with AAC, MP3 or no audio; "audio" for H.264 with other audio (made
    AAC); "full" for other video (libx264 + AAC)."""
    if info.video_codec is None:
        raise TranscodeError("the file has no video track")
    if info.video_codec != "h264":
        return "full"
    return "copy" if info.audio_codec in COPY_AUDIO or info.audio_codec is None else "audio"


def hls_command(
    exe: str,
    source: str,
    out_dir: Path,
    mode: Mode,
    *,
    video_index: int = 0,
    playlist_type="vod",
    seek: float | None = None,
    segment_seconds: float = SEGMENT_SECONDS,
) -> list[str]:
    """The FFmpeg command line of `make_hls` (progress on stdout, errors only on stderr)."""
    command = [exe, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
    command += ["-progress", "pipe:1", "-y"]
    command += ["-seekable", "1"] if is_url(source) else []
    if seek is not None:
        command += ["-copyts", "-start_at_zero", "-ss", f"{seek:.3f}"]
    command += ["-i", source, "-map", f"0:v:{video_index}", "-map", "0:a:0?"]
    command += [arg.format(segment_seconds=f"{segment_seconds:g}") for arg in CODEC_ARGS[mode]]
    command += ["-max_muxing_queue_size", MUXING_QUEUE]
    command += ["-f", "hls", "-hls_time", f"{segment_seconds:g}", "-hls_list_size", "0"]
    command += ["-hls_playlist_type", playlist_type, "-hls_flags", "independent_segments"]
    command += ["-hls_segment_type", "mpegts", "-start_number", "0"]
    command += ["-hls_segment_filename", str(out_dir / SEGMENT_PATTERN), str(out_dir / PLAYLIST)]
    return command


async def make_hls(
    source: str,
    out_dir: Path,
    *,
    on_progress: Callable[[float], None] | None = None,
    playlist_type: Literal["vod", "event"] = "vod",
    media: MediaInfo | None = None,
    mode: Mode | None = None,
    seek: float | None = None,
    segment_seconds: float = SEGMENT_SECONDS,
) -> HlsResult:
    """Make the HLS rendition of `source` (a path, or a Range-capable http URL) in out_dir.

    on_progress(percent) is called from this task as FFmpeg advances (at most every 1 %, and
    100 at the end); it must not block. `media` skips probing; `mode` overrides `plan`;
    `seek` starts at that many seconds, on the video's own timeline (module docstring);
    `segment_seconds` is the segments' target length (cut at keyframes when remuxing).
    Raises TranscodeError with FFmpeg's message when it fails or makes no playable segment.
    Cancelling kills FFmpeg; nothing looking complete is left behind.
    """
    out_dir = Path(out_dir)
    media = media or await probe(source)
    mode = mode or plan(media)
    exe = await find_ffmpeg()
    work = out_dir if playlist_type == "event" else out_dir.with_name(f".{out_dir.name}.partial")
    await trio.to_thread.run_sync(_fresh_dir, work)
    command = hls_command(
        exe,
        source,
        work,
        mode,
        video_index=media.video_index,
        playlist_type=playlist_type,
        seek=seek,
        segment_seconds=segment_seconds,
    )
    progress = _Progress(media.duration, on_progress)
    try:
        stderr = await run_ffmpeg(command, progress.line)
        result = await trio.to_thread.run_sync(_check_rendition, work, last_error(stderr))
        if work != out_dir:
            await trio.to_thread.run_sync(_move_into_place, work, out_dir)
    finally:
        if work != out_dir:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(partial(shutil.rmtree, work, ignore_errors=True))
    if on_progress is not None:
        on_progress(100.0)
    return result


class _Progress:
    def __init__(self, duration: float | None, callback) -> None:
        self.duration = duration
        self.callback = callback
        self.reported = -math.inf

    def line(self, line: str) -> None:
        key, _, value = line.partition("=")
        if key != "out_time_us" or not self.callback or not self.duration:
            return
        try:
            seconds = int(value) / 1e6
        except ValueError:
            return  # "N/A" before the first frame
        percent = max(0.0, min(99.9, 100.0 * seconds / self.duration))
        if percent - self.reported >= PROGRESS_STEP:
            self.reported = percent
            self.callback(percent)


_START = re.compile(r"Duration: .*?, start: (-?\d+(?:\.\d+)?)")


async def start_time(path: Path) -> float | None:
    """The container's start time of a media file (seconds, the lowest timestamp: where
    hls.js puts time 0 of a playlist starting with that segment), or None if unreadable."""
    ffprobe = await trio.to_thread.run_sync(ffprobe_exe)
    if ffprobe:
        command = [ffprobe, "-v", "error", "-of", "json", "-show_entries", "format=start_time"]
        result = await trio.run_process(
            [*command, str(path)], capture_stdout=True, capture_stderr=True, check=False
        )
        try:
            return float(json.loads(result.stdout)["format"]["start_time"])
        except (ValueError, KeyError, TypeError):
            return None
    exe = await find_ffmpeg()  # no ffprobe: `ffmpeg -i` says "Duration: ..., start: S"
    command = [exe, "-hide_banner", "-nostdin", "-i", str(path)]
    result = await trio.run_process(command, capture_stderr=True, check=False)
    match = _START.search(result.stderr.decode("utf-8", "replace"))
    return float(match[1]) if match else None


def is_complete_rendition(out_dir: Path) -> HlsResult | None:
    """The finished rendition in out_dir (ENDLIST present, every segment there and not
    empty), or None."""
    try:
        return _check_rendition(Path(out_dir), "")
    except TranscodeError:
        return None


def playlist_segments(text: str) -> list[tuple[str, float | None]]:
    """The segments a media playlist lists, in order: (URI line, its #EXTINF seconds, or None
    when that #EXTINF cannot be read). A URI line without an #EXTINF before it is not one."""
    segments: list[tuple[str, float | None]] = []
    extinf = False
    seconds: float | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            extinf = True
            try:
                seconds = float(line[len("#EXTINF:") :].split(",")[0])
            except ValueError:
                seconds = None
        elif line and not line.startswith("#") and extinf:
            segments.append((line, seconds))
            extinf, seconds = False, None
    return segments


def segment_file_ok(out_dir: Path, name: str) -> bool:
    """`name` is a plain file name in out_dir, and that file exists and is not empty."""
    path = Path(out_dir) / name
    return (
        "/" not in name and not name.startswith(".") and path.is_file() and path.stat().st_size > 0
    )


def _check_rendition(out_dir: Path, ffmpeg_said: str) -> HlsResult:
    def fail(why: str):
        said = f": {ffmpeg_said}" if ffmpeg_said else ""
        return TranscodeError(f"FFmpeg made no playable HLS ({why}){said}")

    try:
        text = (out_dir / PLAYLIST).read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        raise fail("no playlist") from None
    segments = playlist_segments(text)
    if "#EXT-X-ENDLIST" not in text:
        raise fail("the playlist has no end")
    if not segments:
        raise fail("no segment")
    for name, seconds in segments:
        if seconds is None:
            raise fail(f"{name} has an unreadable #EXTINF")
        if seconds <= 0:
            raise fail(f"{name} lasts {seconds:g} s")
        if not segment_file_ok(out_dir, name):
            raise fail(f"{name} is missing or empty")
    duration = round(sum(seconds for _, seconds in segments), 6)
    return HlsResult(playlist=PLAYLIST, duration=duration, segments=len(segments))


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _move_into_place(work: Path, out_dir: Path) -> None:
    if out_dir.exists():
        stale = out_dir.with_name(f".{out_dir.name}.stale")
        shutil.rmtree(stale, ignore_errors=True)
        out_dir.rename(stale)
        shutil.rmtree(stale)
    work.rename(out_dir)
