"""Finding FFmpeg, running it from trio, and probing media.

`ffmpeg_exe()` picks the binary: $TORRENTM3U8_FFMPEG, else a system `ffmpeg` with libx264,
else imageio-ffmpeg's static build. `probe(source)` reads what a file or URL holds, with
ffprobe when it sits next to that ffmpeg (imageio-ffmpeg ships none), else by reading
`ffmpeg -i`'s report. `run_ffmpeg` runs a command, hands its stdout lines to a callback, kills
it when cancelled and turns a failure into TranscodeError(FFmpeg's last error line).
"""

import functools
import json
import os
import re
import shutil
import signal
import subprocess
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

FFMPEG_ENV = "TORRENTM3U8_FFMPEG"
ENCODERS_TIMEOUT = 20  # seconds, for the one `ffmpeg -encoders` run
ERROR_LINES_KEPT = 20

_POINTER = re.compile(r" @ 0x[0-9a-f]+\]")  # "[mov,mp4 @ 0x55d0c0]" -> "[mov,mp4]"


class TranscodeError(Exception):
    """FFmpeg could not read or convert a file. The message is FFmpeg's own last error line."""


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg to use (cached; the first call may run `ffmpeg -encoders`)."""
    override = os.environ.get(FFMPEG_ENV)
    if override:
        return override
    system = shutil.which("ffmpeg")
    if system and "libx264" in _encoders(system):
        return system
    try:
        import imageio_ffmpeg  # only needed without a usable system ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        if system:
            return system  # remuxing works; re-encoding will say libx264 is missing
    raise TranscodeError(
        f"FFmpeg not found: install ffmpeg with libx264, pip install imageio-ffmpeg, "
        f"or set {FFMPEG_ENV}"
    )


@functools.cache
def ffprobe_exe() -> str | None:
    """The ffprobe next to `ffmpeg_exe()`, or None."""
    exe = Path(ffmpeg_exe())
    name = "ffprobe" + exe.suffix if exe.name.startswith("ffmpeg") else None
    probe = exe.with_name(name) if name else None
    if probe and probe.is_file() and os.access(probe, os.X_OK):
        return str(probe)
    return None


def _encoders(exe: str) -> str:
    try:
        result = subprocess.run(
            [exe, "-hide_banner", "-encoders"],
            capture_output=True,
            text=True,
            timeout=ENCODERS_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout


async def find_ffmpeg() -> str:
    """`ffmpeg_exe()` without blocking trio on its first call."""
    return await trio.to_thread.run_sync(ffmpeg_exe)


def is_url(source: str) -> bool:
    return "://" in source


def last_error(lines) -> str:
    """The last non-empty line of FFmpeg's stderr, without memory addresses."""
    for line in reversed(list(lines)):
        if line.strip():
            return _POINTER.sub("]", line.strip())
    return ""


async def run_ffmpeg(command: list[str], on_line: Callable[[str], None] | None = None) -> list[str]:
    """Run an FFmpeg command; each stdout line goes to `on_line`. Cancelling kills FFmpeg.
    Returns the last lines of its stderr; raises TranscodeError with FFmpeg's last error line
    when it exits with an error."""
    errors: deque[str] = deque(maxlen=ERROR_LINES_KEPT)
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_lines, process.stderr, errors.append)
            await _read_lines(process.stdout, on_line or (lambda line: None))
        await process.wait()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            await process.stdout.aclose()
            await process.stderr.aclose()
    if process.returncode < 0:  # killed by a signal: say which, not "code -11"
        said = last_error(errors)
        raise TranscodeError(
            f"FFmpeg crashed ({_signal_name(-process.returncode)})" + (f": {said}" if said else "")
        )
    if process.returncode != 0:
        raise TranscodeError(last_error(errors) or f"FFmpeg exited with code {process.returncode}")
    return list(errors)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


