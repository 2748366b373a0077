"""Streaming through A's real signaling: a Python viewer (webrtc.rtc_client, the offer side of
the data-channel protocol) opens `/ws` on a real A, calls stream.open / stream.offer /
stream.candidate / stream.close like static/js/player.js, and fetches B's HLS files from a real
in-process B that made them from a real torrent. A relays the signaling and nothing else."""

from __future__ import annotations

import os

import pytest
import trio
from support import http_rpc, run_a, wait_worker

import rpc
from torrentm3u8_a import errors
from torrentm3u8_a.signaling import SWEEP_INTERVAL, StreamSessions
from torrentm3u8_b.webrtc import RtcError

pytestmark = pytest.mark.deadline(150)

DEADLINE = 60  # seconds for the streaming part of a test (busy 2-core machine)
CONCURRENT = 20  # requests in flight at once on one channel
BIG = 3 * 1024 * 1024  # bytes: above B's 1 MiB send buffer, so a cancel lands mid-transfer
OFFER = "v=0 not relayed"
MEDIA_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}


def _counts_since(sessions: StreamSessions, before: dict[str, int]) -> dict[str, int]:
    return {name: sessions.relayed[name] - before[name] for name in before}


async def test_playlist_and_segments_arrive_byte_identical(playable, open_viewer):
    a, url, worker, task = playable
    names = playable.hls_files
    assert len(names) >= 3  # the playlist and two segments of a 6 s clip
    before = dict(a.sessions.relayed)
    got = {}
    with trio.fail_after(DEADLINE):
        async with open_viewer(url) as viewer:
            stream = viewer.stream(task["id"], playable.file_index)
            async with stream as (session_id, client):
                assert len(a.sessions) == 1
                for name in names:
                    got[name] = await client.get(name)
                served = worker.rtc.stats["sessions"][session_id]
            # stream.close went through A to B: B's peer is gone when the call returns.
            assert worker.rtc.session_count == 0
            assert len(a.sessions) == 0

    for name in names:
        status, header, body = got[name]
        assert status == 200, header
        assert body == (playable.hls_root / name).read_bytes(), name
        assert header["size"] == len(body)
        assert header["type"] == MEDIA_TYPES[os.path.splitext(name)[1]]
    assert served["paths"] == dict.fromkeys(names, 1)
    assert served["served"] == len(names)
    # Signaling relayed through A: one offer out, one answer back, the end-of-candidates in.
    assert _counts_since(a.sessions, before) == {
        "offer": 1,
        "answer": 1,
        "candidate_in": 1,
        "candidate_out": 0,
    }


async def test_twenty_concurrent_requests(playable, open_viewer):
    _, url, worker, task = playable
    names = playable.hls_files
    wanted = [names[i % len(names)] for i in range(CONCURRENT)]
    results: list[tuple[int, dict, bytes] | None] = [None] * CONCURRENT
    with trio.fail_after(DEADLINE):
        async with (
            open_viewer(url) as viewer,
            viewer.stream(task["id"], playable.file_index) as (session_id, client),
        ):

            async def fetch(i: int) -> None:
                results[i] = await client.get(wanted[i])

            async with trio.open_nursery() as nursery:
                for i in range(CONCURRENT):
                    nursery.start_soon(fetch, i)
            served = worker.rtc.stats["sessions"][session_id]

    for name, result in zip(wanted, results, strict=True):
        assert result is not None
        status, header, body = result
        assert (status, body) == (200, (playable.hls_root / name).read_bytes()), header
    assert (served["requests"], served["served"], served["failed"]) == (CONCURRENT, CONCURRENT, 0)


async def test_cancel_mid_transfer_then_the_channel_still_works(playable, open_viewer):
    _, url, worker, task = playable
    (playable.hls_root / "big.bin").write_bytes(os.urandom(BIG))
    playlist = (playable.hls_root / "index.m3u8").read_bytes()
    with trio.fail_after(DEADLINE):
        async with (
            open_viewer(url) as viewer,
            viewer.stream(task["id"], playable.file_index) as (session_id, client),
        ):
            status, answer, partial_body = await client.get("big.bin", cancel_after=64 * 1024)
            after = await client.get("index.m3u8")
            served = worker.rtc.stats["sessions"][session_id]

    assert (status, answer["error"]) == (499, "cancelled")
    assert 64 * 1024 <= len(partial_body) < BIG
    assert after[0] == 200
    assert after[2] == playlist
    assert served["cancelled"] == 1
    assert served["bytes_sent"] < BIG + len(playlist)


