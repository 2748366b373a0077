"""Viewers that misbehave or crowd in: one leaving in the middle of a segment, 20 at once, one
coming back. Real A, real in-process B, Python aiortc viewers signalling through A's /ws (the
helpers of tests/p2p/conftest.py, loaded by path as bench/bench_playback.py does)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

from torrentm3u8_b.samples import make_torrent
from torrentm3u8_b.webrtc import RtcError

pytestmark = [pytest.mark.slow, pytest.mark.deadline(120)]

CROWD = 20  # viewers of one video at once


def _p2p_helpers():
    path = Path(__file__).resolve().parent.parent / "p2p" / "conftest.py"
    spec = importlib.util.spec_from_file_location("faults_p2p_helpers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


p2p = _p2p_helpers()


@pytest.fixture
def clip_torrent_dir(tmp_path, clips):
    content = tmp_path / "seed"
    folder = content / "Crowd Clip"
    folder.mkdir(parents=True)
    (folder / "clip.mp4").write_bytes(clips["long"].read_bytes())
    return make_torrent(folder), content


async def fetch_all(client, names: list[str]) -> dict[str, bytes]:
    got = {}
    for name in names:
        status, _, body = await client.get(name)
        assert status == 200, (name, status)
        got[name] = body
    return got


async def get_while_leaving(client, name: str) -> None:
    try:
        await client.get(name)
    except RtcError:  # the viewer's own peer closed under the request: expected
        pass


async def test_viewer_leaving_mid_segment_frees_its_session(tmp_path, clip_torrent_dir):
    async with p2p.open_playable(tmp_path, *clip_torrent_dir) as ready:
        _, url, worker, task = ready
        expected = {name: (ready.hls_root / name).read_bytes() for name in ready.hls_files}
        segment = ready.hls_files[1]
        async with p2p.open_viewer(url) as stayer, p2p.open_viewer(url) as leaver:
            async with stayer.stream(task["id"], ready.file_index) as (_, steady):
                async with trio.open_nursery() as nursery:
                    async with leaver.stream(task["id"], ready.file_index, close=False) as (
                        left_id,
                        gone,
                    ):
                        assert worker.rtc.session_count == 2
                        nursery.start_soon(get_while_leaving, gone, segment)
                        await trio.testing.wait_all_tasks_blocked()
                        # leaving: the context closes the peer connection, no stream.close
                    nursery.cancel_scope.cancel()
                await worker.rtc.wait_closed(left_id)  # B freed the leaver's session by itself
                assert worker.rtc.session_count == 1
                assert await fetch_all(steady, list(expected)) == expected


async def test_twenty_viewers_get_identical_bytes(tmp_path, clip_torrent_dir):
    async with p2p.open_playable(tmp_path, *clip_torrent_dir) as ready:
        ready.b_config.max_streams = CROWD + 2
        worker = await ready.restart_b()
        url, task = ready.url, ready.task
        expected = {name: (ready.hls_root / name).read_bytes() for name in ready.hls_files}
        results: list[dict[str, bytes]] = []

        async def watch() -> None:
            async with p2p.open_viewer(url) as viewer:
                async with viewer.stream(task["id"], ready.file_index) as (_, client):
                    results.append(await fetch_all(client, list(expected)))

        async with trio.open_nursery() as nursery:
            for _ in range(CROWD):
                nursery.start_soon(watch)
        assert len(results) == CROWD
        assert all(got == expected for got in results)
        await trio.testing.wait_all_tasks_blocked()
        assert worker.rtc.session_count == 0


async def test_viewer_reconnects_with_a_new_session(tmp_path, clip_torrent_dir):
    async with p2p.open_playable(tmp_path, *clip_torrent_dir) as ready:
        _, url, worker, task = ready
        playlist = (ready.hls_root / "index.m3u8").read_bytes()
        async with p2p.open_viewer(url) as viewer:
            async with viewer.stream(task["id"], ready.file_index) as (first, client):
                assert (await client.get("index.m3u8"))[2] == playlist
            await worker.rtc.wait_closed(first)
            async with viewer.stream(task["id"], ready.file_index) as (second, client):
                assert second != first
                assert (await client.get("index.m3u8"))[2] == playlist
                assert worker.rtc.session_count == 1
