"""B's WebRTC serving: real aiortc peers on 127.0.0.1 (server and rtc_client, each on its own
asyncio thread) moving a real FFmpeg HLS rendition over the data-channel file protocol."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import aioice.ice
import pytest
import trio

from torrentm3u8_b.datachannel import MAX_CHUNK
from torrentm3u8_b.samples import make_sample
from torrentm3u8_b.transcode import make_hls
from torrentm3u8_b.webrtc import (
    KiB,
    MiB,
    RtcBusy,
    RtcError,
    UnknownSession,
    _loopback_only_sdp,
    _max_payload,
    open_rtc_server,
    rtc_client,
)

DEADLINE = 30  # seconds for any one test's network part
# aiortc receiving in Python moves 0.5-2 MB/s on a busy 2-core machine: small send buffers
# (instead of 1 MiB / 256 KiB) let a 1 MiB file exercise the backpressure in a second or two.
SMALL_BUFFERS = {"high_water": 128 * KiB, "low_water": 32 * KiB}
LARGE = 1 * MiB  # 8x the small high water mark
SMALL_FILES = 18


@pytest.fixture(scope="module")
def hls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real rendition (6 s H.264/AAC, 4 s segments) plus a large file and a secret outside."""
    base = tmp_path_factory.mktemp("webrtc")

    async def make() -> None:
        clip = await make_sample(base / "clip.mp4", seconds=6, size="320x240")
        await make_hls(str(clip), base / "hls")

    trio.run(make)
    root = base / "hls"
    (root / "large.bin").write_bytes(os.urandom(LARGE))
    for i in range(SMALL_FILES):
        (root / f"small{i}.bin").write_bytes(os.urandom(1_000 + i * 2_000))  # 1-35 KB
    (base / "secret.txt").write_text("top secret")
    (root / "to-secret").symlink_to(base / "secret.txt")
    (root / "to-passwd").symlink_to("/etc/passwd")
    return root


def segments(root: Path) -> list[str]:
    lines = (root / "index.m3u8").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def connect(rtc, session_id: str, root: Path):
    return rtc_client(partial(rtc.answer, session_id, root=root, ice_servers=[]))


async def test_playlist_and_every_segment_arrive_byte_identical(hls):
    with trio.fail_after(DEADLINE):
        async with open_rtc_server(loopback_only=True) as rtc, connect(rtc, "s1", hls) as c:
            status, header, body = await c.get("index.m3u8")
            assert (status, header["type"]) == (200, "application/vnd.apple.mpegurl")
            assert body == (hls / "index.m3u8").read_bytes()
            names = segments(hls)
            assert len(names) >= 2
            for name in names:
                status, header, body = await c.get(name)
                assert (status, header["type"], header["size"]) == (200, "video/mp2t", len(body))
                assert body == (hls / name).read_bytes()
            stats = rtc.stats
    assert stats["sessions"]["s1"]["paths"] == {"index.m3u8": 1, **{n: 1 for n in names}}
    assert stats["total"]["served"] == 1 + len(names)


async def test_twenty_concurrent_requests_and_small_ones_overtake_a_large_file(hls):
    wanted = ["large.bin", "index.m3u8", *(f"small{i}.bin" for i in range(SMALL_FILES))]
    assert len(wanted) == 20
    finished: list[str] = []
    results: dict[str, tuple[int, bytes]] = {}

    async def fetch(name: str, client) -> None:
        status, _, body = await client.get(name)
        results[name] = (status, body)
        finished.append(name)

    with trio.fail_after(DEADLINE):
        async with (
            open_rtc_server(loopback_only=True, **SMALL_BUFFERS) as rtc,
            connect(rtc, "s1", hls) as c,
        ):
            async with trio.open_nursery() as nursery:
                for name in wanted:
                    nursery.start_soon(fetch, name, c)
    assert results == {name: (200, (hls / name).read_bytes()) for name in wanted}
    # Requests take turns chunk by chunk: the large file never makes the others wait for it.
    assert finished[-1] == "large.bin"


