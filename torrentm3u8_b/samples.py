"""Sample media and torrents, for tests, benchmarks and the demo.

await make_sample(tmp / "clip.mp4", seconds=3, size="320x240")
torrent = make_torrent(tmp / "clip.mp4")
magnet = magnet_for(torrent, peers=[("127.0.0.1", seeder.port)])
"""

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import libtorrent as lt
import trio

from .ffmpeg import TranscodeError, find_ffmpeg, last_error

FRAME_RATE = 25  # frames per second of the samples
GOP_FRAMES = 50  # a keyframe every 2 s: segments cut close to -hls_time
SINE_HZ = 440
SAMPLE_RATE = 48_000  # Hz (Opus only takes 48 kHz and fractions of it)

_FASTSTART_SUFFIXES = {".mp4", ".m4v", ".mov"}
_ENCODER_ARGS = {  # fast settings: samples are made in tests
    "libx264": ["-preset", "veryfast"],
    "libvpx-vp9": ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M"],
    "libvpx": ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M"],
    "mpeg4": ["-q:v", "5"],
}


async def make_sample(
    path: Path,
    *,
    seconds: float = 10,
    size: str = "1280x720",
    vcodec: str = "libx264",
    acodec: str | None = "aac",
    faststart: bool = True,
) -> Path:
    """Write a test clip (lavfi testsrc2 + a sine tone) to `path`; the container follows the
    suffix. acodec=None makes a clip without audio. Returns `path`."""
    path = Path(path)
    exe = await find_ffmpeg()
    command = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    command += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={FRAME_RATE}:duration={seconds}"]
    if acodec:
        sine = f"sine=frequency={SINE_HZ}:sample_rate={SAMPLE_RATE}:duration={seconds}"
        command += ["-f", "lavfi", "-i", sine, "-map", "0:v", "-map", "1:a", "-c:a", acodec]
    command += ["-c:v", vcodec, "-pix_fmt", "yuv420p", *_ENCODER_ARGS.get(vcodec, [])]
    command += ["-g", str(GOP_FRAMES), "-keyint_min", str(GOP_FRAMES), "-sc_threshold", "0"]
    if faststart and path.suffix.lower() in _FASTSTART_SUFFIXES:
        command += ["-movflags", "+faststart"]
    command.append(str(path))
    result = await trio.run_process(command, capture_stderr=True, check=False)
    if result.returncode != 0:
        raise TranscodeError(last_error(result.stderr.decode("utf-8", "replace").splitlines()))
    return path


def make_torrent(path: Path, *, piece_size: int = 0, trackers: Iterable[str] = ()) -> bytes:
    """A .torrent (hybrid v1+v2) of a file or a directory; piece_size 0 lets libtorrent
    choose. Hashes every byte: call it through trio.to_thread for big files."""
    path = Path(path)
    creator = lt.create_torrent(lt.list_files(str(path)), piece_size)
    for tracker in trackers:
        creator.add_tracker(tracker)
    lt.set_piece_hashes(creator, str(path.parent))
    return lt.bencode(creator.generate())  # generate_buf() breaks in 2.1.1


def magnet_for(
    torrent: bytes, *, name: str | None = None, peers: Iterable[tuple[str, int]] = ()
) -> str:
    """The magnet link of a .torrent: both info hashes, its trackers, and x.pe peers."""
    meta = lt.bdecode(torrent)
    info = lt.torrent_info(meta)
    hashes = info.info_hashes()
    parts = []
    if hashes.has_v1():
        parts.append(f"xt=urn:btih:{hashes.v1}")
    if hashes.has_v2():
        parts.append(f"xt=urn:btmh:1220{hashes.v2}")
    parts.append(f"dn={quote(name or info.name())}")
    tiers = meta.get(b"announce-list") or ([[meta[b"announce"]]] if b"announce" in meta else [])
    trackers = dict.fromkeys(url.decode() for tier in tiers for url in tier)
    parts += [f"tr={quote(url, safe='')}" for url in trackers]
    parts += [f"x.pe={host}:{port}" for host, port in peers]
    return "magnet:?" + "&".join(parts)
