"""Timing of B's reports, on trio's MockClock (a fake torrent implements the status interface)."""

from __future__ import annotations

import json

import trio

from torrentm3u8_b.pipeline import file_list_parts, progress_params, report_progress_every


class FakeTorrent:
    """The `status()` interface of torrents.Torrent, advancing 10 % per call."""

    def __init__(self) -> None:
        self.calls = 0

    def status(self) -> dict:
        self.calls += 1
        done = min(self.calls * 100, 1000)
        return {
            "percent": done / 10,
            "download_rate": 100,
            "upload_rate": 0,
            "peers": 1,
            "downloaded": done,
            "total": 1000,
            "eta": (1000 - done) / 100,
        }


async def test_progress_is_reported_every_interval(autojump_clock):
    reports = []

    def report(method, coalesce_key=None, **params):
        reports.append((trio.current_time(), method, coalesce_key, params["percent"]))

    with trio.move_on_after(21):
        await report_progress_every(FakeTorrent(), "t1", report, 5.0)
    assert [r[0] for r in reports] == [0, 5, 10, 15, 20]
    assert {r[1] for r in reports} == {"task.progress"}
    assert {r[2] for r in reports} == {"progress:t1"}  # coalesced while A is away
    assert [r[3] for r in reports] == [10.0, 20.0, 30.0, 40.0, 50.0]


async def test_custom_interval(autojump_clock):
    times = []
    with trio.move_on_after(3.1):
        await report_progress_every(
            FakeTorrent(), "t1", lambda *a, **k: times.append(trio.current_time()), 1.5
        )
    assert times == [0, 1.5, 3.0]


def test_progress_params_shape():
    params = progress_params(FakeTorrent(), "t9")
    assert params == {
        "task_id": "t9",
        "phase": "data",
        "percent": 10.0,
        "download_rate": 100,
        "upload_rate": 0,
        "peers": 1,
        "downloaded": 100,
        "total": 1000,
        "eta": 9.0,
    }


def test_a_file_list_is_cut_into_parts_that_fit_the_link():
    files = [
        {"index": i, "path": f"d/é {i:05d}.txt", "size": i, "is_video": False} for i in range(3000)
    ]
    parts = file_list_parts(files, max_bytes=20_000)
    assert [entry for part in parts for entry in part] == files  # all, in order
    compact = {"ensure_ascii": False, "separators": (",", ":")}  # as rpc encodes it
    sizes = [len(json.dumps(part, **compact).encode()) for part in parts]
    assert len(parts) > 1 and max(sizes) <= 20_000
    assert min(sizes[:-1]) > 20_000 - 100  # parts are filled, not cut at every entry
    assert file_list_parts([]) == [[]]  # task.metadata is sent even for no file
    huge = {"index": 0, "path": "x" * 500, "size": 1, "is_video": True}
    assert file_list_parts([huge, huge], max_bytes=100) == [[huge], [huge]]
