"""A's rules for live renditions: stored while downloading without a state change, never
replacing a final one; a final one needs the download complete first."""

from __future__ import annotations

import pytest

import rpc

MAGNET = "magnet:?xt=urn:btih:" + "ab" * 20 + "&dn=movie"
WORKER = "b-live"


def rendition(segments: int, *, live: bool, file_index: int = 0) -> dict:
    return {
        "file_index": file_index,
        "playlist": "index.m3u8",
        "duration": 4.0 * segments,
        "segments": segments,
        "live": live,
    }


async def report(a, task_id: str, n: int, **fields) -> None:
    await a.service.report_hls(WORKER, task_id, report_id=f"r{n}", **fields)


async def test_live_then_final_rendition(service_a):
    a, _ = service_a
    task = await a.service.add(MAGNET)
    await a.db.set_state(task["id"], "downloading", phase="data", worker_id=None)

    await report(a, task["id"], 1, **rendition(2, live=True))
    await report(a, task["id"], 2, **rendition(5, live=True))
    got = await a.service.get(task["id"])
    assert got["state"] == "downloading"
    assert [(h["segments"], h["live"]) for h in got["hls"]] == [(5, True)]

    with pytest.raises(rpc.ApplicationError) as refused:
        await report(a, task["id"], 3, **rendition(12, live=False))
    assert "download complete first" in refused.value.message
    got = await a.service.get(task["id"])
    assert (got["state"], got["hls"][0]["live"]) == ("downloading", True)

    await a.service.report_state(WORKER, task["id"], "completed", None, report_id="r4")
    await report(a, task["id"], 5, **rendition(12, live=False))
    await report(a, task["id"], 6, **rendition(11, live=True))  # late: ignored
    got = await a.service.get(task["id"])
    assert got["state"] == "playable"
    assert [(h["segments"], h["live"]) for h in got["hls"]] == [(12, False)]


async def test_playable_only_once_no_rendition_is_still_growing(service_a):
    """Two videos: the live one is still being finished when the other's final rendition
    arrives; the task becomes playable with the second final report, not the first."""
    a, _ = service_a
    task = await a.service.add(MAGNET)
    await a.db.set_state(task["id"], "downloading", phase="data", worker_id=None)
    await report(a, task["id"], 1, **rendition(2, live=True, file_index=1))
    await a.service.report_state(WORKER, task["id"], "completed", None, report_id="r2")
    await a.service.report_state(WORKER, task["id"], "transcoding", None, report_id="r3")

    await report(a, task["id"], 4, **rendition(3, live=False, file_index=0))
    got = await a.service.get(task["id"])
    assert got["state"] == "transcoding"
    assert [(h["file_index"], h["live"]) for h in got["hls"]] == [(0, False), (1, True)]

    await report(a, task["id"], 5, **rendition(4, live=False, file_index=1))
    got = await a.service.get(task["id"])
    assert got["state"] == "playable"
    assert [(h["file_index"], h["live"]) for h in got["hls"]] == [(0, False), (1, False)]
