"""Fixtures for B's tests: sample media (made once per run), a loopback-only leecher session
and a seeder of a multi-file torrent."""

import shutil
from pathlib import Path

import pytest
import trio

from torrentm3u8_b.samples import make_sample, make_torrent
from torrentm3u8_b.seeder import open_seeder
from torrentm3u8_b.torrents import TorrentSettings, open_torrent_session

SMALL = "320x240"
SAMPLES = {  # name: (file name, make_sample options)
    "h264_aac": ("clip.mp4", {"seconds": 3}),
    "h264_opus": ("h264-opus.mkv", {"seconds": 3, "acodec": "libopus"}),
    "vp9_opus": ("vp9.mkv", {"seconds": 3, "vcodec": "libvpx-vp9", "acodec": "libopus"}),
    "h264_long": ("long.mp4", {"seconds": 9}),  # 3 segments
    "mpeg4_mp3": ("mpeg4.avi", {"seconds": 3, "vcodec": "mpeg4", "acodec": "libmp3lame"}),
    "h264_silent": ("silent.mp4", {"seconds": 3, "acodec": None}),
}


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Small sample clips, made once per test run (in parallel)."""
    root = tmp_path_factory.mktemp("media")

    async def make_all() -> None:
        async with trio.open_nursery() as nursery:
            for file_name, options in SAMPLES.values():
                nursery.start_soon(
                    lambda f=file_name, o=options: make_sample(root / f, size=SMALL, **o)
                )

    trio.run(make_all)
    return {name: root / file_name for name, (file_name, _) in SAMPLES.items()}


@pytest.fixture
def settings() -> TorrentSettings:
    return TorrentSettings(loopback_only=True)


@pytest.fixture
async def leecher(tmp_path, settings):
    async with open_torrent_session(settings, tmp_path / "resume") as ts:
        yield ts


@pytest.fixture
def show(tmp_path, media) -> Path:
    """A directory for a multi-file torrent: two videos and a text file."""
    content = tmp_path / "seed"
    show = content / "show"
    show.mkdir(parents=True)
    shutil.copy(media["h264_aac"], show / "ep1.mp4")
    shutil.copy(media["mpeg4_mp3"], show / "ep2.avi")
    (show / "notes.txt").write_bytes(b"not a video\n" * 30_000)
    return show


@pytest.fixture
async def show_seeder(show):
    torrent = make_torrent(show)
    async with open_seeder(torrent, show.parent) as seeder:
        yield seeder
