"""Fixtures for watching while downloading: clips long enough that a throttled download
takes a while (made once per run, in parallel) and a real B started against a real A."""

from __future__ import annotations

import importlib.util
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from support import WORKER_TOKEN

from torrentm3u8_b.config import WorkerConfig
from torrentm3u8_b.worker import run_worker

CLIP_SECONDS = 60  # 30 live segments of 2 s: the first two are 7 % of the file
CLIP_SIZE = "320x240"
CLIPS = {  # name: (file name, make_sample options)
    "faststart_mp4": ("faststart.mp4", {}),
    "moov_at_end_mp4": ("moov-at-end.mp4", {"faststart": False}),
    "mkv": ("clip.mkv", {}),
}


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    from torrentm3u8_b.samples import make_sample

    root = tmp_path_factory.mktemp("live-media")

    async def make_all() -> None:
        async with trio.open_nursery() as nursery:
            for file_name, options in CLIPS.values():
                folder = root / Path(file_name).stem
                folder.mkdir()
                nursery.start_soon(
                    lambda p=folder / file_name, o=options: make_sample(
                        p, seconds=CLIP_SECONDS, size=CLIP_SIZE, **o
                    )
                )

    trio.run(make_all)
    return {name: root / Path(f).stem / f for name, (f, _) in CLIPS.items()}


@pytest.fixture(scope="session")
def clip_seconds() -> int:
    return CLIP_SECONDS


def worker_config(url: str, data: Path, **overrides) -> WorkerConfig:
    return WorkerConfig(
        server="ws" + url.removeprefix("http") + "/worker",
        data_dir=data,
        token=WORKER_TOKEN,
        worker_id="b-live",
        loopback_only=True,
        progress_interval=0.5,
        **overrides,
    )


@asynccontextmanager
async def run_b(config: WorkerConfig):
    async with trio.open_nursery() as nursery:
        worker = await nursery.start(run_worker, config)
        yield worker
        nursery.cancel_scope.cancel()


@pytest.fixture
def start_b():
    """start_b(url, data_dir, **config) -> async context manager running a real B."""
    return lambda url, data, **overrides: run_b(worker_config(url, data, **overrides))


def _browser_fixtures():
    """tests/browser/conftest.py's Chromium fixtures (`chromium`, `page`), shared rather than
    copied: loaded by path, since test folders are not packages."""
    path = Path(__file__).resolve().parents[1] / "browser" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_live_browser_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_browser = _browser_fixtures()
chromium = _browser.chromium
page = _browser.page