async def _read_lines(stream: trio.abc.ReceiveStream, on_line: Callable[[str], None]) -> None:
    pending = b""
    while chunk := await stream.receive_some():
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            on_line(line.decode("utf-8", "replace").rstrip("\r"))
    if pending:
        on_line(pending.decode("utf-8", "replace"))


@dataclass(frozen=True)
class MediaInfo:
    duration: float | None  # seconds; None when the container does not say
    video_codec: str | None  # FFmpeg's codec names: h264, hevc, vp9, mpeg4, ...
    audio_codec: str | None  # aac, mp3, opus, ac3, ...
    width: int | None = None
    height: int | None = None
    video_index: int = 0  # n in -map 0:v:n: the first video track that is not cover art

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


async def probe(source: str) -> MediaInfo:
    """What `source` (a path or an http URL) holds. TranscodeError when FFmpeg cannot read it."""
    exe = await find_ffmpeg()
    ffprobe = await trio.to_thread.run_sync(ffprobe_exe)
    if ffprobe:
        return await probe_with_ffprobe(ffprobe, source)
    return await probe_with_ffmpeg(exe, source)


async def probe_with_ffprobe(ffprobe: str, source: str) -> MediaInfo:
    command = [ffprobe, "-v", "error", "-of", "json"]
    command += ["-show_entries", "format=duration:stream=codec_type,codec_name,width,height"]
    command += ["-show_entries", "stream_disposition=attached_pic"]
    command += ["-seekable", "1", source] if is_url(source) else [source]
    result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    if result.returncode != 0:
        raise TranscodeError(last_error(result.stderr.decode("utf-8", "replace").splitlines()))
    data = json.loads(result.stdout)
    videos, audios = [], []
    for stream in data.get("streams", []):
        if stream.get("codec_type") == "audio":
            audios.append(stream)
        elif stream.get("codec_type") == "video":
            videos.append(stream)
    real = [i for i, v in enumerate(videos) if not v.get("disposition", {}).get("attached_pic")]
    video = videos[real[0]] if real else None
    duration = data.get("format", {}).get("duration")
    return MediaInfo(
        duration=float(duration) if duration not in (None, "N/A") else None,
        video_codec=video.get("codec_name") if video else None,
        audio_codec=audios[0].get("codec_name") if audios else None,
        width=video.get("width") if video else None,
        height=video.get("height") if video else None,
        video_index=real[0] if real else 0,
    )


_DURATION = re.compile(r"^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", re.M)
_STREAM = re.compile(r"^\s*Stream #0:\d+\S*: (Video|Audio): (\w+)(.*)$", re.M)
_SIZE = re.compile(r", (\d{2,5})x(\d{2,5})\b")


async def probe_with_ffmpeg(exe: str, source: str) -> MediaInfo:
    """`probe` from the report `ffmpeg -i` prints (it exits 1: no output file is given)."""
    command = [exe, "-hide_banner", "-nostdin"]
    command += ["-seekable", "1", "-i", source] if is_url(source) else ["-i", source]
    result = await trio.run_process(command, capture_stderr=True, check=False)
    report = result.stderr.decode("utf-8", "replace")
    if "Input #0" not in report:
        raise TranscodeError(last_error(report.splitlines()))
    duration = _DURATION.search(report)
    video, audio, video_index, width, height = None, None, 0, None, None
    videos_seen = 0
    for kind, codec, rest in _STREAM.findall(report):
        if kind == "Audio" and audio is None:
            audio = codec
        elif kind == "Video" and video is None and "(attached pic)" not in rest:
            video, video_index = codec, videos_seen
            size = _SIZE.search(rest)
            width, height = (int(size[1]), int(size[2])) if size else (None, None)
        if kind == "Video":
            videos_seen += 1
    return MediaInfo(
        duration=int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3])
        if duration
        else None,
        video_codec=video,
        audio_codec=audio,
        width=width,
        height=height,
        video_index=video_index,
    )
