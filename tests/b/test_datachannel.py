"""The data-channel file protocol, sans-io: parsing, path checks, framing, FileServer turns."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentm3u8_b.datachannel import (
    MAX_CHUNK,
    BadRequest,
    Cancel,
    FileServer,
    Forbidden,
    Get,
    NotFound,
    content_type,
    decode_chunk,
    encode_chunk,
    parse_request,
    resolve_path,
)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('{"op":"get","id":7,"path":"index.m3u8"}', Get(7, "index.m3u8")),
        ('{"op":"get","id":0,"path":"a/seg1.ts"}', Get(0, "a/seg1.ts")),
        ('{"op":"cancel","id":4294967295}', Cancel(4294967295)),
    ],
)
def test_parse_request(message, expected):
    assert parse_request(message) == expected


@pytest.mark.parametrize(
    ("message", "request_id", "words"),
    [
        (b'{"op":"get","id":1,"path":"x"}', None, "binary"),
        ("not json", None, "not JSON"),
        ("[1, 2]", None, "object"),
        ('{"op":"get","path":"x"}', None, "id must be"),
        ('{"op":"get","id":-1,"path":"x"}', None, "id must be"),
        ('{"op":"get","id":4294967296,"path":"x"}', None, "id must be"),
        ('{"op":"get","id":true,"path":"x"}', None, "id must be"),
        ('{"op":"get","id":1.5,"path":"x"}', None, "id must be"),
        ('{"op":"put","id":3,"path":"x"}', 3, "unknown op"),
        ('{"id":3,"path":"x"}', 3, "unknown op"),
        ('{"op":"get","id":3}', 3, "path must be"),
        ('{"op":"get","id":3,"path":""}', 3, "path must be"),
        ('{"op":"get","id":3,"path":["x"]}', 3, "path must be"),
        ('{"op":"get","id":3,"path":"' + "a" * 5000 + '"}', None, "longer than"),
    ],
)
def test_parse_request_rejects(message, request_id, words):
    with pytest.raises(BadRequest) as caught:
        parse_request(message)
    assert caught.value.request_id == request_id
    assert words in caught.value.message


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An HLS folder next to a secret file that must never be served."""
    (tmp_path / "secret.txt").write_text("secret")
    hls = tmp_path / "hls"
    (hls / "sub").mkdir(parents=True)
    (hls / "index.m3u8").write_text("#EXTM3U\n")
    (hls / "sub" / "seg1.ts").write_bytes(b"\x47" * 1000)
    (hls / "to-secret").symlink_to(tmp_path / "secret.txt")
    (hls / "to-etc").symlink_to("/etc")
    (hls / "alias.m3u8").symlink_to(hls / "index.m3u8")
    (hls / "loop").symlink_to(hls / "loop")
    return hls


@pytest.mark.parametrize(
    "path",
    [
        "../secret.txt",
        "sub/../../secret.txt",
        "..",
        "/etc/passwd",
        "//etc/passwd",
        "%2e%2e/secret.txt",
        "sub%2f..%2f..%2fsecret.txt",
        "..%2fsecret.txt",
        "a\\..\\..\\secret.txt",
        "\\etc\\passwd",
        "index.m3u8\x00.ts",
        "sub/\nseg1.ts",
        "C:/Windows/win.ini",
        "c:secret.txt",
        "./index.m3u8",
        "sub//seg1.ts",
        "sub/",
        "to-secret",
        "to-etc/passwd",
    ],
)
def test_resolve_path_refuses_escapes(root, path):
    with pytest.raises(Forbidden):
        resolve_path(root, path)


def test_resolve_path_accepts_files_and_symlinks_inside(root):
    assert resolve_path(root, "index.m3u8") == (root / "index.m3u8").resolve()
    assert resolve_path(root, "sub/seg1.ts") == (root / "sub" / "seg1.ts").resolve()
    assert resolve_path(root, "alias.m3u8") == (root / "index.m3u8").resolve()
    assert resolve_path(root, "a..b.ts") == (root / "a..b.ts").resolve()  # not a '..' part


def test_resolve_path_symlink_loop_is_not_found(root):
    with pytest.raises(NotFound):
        resolve_path(root, "loop")


@given(st.text(max_size=60))
def test_resolve_path_never_leaves_the_root(path):
    root = Path(__file__).resolve().parent
    try:
        target = resolve_path(root, path)
    except (Forbidden, NotFound, BadRequest):
        return
    assert target.is_relative_to(root) and target != root


def test_content_types():
    assert content_type("index.m3u8") == "application/vnd.apple.mpegurl"
    assert content_type("a/seg00001.TS") == "video/mp2t"
    assert content_type("init.mp4") == "video/mp4"
    assert content_type("notes") == "application/octet-stream"


def test_chunk_framing_round_trip():
    message = encode_chunk(0xDEADBEEF, b"payload")
    assert message[:4] == b"\xde\xad\xbe\xef"
    assert decode_chunk(message) == (0xDEADBEEF, b"payload")
    with pytest.raises(ValueError):
        decode_chunk(b"\x00\x01")


def get(request_id: int, path: str) -> str:
    return json.dumps({"op": "get", "id": request_id, "path": path})


def drain(server: FileServer) -> list[str | bytes]:
    messages = []
    while (message := server.next_message()) is not None:
        messages.append(message)
    return messages


def body_of(messages: list[str | bytes], request_id: int) -> bytes:
    return b"".join(
        payload
        for message in messages
        if isinstance(message, bytes)
        for rid, payload in [decode_chunk(message)]
        if rid == request_id
    )


