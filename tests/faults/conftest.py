"""Fixtures and helpers for the fault tests: sample clips made once per run, a free port, and
B or A as real subprocesses that a test may `kill -9`."""

from __future__ import annotations

import shutil
import socket
from functools import partial
from pathlib import Path

import pytest
import trio

from torrentm3u8_b.samples import make_sample, make_torrent

CLIP_SIZE = "320x240"


def free_port() -> int:
    """A port nobody listens on right now (bound to port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _kill(process: trio.Process) -> None:
    """At teardown: SIGKILL at once (trio's default waits 5 s after SIGTERM, then warns, and
    warnings are errors here, so the SIGKILL would never come)."""
    process.kill()


class Processes:
    """Real subprocesses a test starts and may `kill -9`; all are killed at teardown."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    async def start(self, command: list[str], **options) -> trio.Process:
        run = partial(trio.run_process, command, check=False, deliver_cancel=_kill, **options)
        return await self._nursery.start(run)

    async def kill_9(self, process: trio.Process) -> None:
        process.kill()  # SIGKILL: no cleanup, no goodbye
        await process.wait()


@pytest.fixture
async def processes():
    async with trio.open_nursery() as nursery:
        yield Processes(nursery)
        nursery.cancel_scope.cancel()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Sample clips (made once, in parallel): `long` (8 s) and `short` (2 s, tiny)."""
    root = tmp_path_factory.mktemp("clips")
    wanted = {
        "long": (root / "long.mp4", {"seconds": 8, "size": CLIP_SIZE}),
        "short": (root / "short.mp4", {"seconds": 2, "size": "160x120"}),
    }

    async def make_all() -> None:
        async with trio.open_nursery() as nursery:
            for path, options in wanted.values():
                nursery.start_soon(partial(make_sample, path, **options))

    trio.run(make_all)
    return {name: path for name, (path, _) in wanted.items()}


@pytest.fixture
def clip_torrent(tmp_path, clips):
    """(torrent, content dir, file size) of a folder "Clip" holding the long clip."""
    folder = tmp_path / "seed" / "Clip"
    folder.mkdir(parents=True)
    shutil.copy(clips["long"], folder / "clip.mp4")
    return make_torrent(folder), folder.parent, (folder / "clip.mp4").stat().st_size