async def test_large_file_arrives_intact_with_bounded_buffering(hls):
    with trio.fail_after(DEADLINE):
        async with (
            open_rtc_server(loopback_only=True, **SMALL_BUFFERS) as rtc,
            connect(rtc, "s1", hls) as c,
        ):
            status, _, body = await c.get("large.bin")
            stats = rtc.stats["total"]
    assert status == 200
    assert body == (hls / "large.bin").read_bytes()
    assert stats["bytes_sent"] == LARGE
    # Sending pauses above high_water: never more than that plus one message is queued.
    assert rtc.high_water < stats["peak_buffered"] <= rtc.high_water + rtc.chunk_size + 4


async def test_cancel_mid_transfer_then_the_channel_still_works(hls):
    with trio.fail_after(DEADLINE):
        async with (
            open_rtc_server(loopback_only=True, **SMALL_BUFFERS) as rtc,
            connect(rtc, "s1", hls) as c,
        ):
            status, answer, partial_body = await c.get("large.bin", cancel_after=200_000)
            assert (status, answer["error"]) == (499, "cancelled")
            assert 200_000 <= len(partial_body) < LARGE
            assert partial_body == (hls / "large.bin").read_bytes()[: len(partial_body)]
            status, _, body = await c.get("index.m3u8")
            assert (status, body) == (200, (hls / "index.m3u8").read_bytes())
            stats = rtc.stats["total"]
    assert stats["cancelled"] == 1
    assert stats["bytes_sent"] < LARGE  # B stopped reading the file


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("../secret.txt", 403),
        ("/etc/passwd", 403),
        ("%2e%2e/secret.txt", 403),
        ("..%2fsecret.txt", 403),
        ("a\\..\\..\\secret.txt", 403),
        ("index.m3u8\x00../../secret.txt", 403),
        ("C:/secret.txt", 403),
        ("to-secret", 403),
        ("to-passwd", 403),
        ("nope.ts", 404),
    ],
)
async def test_traversal_attempts_get_403_or_404_and_nothing_leaks(hls, path, status):
    with trio.fail_after(DEADLINE):
        async with open_rtc_server(loopback_only=True) as rtc, connect(rtc, "s1", hls) as c:
            got, answer, body = await c.get(path)
            assert (await c.get("index.m3u8"))[0] == 200  # the channel survives
    assert got == status
    assert body == b""
    assert "secret" not in answer["error"].replace(path, "")
    assert "root" not in answer["error"]


async def test_busy_beyond_max_sessions_and_close_frees_the_slot(hls):
    with trio.fail_after(DEADLINE):
        async with open_rtc_server(loopback_only=True, max_sessions=1) as rtc:
            async with connect(rtc, "s1", hls):
                assert rtc.session_count == 1
                with pytest.raises(RtcBusy, match="already serves 1 streams; try later"):
                    async with connect(rtc, "s2", hls):
                        pass  # pragma: no cover
            # Closing the client closes its data channel: B frees the session.
            await rtc.wait_closed("s1")
            assert rtc.session_count == 0
            async with connect(rtc, "s3", hls) as c:
                assert (await c.get("index.m3u8"))[0] == 200
            assert rtc.stats["total"]["requests"] == 1


async def test_close_from_b_ends_the_clients_channel(hls):
    with trio.fail_after(DEADLINE):
        async with open_rtc_server(loopback_only=True) as rtc, connect(rtc, "s1", hls) as c:
            await rtc.close("s1")
            assert rtc.session_count == 0
            with pytest.raises(RtcError, match="closed"):
                await c.get("index.m3u8")
            await rtc.close("s1")  # closing twice is fine


async def test_idle_peer_is_closed(hls):
    with trio.fail_after(DEADLINE):
        async with open_rtc_server(loopback_only=True, idle_timeout=0.5) as rtc:
            async with connect(rtc, "s1", hls) as c:
                assert (await c.get("index.m3u8"))[0] == 200
                await rtc.wait_closed("s1")  # no request for 0.5 s
                assert rtc.session_count == 0


async def test_shutdown_closes_every_peer(hls):
    server = open_rtc_server(loopback_only=True)
    with trio.fail_after(DEADLINE):
        rtc = await server.__aenter__()
        running = True
        try:
            async with connect(rtc, "s1", hls) as c:
                assert (await c.get("index.m3u8"))[0] == 200
                running = False
                await server.__aexit__(None, None, None)
                assert rtc.session_count == 0
                with pytest.raises(RtcError, match="closed"):
                    await c.get("index.m3u8")
        finally:
            if running:
                await server.__aexit__(None, None, None)
    with pytest.raises(RtcError, match="shut down"):
        await rtc.close("s1")