async def test_paths_outside_the_stream_are_refused(playable, open_viewer):
    _, url, worker, task = playable
    root = playable.hls_root
    secret = playable.b_config.data_dir / "worker.sqlite3"  # B's own database, next door
    (root / "escape.ts").symlink_to(secret)
    (root / "passwd.ts").symlink_to("/etc/passwd")
    (root / "inside.m3u8").symlink_to(root / "index.m3u8")  # stays inside: served
    expected = {
        "../index.m3u8": 403,
        "../../../../worker.sqlite3": 403,
        str(secret): 403,
        "/etc/passwd": 403,
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/worker.sqlite3": 403,
        "..\\..\\..\\..\\worker.sqlite3": 403,
        "C:/Windows/win.ini": 403,
        "seg\x00.ts": 403,
        "./index.m3u8": 403,
        "escape.ts": 403,
        "passwd.ts": 403,
        "nope.ts": 404,
    }
    with trio.fail_after(DEADLINE):
        async with (
            open_viewer(url) as viewer,
            viewer.stream(task["id"], playable.file_index) as (session_id, client),
        ):
            got = {path: await client.get(path) for path in expected}
            inside = await client.get("inside.m3u8")
            served = worker.rtc.stats["sessions"][session_id]

    assert {path: status for path, (status, _, _) in got.items()} == expected
    assert all(body == b"" for _, _, body in got.values())
    assert inside[0] == 200
    assert inside[2] == (root / "index.m3u8").read_bytes()
    assert served["failed"] == len(expected)
    assert served["bytes_sent"] == len(inside[2])


async def test_stream_open_refused_for_files_without_a_rendition(playable, open_viewer):
    a, url, _, task = playable
    not_video = [f["index"] for f in task["files"] if not f["is_video"]]
    assert not_video  # notes.txt
    with trio.fail_after(DEADLINE):
        async with open_viewer(url) as viewer:
            for file_index in (*not_video, 99):
                params = {"task_id": task["id"], "file_index": file_index}
                assert await viewer.error_code("stream.open", params) == errors.NOT_PLAYABLE
            params = {"task_id": "no-such-task", "file_index": playable.file_index}
            assert await viewer.error_code("stream.open", params) == errors.UNKNOWN_TASK
    assert len(a.sessions) == 0


async def test_stream_open_refused_for_unknown_and_waiting_tasks(tmp_path, open_viewer):
    magnet = "magnet:?xt=urn:btih:" + "ab" * 20 + "&dn=nobody+seeds+this"
    with trio.fail_after(DEADLINE):
        async with run_a(tmp_path / "a") as (a, url), open_viewer(url) as viewer:
            task = await viewer.call("task.add", {"magnet": magnet})
            assert task["state"] == "waiting"
            params = {"task_id": task["id"], "file_index": 0}
            assert await viewer.error_code("stream.open", params) == errors.NOT_PLAYABLE
            params = {"task_id": "no-such-task", "file_index": 0}
            assert await viewer.error_code("stream.open", params) == errors.UNKNOWN_TASK
            reply = await http_rpc(url, "stream.open", params)
            assert reply["error"]["code"] == errors.UNKNOWN_TASK
            assert len(a.sessions) == 0


