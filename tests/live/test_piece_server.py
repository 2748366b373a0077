"""The Range endpoint FFmpeg reads a downloading file through, over a real socket, against a
torrent stand-in that implements `PieceSource` (pieces arrive when the test says so)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from torrentm3u8_b.piece_server import DEADLINE_RENEWAL, FileReader, open_piece_server, parse_range
from torrentm3u8_b.progressive import read_live_playlist

PIECE = 1000  # bytes
DATA = bytes(range(256)) * 20  # 5120 bytes: 6 pieces, the last one short


class FakeTorrent:
    """Pieces of DATA; `have` says which are downloaded. Records deadlines and reads."""

    piece_length = PIECE

    def __init__(self, have: set[int]) -> None:
        self.have = have
        self.deadlines: list[int] = []
        self.asked = trio.Event()  # a deadline was set
        self.reads: list[int] = []
        self._arrived = trio.Event()

    def arrive(self, *pieces: int) -> None:
        self.have |= set(pieces)
        self._arrived.set()
        self._arrived = trio.Event()

    def map_file(self, index: int, offset: int) -> tuple[int, int]:
        assert index == 3
        return divmod(offset, PIECE)

    def have_piece(self, piece: int) -> bool:
        return piece in self.have

    def set_piece_deadline(self, piece: int, deadline: int) -> None:
        self.deadlines.append(piece)
        self.asked.set()
        self.asked = trio.Event()

    async def wait_piece(self, piece: int) -> None:
        while piece not in self.have:
            await self._arrived.wait()

    async def read_piece(self, piece: int) -> bytes:
        assert piece in self.have, "read_piece of a missing piece"
        self.reads.append(piece)
        return DATA[piece * PIECE : (piece + 1) * PIECE]


async def get(url: str, headers: str = "") -> tuple[str, dict[str, str], bytes]:
    host, _, rest = url.removeprefix("http://").partition("/")
    name, port = host.split(":")
    stream = await trio.open_tcp_stream(name, int(port))
    async with stream:
        await stream.send_all(f"GET /{rest} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode())
        raw = b""
        while chunk := await stream.receive_some():
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return status, fields, body


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-", (0, 5119)),
        ("bytes=100-199", (100, 199)),
        ("bytes=5000-9999", (5000, 5119)),
        ("bytes=-120", (5000, 5119)),
    ],
)
def test_parse_range(header, expected):
    assert parse_range(header, len(DATA)) == expected


@pytest.mark.parametrize(
    "header", ["bytes=5120-", "bytes=9-3", "items=0-1", "bytes=-", "0-", "bytes=-0"]
)
def test_parse_range_refuses(header):
    with pytest.raises(ValueError):
        parse_range(header, len(DATA))


async def test_ranges_are_served_from_pieces():
    torrent = FakeTorrent(have=set(range(6)))
    async with open_piece_server(torrent, 3, len(DATA)) as url:
        status, fields, body = await get(url)
        assert status == "HTTP/1.1 200 OK"
        assert fields["Content-Length"] == str(len(DATA)) and body == DATA
        status, fields, body = await get(url, "Range: bytes=1990-3010\r\n")
        assert status == "HTTP/1.1 206 Partial Content"
        assert fields["Content-Range"] == f"bytes 1990-3010/{len(DATA)}"
        assert fields["Content-Length"] == "1021" and body == DATA[1990:3011]
        status, fields, body = await get(url, "Range: bytes=6000-\r\n")
        assert status == "HTTP/1.1 416 Range Not Satisfiable"
        assert fields["Content-Range"] == f"bytes */{len(DATA)}" and body == b""
    assert torrent.deadlines == []  # everything was there


async def test_a_request_waits_for_missing_pieces_and_asks_for_them_first():
    torrent = FakeTorrent(have={0})
    async with open_piece_server(torrent, 3, len(DATA)) as url:
        async with trio.open_nursery() as nursery:
            got = []

            async def fetch():
                got.append(await get(url, "Range: bytes=500-2499\r\n"))

            nursery.start_soon(fetch)
            await torrent.asked.wait()
            assert torrent.deadlines[:5] == [1, 2, 3, 4, 5]  # the piece waited on, then ahead
            assert got == []
            torrent.arrive(1, 2)
    status, _, body = got[0]
    assert status == "HTTP/1.1 206 Partial Content"
    assert body == DATA[500:2500]


async def test_a_client_hanging_up_mid_range_is_not_an_error():
    torrent = FakeTorrent(have={0})
    async with open_piece_server(torrent, 3, len(DATA)) as url:
        host = url.removeprefix("http://").split("/")[0]
        name, port = host.split(":")
        stream = await trio.open_tcp_stream(name, int(port))
        await stream.send_all(b"GET /file/3 HTTP/1.1\r\nRange: bytes=0-\r\n\r\n")
        assert (await stream.receive_some()).startswith(b"HTTP/1.1 206")
        await stream.aclose()  # FFmpeg seeking elsewhere
        torrent.arrive(*range(6))
        status, _, body = await get(url, "Range: bytes=5000-\r\n")  # the server still serves
    assert status == "HTTP/1.1 206 Partial Content" and body == DATA[5000:]


def test_read_live_playlist_counts_only_usable_segments(tmp_path):
    assert read_live_playlist(tmp_path) is None
    for name, size in (("seg00000.ts", 188), ("seg00001.ts", 188), ("seg00002.ts", 0)):
        (tmp_path / name).write_bytes(b"G" * size)
    (tmp_path / "index.m3u8").write_text(
        "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXTINF:4.0,\nseg00000.ts\n"
        "#EXTINF:4.04,\nseg00001.ts\n#EXTINF:4.0,\nseg00002.ts\n"
    )
    now = read_live_playlist(tmp_path)
    assert (now.segments, now.duration, now.playlist) == (2, 8.04, "index.m3u8")

    # A segment a viewer cannot use ends what counts, even when later ones look fine.
    (tmp_path / "seg00002.ts").write_bytes(b"G" * 188)
    (tmp_path / "seg00003.ts").write_bytes(b"G" * 188)
    (tmp_path / "index.m3u8").write_text(
        "#EXTM3U\n#EXTINF:4.0,\nseg00000.ts\n#EXTINF:?,\nseg00001.ts\n"
        "#EXTINF:4.0,\nseg00002.ts\n#EXTINF:4.0,\n../seg00003.ts\n"
    )
    assert read_live_playlist(tmp_path).segments == 1
    (tmp_path / "index.m3u8").write_text(
        "#EXTM3U\n#EXTINF:4.0,\nseg00000.ts\n#EXTINF:4.0,\n.seg00001.ts\n"
    )
    assert read_live_playlist(tmp_path).segments == 1


async def test_a_paused_reader_sets_no_deadline_and_a_resumed_one_does_at_once():
    torrent = FakeTorrent(have={0})
    reader = FileReader(torrent, 3, len(DATA))
    reader.pause_deadlines()  # a seek rendition reads elsewhere
    got = []

    async def read() -> None:
        got.append(await reader.piece(2))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        assert torrent.deadlines == [] and got == []  # waiting, without asking
        asked = torrent.asked
        reader.resume_deadlines()  # the seek ended: no need to wait for a renewal
        await asked.wait()
        assert torrent.deadlines == [2, 3, 4, 5]  # the piece waited on, then ahead
        torrent.arrive(2)
    assert got == [DATA[2000:3000]] and torrent.reads == [2]


async def test_deadlines_are_renewed_while_a_piece_is_missing_unless_paused(autojump_clock):
    torrent = FakeTorrent(have=set())
    reader = FileReader(torrent, 3, len(DATA))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.piece, 0)
        await trio.sleep(2.5 * DEADLINE_RENEWAL)
        assert torrent.deadlines.count(0) == 3  # at 0, 1 and 2 renewals
        reader.pause_deadlines()
        await trio.sleep(3 * DEADLINE_RENEWAL)
        assert torrent.deadlines.count(0) == 3
        reader.resume_deadlines()
        await trio.testing.wait_all_tasks_blocked()
        assert torrent.deadlines.count(0) == 4
        torrent.arrive(0)
    assert torrent.reads == [0]