async def test_answer_is_loopback_only_and_restores_aioice(hls):
    original = aioice.ice.get_host_addresses
    with trio.fail_after(DEADLINE):
        async with open_rtc_server(loopback_only=True) as rtc:
            answers = []

            async def signaling(offer: str) -> str:
                answer = await rtc.answer("s1", offer, root=hls, ice_servers=[])
                answers.append(answer)
                return answer

            async with rtc_client(signaling) as c:
                assert (await c.get("index.m3u8"))[0] == 200
    candidates = [line for line in answers[0].splitlines() if line.startswith("a=candidate:")]
    assert candidates
    assert {line.split()[4] for line in candidates} == {"127.0.0.1"}
    assert aioice.ice.get_host_addresses is original


async def test_bad_buffer_settings_are_refused():
    with pytest.raises(ValueError, match="low_water"):
        async with open_rtc_server(loopback_only=True, high_water=10, low_water=10):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="chunk_size"):
        async with open_rtc_server(loopback_only=True, chunk_size=MiB):
            pass  # pragma: no cover


async def test_candidates_and_bad_offers(hls):
    with trio.fail_after(DEADLINE):
        async with open_rtc_server(loopback_only=True) as rtc:
            with pytest.raises(UnknownSession):
                await rtc.add_candidate("nobody", {"candidate": "", "sdpMid": "0"})
            with pytest.raises(RtcError, match="no data channel"):
                await rtc.answer("bad", "v=0\r\nnot sdp\r\n", root=hls, ice_servers=[])
            no_ice = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
            with pytest.raises(RtcError, match="cannot answer this offer: ICE"):
                await rtc.answer("bad", no_ice, root=hls, ice_servers=[])
            assert rtc.session_count == 0
            with pytest.raises(RtcError, match="ice_transport_policy"):
                await rtc.answer("s", "v=0", root=hls, ice_servers=[], ice_transport_policy="x")
            with pytest.raises(RtcError, match="urls"):
                await rtc.answer("s", "v=0", root=hls, ice_servers=[{"username": "u"}])
            with pytest.raises(RtcError, match="HLS folder is missing"):
                await rtc.answer("s", "v=0", root=hls / "nope", ice_servers=[])

            async def signaling(offer: str) -> str:
                answer = await rtc.answer("s1", offer, root=hls, ice_servers=[])
                host = "candidate:1 1 udp 2130706431 {} 9 typ host"
                # Another address than 127.0.0.1 (or an mDNS name) is dropped, not contacted.
                await rtc.add_candidate("s1", {"candidate": host.format("10.0.0.1"), "sdpMid": "0"})
                await rtc.add_candidate("s1", {"candidate": host.format("x.local"), "sdpMid": "0"})
                with pytest.raises(RtcError, match="not an ICE candidate"):
                    await rtc.add_candidate("s1", {"candidate": "candidate:garbage", "sdpMid": "0"})
                return answer

            async with rtc_client(signaling) as c:
                await rtc.add_candidate("s1", {"candidate": "", "sdpMid": "0"})  # end of list
                assert (await c.get("index.m3u8"))[0] == 200


def test_payload_fits_the_peers_message_limit():
    assert _max_payload("a=max-message-size:262144\r\n", MAX_CHUNK) == MAX_CHUNK
    assert _max_payload("v=0\r\n", MAX_CHUNK) == 65536 - 4  # RFC 8841's default limit
    assert _max_payload("a=max-message-size:16384\r\n", MAX_CHUNK) == 16384 - 4
    assert _max_payload("a=max-message-size:0\r\n", MAX_CHUNK) == MAX_CHUNK  # no limit


def test_loopback_only_sdp_keeps_only_loopback_candidates():
    sdp = (
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"
        "a=candidate:2 1 udp 2130706431 192.0.2.2 5001 typ host\r\n"
        "a=candidate:3 1 udp 2130706431 abc.local 5002 typ host\r\n"
        "a=mid:0\r\n"
    )
    assert _loopback_only_sdp(sdp) == (
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"
        "a=mid:0\r\n"
    )
