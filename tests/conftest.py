"""Fixtures shared by every test folder (helpers live in tests/support.py)."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest
import trio
from support import FakeWorker, run_a

TEST_DEADLINE = 120.0  # seconds: a hang fails the test instead of eating CI's time


def pytest_collection_modifyitems(items):
    for item in items:
        if inspect.iscoroutinefunction(getattr(item, "function", None)):
            item.fixturenames.append("_deadline")


@pytest.fixture
async def _deadline(request):
    """Every async test gets a deadline (on the real clock; MockClock tests are exempt).

    pytest-trio cancels the test when a fixture crashes, so TooSlowError here ends a hang.
    """
    if "autojump_clock" in request.fixturenames or "mock_clock" in request.fixturenames:
        yield
        return
    marker = request.node.get_closest_marker("deadline")
    seconds = marker.args[0] if marker else TEST_DEADLINE
    with trio.fail_after(seconds):
        yield


@pytest.fixture
def artifacts() -> Path:
    """Where tests leave files for people to look at (screenshots): test-artifacts/ or
    $TORRENTM3U8_ARTIFACTS. Kept after the run; CI can publish the folder."""
    folder = Path(
        os.environ.get("TORRENTM3U8_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def service_a(tmp_path):
    async with run_a(tmp_path / "a") as (a, url):
        yield a, url


@pytest.fixture
def fake_worker() -> FakeWorker:
    return FakeWorker()