def test_get_sends_header_chunks_and_end(tmp_path):
    data = os.urandom(3 * MAX_CHUNK + 123)
    (tmp_path / "seg.ts").write_bytes(data)
    server = FileServer(tmp_path)
    [header] = server.receive(get(5, "seg.ts"))
    assert json.loads(header) == {"id": 5, "status": 200, "size": len(data), "type": "video/mp2t"}
    messages = drain(server)
    assert [len(m) for m in messages[:-1]] == [4 + MAX_CHUNK] * 3 + [4 + 123]
    assert json.loads(messages[-1]) == {"id": 5, "op": "end"}
    assert body_of(messages, 5) == data
    assert not server.pending
    assert server.stats.snapshot() == {
        "requests": 1,
        "served": 1,
        "failed": 0,
        "cancelled": 0,
        "bytes_sent": len(data),
        "peak_buffered": 0,
        "paths": {"seg.ts": 1},
    }


def test_empty_file_gets_header_and_end(tmp_path):
    (tmp_path / "empty.ts").write_bytes(b"")
    server = FileServer(tmp_path)
    assert json.loads(server.receive(get(1, "empty.ts"))[0])["size"] == 0
    assert [json.loads(m) for m in drain(server)] == [{"id": 1, "op": "end"}]


@pytest.mark.parametrize(
    ("message", "status", "request_id"),
    [
        (get(1, "missing.ts"), 404, 1),
        (get(2, "sub"), 404, 2),
        (get(3, "../x"), 403, 3),
        (get(4, "fifo"), 404, 4),
        ("{", 400, None),
        (b"\x00\x00\x00\x01", 400, None),
    ],
)
def test_errors_are_statuses(tmp_path, message, status, request_id):
    (tmp_path / "sub").mkdir()
    os.mkfifo(tmp_path / "fifo")  # opening it must not hang the server
    server = FileServer(tmp_path)
    [reply] = server.receive(message)
    answer = json.loads(reply)
    assert (answer["id"], answer["status"]) == (request_id, status)
    assert answer["error"]
    assert not server.pending
    assert server.stats.failed == 1


def test_duplicate_id_in_flight_is_a_bad_request(tmp_path):
    (tmp_path / "a.ts").write_bytes(b"a" * 10)
    server = FileServer(tmp_path)
    server.receive(get(1, "a.ts"))
    assert json.loads(server.receive(get(1, "a.ts"))[0])["status"] == 400
    assert body_of(drain(server), 1) == b"a" * 10


def test_active_requests_take_turns(tmp_path):
    (tmp_path / "big.ts").write_bytes(b"B" * (5 * 1000))
    (tmp_path / "small.m3u8").write_bytes(b"S" * (2 * 1000))
    server = FileServer(tmp_path, chunk_size=1000)
    server.receive(get(1, "big.ts"))
    first = server.next_message()  # the big file is already on its way
    server.receive(get(2, "small.m3u8"))
    order = [
        decode_chunk(m)[0] if isinstance(m, bytes) else json.loads(m)
        for m in [first, *drain(server)]
    ]
    assert order == [1, 1, 2, 1, 2, 1, {"id": 2, "op": "end"}, 1, {"id": 1, "op": "end"}]


def test_cancel_stops_a_transfer(tmp_path):
    (tmp_path / "big.ts").write_bytes(b"x" * 10_000)
    server = FileServer(tmp_path, chunk_size=1000)
    server.receive(get(9, "big.ts"))
    server.next_message()
    assert [json.loads(r) for r in server.receive('{"op":"cancel","id":9}')] == [
        {"id": 9, "status": 499, "error": "cancelled"}
    ]
    assert drain(server) == []
    assert server.receive('{"op":"cancel","id":9}') == []  # already gone: nothing to say
    assert server.stats.cancelled == 1


def test_a_growing_file_is_sent_as_it_was_when_requested(tmp_path):
    playlist = tmp_path / "index.m3u8"
    playlist.write_bytes(b"#EXTM3U\n#EXTINF:4,\nseg0.ts\n")
    server = FileServer(tmp_path, chunk_size=8)
    size = json.loads(server.receive(get(1, "index.m3u8"))[0])["size"]
    first = server.next_message()
    with playlist.open("ab") as file:
        file.write(b"#EXTINF:4,\nseg1.ts\n")
    assert body_of([first, *drain(server)], 1) == b"#EXTM3U\n#EXTINF:4,\nseg0.ts\n"
    assert size == len(b"#EXTM3U\n#EXTINF:4,\nseg0.ts\n")


def test_a_file_that_shrinks_mid_transfer_ends_with_500(tmp_path):
    segment = tmp_path / "seg.ts"
    segment.write_bytes(b"x" * 100)
    server = FileServer(tmp_path, chunk_size=10)
    server.receive(get(1, "seg.ts"))
    server.next_message()
    os.truncate(segment, 20)
    messages = drain(server)
    assert json.loads(messages[-1])["status"] == 500
    assert body_of(messages, 1) == b"x" * 10
    assert server.stats.failed == 1


def test_close_releases_open_files(tmp_path):
    (tmp_path / "a.ts").write_bytes(b"a" * 100)
    server = FileServer(tmp_path, chunk_size=10)
    server.receive(get(1, "a.ts"))
    server.close()
    assert not server.pending
    assert server.next_message() is None
    assert server.receive(get(2, "a.ts")) == []  # nothing new is opened after close
    assert not server.pending
