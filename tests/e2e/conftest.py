"""Fixtures for the end-to-end tests.

- `chromium` and `page`: tests/browser/conftest.py's headless Chromium (Playwright on its own
  thread), loaded by path because conftest modules cannot be imported (tests/p2p does the same).
- `start_b`: a real worker B in-process (`run_worker`) linked to a real A, loopback only.
- `free_port`: a TCP port on 127.0.0.1 that nothing listens on.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from support import WORKER_TOKEN

from torrentm3u8_b.config import WorkerConfig
from torrentm3u8_b.worker import Worker, run_worker

BROWSER_CONFTEST = Path(__file__).resolve().parent.parent / "browser" / "conftest.py"
B_WORKER_ID = "b-e2e"


def _load_browser_support() -> Any:
    spec = importlib.util.spec_from_file_location("e2e_browser_support", BROWSER_CONFTEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


browser_support = _load_browser_support()
chromium = browser_support.chromium
page = browser_support.page


async def start_b(nursery: trio.Nursery, url: str, data: Path, **overrides: Any) -> Worker:
    """Start B (`run_worker`) in `nursery`, linked to A at `url`; returns the Worker (its
    records, its rtc server). Stop A before cancelling the nursery: B then has no link left to
    close politely and stops at once."""
    config = WorkerConfig(
        server="ws" + url.removeprefix("http") + "/worker",
        data_dir=data,
        token=WORKER_TOKEN,
        worker_id=B_WORKER_ID,
        loopback_only=True,
        **overrides,
    )
    return await nursery.start(run_worker, config)


@pytest.fixture(name="start_b")
def _start_b_fixture() -> Callable[..., Any]:
    """The `start_b` function (conftest modules cannot be imported)."""
    return start_b


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on (the kernel's pick for a socket closed at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