async def test_a_session_belongs_to_the_connection_that_opened_it(playable, open_viewer):
    a, url, worker, task = playable
    page_left = trio.Event()

    async def owner_page(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with open_viewer(url) as viewer:
            task_status.started(viewer)
            await page_left.wait()

    with trio.fail_after(DEADLINE):
        async with open_viewer(url) as intruder, trio.open_nursery() as nursery:
            owner = await nursery.start(owner_page)
            opened = await owner.call(
                "stream.open", {"task_id": task["id"], "file_index": playable.file_index}
            )
            session_id = opened["session_id"]
            before = dict(a.sessions.relayed)
            attempts = [
                ("stream.offer", {"session_id": session_id, "sdp": OFFER}),
                ("stream.candidate", {"session_id": session_id, "candidate": None}),
                ("stream.seek", {"session_id": session_id, "position": 1.0}),
                ("stream.close", {"session_id": session_id}),
            ]
            for method, params in attempts:
                assert await intruder.error_code(method, params) == errors.UNKNOWN_SESSION
                # Plain HTTP has no connection to own a session: refused the same way.
                reply = await http_rpc(url, method, params)
                assert reply["error"]["code"] == errors.UNKNOWN_SESSION, (method, reply)
            # Nothing reached B, and the owner's session is still there.
            assert _counts_since(a.sessions, before) == dict.fromkeys(before, 0)
            assert worker.rtc.session_count == 0
            assert len(a.sessions) == 1

            stream = owner.stream(task["id"], playable.file_index, opened=opened, close=False)
            async with stream as (_, client):
                status, _, body = await client.get("index.m3u8")
                assert (status, body) == (200, (playable.hls_root / "index.m3u8").read_bytes())
                # The owner's websocket closes (the page went away) without stream.close:
                # A ends the session and tells B, which closes the peer.
                page_left.set()
                await worker.rtc.wait_closed(session_id)
                assert len(a.sessions) == 0
                with pytest.raises(RtcError):
                    await client.get("index.m3u8")
    assert _counts_since(a.sessions, before)["answer"] == 1


async def test_a_new_session_works_after_b_restarts(playable, open_viewer):
    a, url, worker, task = playable
    params = {"task_id": task["id"], "file_index": playable.file_index}
    playlist = (playable.hls_root / "index.m3u8").read_bytes()
    with trio.fail_after(DEADLINE):
        async with open_viewer(url) as viewer:
            async with viewer.stream(**params, close=False) as (old_session, client):
                assert (await client.get("index.m3u8"))[2] == playlist
                await playable.stop_b()
                # B closed its peers on the way out: the old channel is gone.
                with pytest.raises(RtcError):
                    await client.get("index.m3u8")
            await wait_worker(a, playable.b_config.worker_id, connected=False)
            assert await viewer.error_code("stream.open", params) == errors.NO_WORKER

            worker = await playable.start_b()
            await wait_worker(a, playable.b_config.worker_id, connected=True)
            candidate = {"session_id": old_session, "candidate": None}
            assert await viewer.error_code("stream.candidate", candidate) == errors.UNKNOWN_SESSION
            async with viewer.stream(**params) as (session_id, client):
                got = {name: await client.get(name) for name in playable.hls_files}
                assert session_id != old_session
                assert worker.rtc.session_count == 1
    for name, (status, _, body) in got.items():
        assert (status, body) == (200, (playable.hls_root / name).read_bytes())


# --- expiry, on StreamSessions itself with MockClock ------------------------------------------


class FakeTasks:
    """The one storage read StreamSessions does: get_task(id) -> task dict or None."""

    async def get_task(self, task_id: str) -> dict | None:
        if task_id != "t1":
            return None
        return {"id": "t1", "worker_id": "w1", "hls": [{"file_index": 0}]}


class FakeRegistry:
    """WorkerRegistry's interface to signaling: connected_ids() and call(); records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict]] = []
        self.seek_answer: object = {"playlist": "index.m3u8", "start": 0.0}

    def connected_ids(self) -> list[str]:
        return ["w1"]

    async def call(self, worker_id: str, method: str, params=None):
        self.calls.append((worker_id, method, params))
        if method == "task.seek":
            if isinstance(self.seek_answer, Exception):
                raise self.seek_answer
            return self.seek_answer
        return {"sdp": "v=0 answer"} if method == "rtc.offer" else None


async def test_seek_is_relayed_to_the_sessions_worker_and_its_answer_checked():
    registry = FakeRegistry()
    owner = object()
    sessions = StreamSessions(FakeTasks(), registry, ice_servers=[], ttl=100, setup_timeout=10)
    session_id = (await sessions.open("t1", 0, owner=owner))["session_id"]

    registry.seek_answer = {"playlist": "seek-000060000/index.m3u8", "start": 59.84, "x": 1}
    answer = await sessions.seek(session_id, 60.0, owner=owner)
    assert answer == {"playlist": "seek-000060000/index.m3u8", "start": 59.84}
    assert registry.calls[-1] == (
        "w1",
        "task.seek",
        {"task_id": "t1", "file_index": 0, "position": 60.0},
    )

    with pytest.raises(rpc.ApplicationError) as caught:  # another viewer's session
        await sessions.seek(session_id, 60.0, owner=object())
    assert caught.value.code == errors.UNKNOWN_SESSION
    assert len(registry.calls) == 1

    # B's refusals reach the viewer with their code and message; anything else is a failure.
    outside = "position 99 s is outside the video (0 to 80 s)"
    cases = [
        (rpc.RemoteError(rpc.InvalidParams.code, outside), rpc.InvalidParams.code, outside),
        (rpc.RemoteError(errors.NOT_PLAYABLE, "no HLS"), errors.NOT_PLAYABLE, "no HLS"),
        (rpc.RemoteError(-32603, "internal error"), errors.STREAM_FAILED, "internal error"),
        (rpc.CallTimeout("slow"), errors.STREAM_FAILED, "did not reach 60 s in time"),
        ({"playlist": 7, "start": 1.0}, errors.STREAM_FAILED, "no usable rendition"),
        ({"playlist": "a.m3u8"}, errors.STREAM_FAILED, "no usable rendition"),
        ({"playlist": "a.m3u8", "start": "NaN"}, errors.STREAM_FAILED, "no usable rendition"),
        (["index.m3u8", 0], errors.STREAM_FAILED, "no usable rendition"),
    ]
    for answer, code, message in cases:
        registry.seek_answer = answer
        with pytest.raises(rpc.RPCError) as caught:
            await sessions.seek(session_id, 60.0, owner=owner)
        assert (caught.value.code, message in str(caught.value)) == (code, True), answer
    assert len(sessions) == 1  # a failed seek leaves the session usable


async def test_stream_seek_checks_its_position_before_asking_anyone(tmp_path, open_viewer):
    async with run_a(tmp_path / "a") as (_, url), open_viewer(url) as viewer:
        for position in (-1, -0.001, "10", None, [1]):
            params = {"session_id": "s", "position": position}
            assert await viewer.error_code("stream.seek", params) == rpc.InvalidParams.code
        # A valid position on an unknown session: the session is what is wrong.
        params = {"session_id": "s", "position": 10}
        assert await viewer.error_code("stream.seek", params) == errors.UNKNOWN_SESSION


async def test_sessions_expire_unanswered_after_setup_timeout_and_answered_after_ttl(
    autojump_clock,
):
    registry = FakeRegistry()
    owner = object()
    setup_timeout, ttl = 10.0, 100.0
    sessions = StreamSessions(
        FakeTasks(), registry, ice_servers=[], ttl=ttl, setup_timeout=setup_timeout
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sessions.run)
        start = trio.current_time()
        idle = (await sessions.open("t1", 0, owner=owner))["session_id"]
        answered = (await sessions.open("t1", 0, owner=owner))["session_id"]
        assert await sessions.offer(answered, "v=0 offer", owner=owner) == {"sdp": "v=0 answer"}

        await trio.sleep_until(start + setup_timeout - 0.1)
        assert len(sessions) == 2
        await trio.sleep_until(start + setup_timeout + SWEEP_INTERVAL)
        assert len(sessions) == 1
        with pytest.raises(rpc.ApplicationError) as caught:
            await sessions.offer(idle, "v=0 late offer", owner=owner)
        assert caught.value.code == errors.UNKNOWN_SESSION

        await trio.sleep_until(start + ttl - 0.1)
        assert len(sessions) == 1
        await trio.sleep_until(start + ttl + SWEEP_INTERVAL)
        assert len(sessions) == 0
        nursery.cancel_scope.cancel()

    # The worker heard one offer, and a close for the answered session only (the idle one
    # never reached it).
    assert [(method, params["session_id"]) for _, method, params in registry.calls] == [
        ("rtc.offer", answered),
        ("rtc.close", answered),
    ]
