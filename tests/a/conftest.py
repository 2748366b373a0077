"""Fixtures for service A's tests: a real sqlite file in tmp_path, a settable clock, magnets."""

from __future__ import annotations

import hashlib

import pytest

from torrentm3u8_a.magnets import Magnet, parse_magnet
from torrentm3u8_a.storage import open_storage

START_TIME = 1_700_000_000.0  # unix seconds


class SettableClock:
    """Stands in for `time.time` so stored timestamps are exact."""

    def __init__(self, now: float = START_TIME) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "a.sqlite"


@pytest.fixture
async def db(db_path, clock):
    async with open_storage(db_path, clock=clock) as storage:
        yield storage


@pytest.fixture
def make_magnet():
    """make_magnet(n, **params) -> a parsed magnet whose v1 info hash depends only on n."""

    def make(n: int, **params: str) -> Magnet:
        info_hash = hashlib.sha1(f"torrent {n}".encode()).hexdigest()
        extra = "".join(f"&{key}={value}" for key, value in params.items())
        return parse_magnet(f"magnet:?xt=urn:btih:{info_hash}{extra}")

    return make
