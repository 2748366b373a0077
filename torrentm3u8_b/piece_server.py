"""One torrent file over HTTP on 127.0.0.1, read piece by piece while it downloads.

    async with open_piece_server(torrent, file_index, size) as url:
        await make_hls(url, out_dir, playlist_type="event")  # FFmpeg reads with -seekable 1

FFmpeg asks for byte ranges (`Range: bytes=A-` or `A-B`); each answer is `206` with
`Content-Range` and the length of the whole range, and its bytes are sent as the pieces
arrive: a request waits on a missing piece (`Torrent.wait_piece`) and gives it (and the next
few) a libtorrent deadline, renewed every DEADLINE_RENEWAL while it is still missing, so what
FFmpeg waits for is downloaded first. Bytes come from `Torrent.read_piece`, never from the file
on disk (a piece just finished may not be written yet: RECIPES.md). FFmpeg closes a
connection when it seeks (the moov atom at the end of an MP4); the request serving it then
stops quietly.

A `FileReader` whose deadlines are paused (`pause_deadlines`) still waits for pieces but sets
no deadline: while a seek rendition reads elsewhere in the file, only its reader asks for
pieces first, and the main one gets its pieces from the sequential download.
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import Protocol

import trio

log = logging.getLogger("torrentm3u8.b.pieces")

LOOPBACK = "127.0.0.1"
READAHEAD_PIECES = 4  # pieces after the one a request waits on that get a deadline too
DEADLINE_STEP = 500  # milliseconds between the deadlines of consecutive pieces
DEADLINE_RENEWAL = 2.0  # seconds: deadlines of a piece still missing are set again
CACHED_PIECES = 8  # pieces kept in memory (FFmpeg re-reads around a seek)
MAX_HEADER_BYTES = 16_384
SEND_CHUNK = 65_536  # bytes per send

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class PieceSource(Protocol):
    """What the server needs of a `torrents.Torrent`."""

    @property
    def piece_length(self) -> int: ...

    def map_file(self, index: int, offset: int) -> tuple[int, int]: ...

    def have_piece(self, piece: int) -> bool: ...

    def set_piece_deadline(self, piece: int, deadline: int) -> None: ...

    async def wait_piece(self, piece: int) -> None: ...

    async def read_piece(self, piece: int) -> bytes: ...


class FileReader:
    """Reads byte ranges of file `index` of a torrent, waiting for pieces as needed."""

    def __init__(self, torrent: PieceSource, index: int, size: int) -> None:
        self.torrent = torrent
        self.index = index
        self.size = size
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._last_piece = torrent.map_file(index, size - 1)[0] if size else 0
        self._deadlines = True
        self._resumed = 0  # how many times deadlines were turned back on
        self._waits: set[trio.CancelScope] = set()

    @property
    def sets_deadlines(self) -> bool:
        return self._deadlines

    def pause_deadlines(self) -> None:
        """Set no piece deadline until `resume_deadlines` (pieces are still waited for)."""
        self._deadlines = False

    def resume_deadlines(self) -> None:
        """Set deadlines again, at once for the pieces requests are waiting on."""
        if self._deadlines:
            return
        self._deadlines = True
        self._resumed += 1
        for scope in self._waits:
            scope.cancel()  # the waiters go round their loop and set their deadlines

    async def piece(self, piece: int) -> bytes:
        data = self._cache.get(piece)
        if data is not None:
            self._cache.move_to_end(piece)
            return data
        t = self.torrent
        asked_at, asked_round = -math.inf, self._resumed
        while not t.have_piece(piece):
            now = trio.current_time()
            renew = now - asked_at >= DEADLINE_RENEWAL or asked_round != self._resumed
            if self._deadlines and renew:
                asked_at, asked_round = now, self._resumed
                last = min(piece + READAHEAD_PIECES, self._last_piece)
                for n, p in enumerate(range(piece, last + 1)):
                    if not t.have_piece(p):
                        t.set_piece_deadline(p, DEADLINE_STEP * n)
            with trio.move_on_after(DEADLINE_RENEWAL) as wait:
                self._waits.add(wait)
                try:
                    await t.wait_piece(piece)
                finally:
                    self._waits.discard(wait)
        data = await t.read_piece(piece)
        self._cache[piece] = data
        while len(self._cache) > CACHED_PIECES:
            self._cache.popitem(last=False)
        return data

    async def copy_range(self, start: int, end: int, write) -> None:
        """await write(chunk) for the bytes start..end (inclusive) of the file, in order, as
        they become available."""
        position = start
        while position <= end:
            piece, offset = self.torrent.map_file(self.index, position)
            data = await self.piece(piece)
            take = min(len(data) - offset, end - position + 1)
            if take <= 0:
                raise RuntimeError(f"piece {piece} is shorter than expected")
            for i in range(offset, offset + take, SEND_CHUNK):
                await write(data[i : min(i + SEND_CHUNK, offset + take)])
            position += take


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a `Range` header, None for the whole file; ValueError when the
    range cannot be satisfied."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        raise ValueError(header)
    first, last = match.groups()
    if first == "":  # the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise ValueError(header)
        return max(0, size - n), size - 1
    start = int(first)
    stop = min(int(last), size - 1) if last else size - 1
    if start >= size or stop < start:
        raise ValueError(header)
    return start, stop


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEADER_BYTES:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            return None
        buffer += chunk
    return buffer.split(b"\r\n\r\n", 1)[0]


def _head(status: str, headers: dict[str, str | int]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def _serve_one(reader: FileReader, stream: trio.SocketStream) -> None:
    try:
        head = await _read_head(stream)
        if head is None:
            return
        request, *header_lines = head.decode("latin-1").split("\r\n")
        method = request.split(" ", 1)[0]
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        size = reader.size
        base = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        base["Connection"] = "close"
        if method not in ("GET", "HEAD"):
            await stream.send_all(_head("405 Method Not Allowed", {**base, "Content-Length": 0}))
            return
        try:
            wanted = parse_range(headers.get("range"), size)
        except ValueError:
            fields = {**base, "Content-Range": f"bytes */{size}", "Content-Length": 0}
            await stream.send_all(_head("416 Range Not Satisfiable", fields))
            return
        if wanted is None:
            first, last = 0, size - 1
            await stream.send_all(_head("200 OK", {**base, "Content-Length": size}))
        else:
            first, last = wanted
            fields = {**base, "Content-Range": f"bytes {first}-{last}/{size}"}
            fields["Content-Length"] = last - first + 1
            await stream.send_all(_head("206 Partial Content", fields))
        if method == "HEAD" or size == 0:
            return
        async with trio.open_nursery() as nursery:
            # FFmpeg hangs up when it seeks: stop waiting for pieces nobody reads any more.
            nursery.start_soon(_cancel_on_hangup, stream, nursery.cancel_scope)
            await _send_range(reader, stream, first, last)
            nursery.cancel_scope.cancel()
    except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
        pass  # FFmpeg closed the connection (a seek): normal
    except Exception as exc:  # one request fails (the torrent went away): FFmpeg says so
        log.warning("cannot serve file %d: %s", reader.index, exc)
    finally:
        with trio.move_on_after(1) as cleanup:
            cleanup.shield = True
            await stream.aclose()


async def _send_range(reader: FileReader, stream: trio.SocketStream, first: int, last: int):
    try:
        await reader.copy_range(first, last, stream.send_all)
    except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
        pass  # FFmpeg closed the connection (a seek): normal


async def _cancel_on_hangup(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
    try:
        while await stream.receive_some(4096):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
        pass
    scope.cancel()


async def serve_piece_server(
    torrent: PieceSource,
    index: int,
    size: int,
    *,
    reader: FileReader | None = None,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve file `index` (`size` bytes) of `torrent` on 127.0.0.1 until cancelled; started()
    with its URL. `reader`: a FileReader of that file to read through (its deadlines can be
    paused from outside); default: a new one."""
    reader = reader or FileReader(torrent, index, size)
    listeners = await trio.open_tcp_listeners(0, host=LOOPBACK)
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(trio.serve_listeners, partial(_serve_one, reader), listeners))
        task_status.started(f"http://{LOOPBACK}:{port}/file/{index}")


@contextmanager
def unwrapped():
    """A nursery's single exception comes out as itself, not in an ExceptionGroup, so callers
    can catch TranscodeError or TorrentError."""
    try:
        yield
    except BaseExceptionGroup as group:
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        if inner is group:
            raise
        raise inner from None


@asynccontextmanager
async def open_piece_server(
    torrent: PieceSource, index: int, size: int, *, reader: FileReader | None = None
) -> AsyncIterator[str]:
    """`serve_piece_server` for the duration of the block; yields the file's URL. An exception
    from the block comes out as itself."""
    with unwrapped():
        async with trio.open_nursery() as nursery:
            serve = partial(serve_piece_server, torrent, index, size, reader=reader)
            url = await nursery.start(serve)
            yield url
            nursery.cancel_scope.cancel()
