"""The data-channel file protocol, sans-io (docs/datachannel.md is the reference).

The browser asks for files of one HLS folder (the session root) over a WebRTC data channel:

    browser -> B  text    {"op": "get", "id": 7, "path": "seg00001.ts"}
                  text    {"op": "cancel", "id": 7}
    B -> browser  text    {"id": 7, "status": 200, "size": 123456, "type": "video/mp2t"}
                  binary  4-byte big-endian id + up to 64 KiB of the file, repeated
                  text    {"id": 7, "op": "end"}
                  text    {"id": 7, "status": 404, "error": "..."}   (ends a request too)

`FileServer` is one channel's server side: messages in (`receive`), messages out (the replies
`receive` returns, then `next_message` until it returns None). It opens and reads files (a
local, bounded read per chunk) but knows no event loop and no socket: webrtc.py moves the
messages and applies backpressure. Active requests take turns, one chunk each, so a large
file never starves a playlist request.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

FRAME_HEADER = struct.Struct("!I")  # the request id in front of every binary message
MAX_CHUNK = 65536  # bytes of file payload per binary message
MAX_REQUEST_ID = 2**32 - 1
MAX_REQUEST_TEXT = 4096  # characters in one request message
MAX_PATH_LENGTH = 1024  # characters in a requested path

OK, BAD_REQUEST, FORBIDDEN, NOT_FOUND, CANCELLED, SERVER_ERROR = 200, 400, 403, 404, 499, 500

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".aac": "audio/aac",
    ".vtt": "text/vtt",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RequestError(Exception):
    """A request that gets an error status instead of a file."""

    status = SERVER_ERROR

    def __init__(self, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


class BadRequest(RequestError):
    status = BAD_REQUEST


class Forbidden(RequestError):
    status = FORBIDDEN


class NotFound(RequestError):
    status = NOT_FOUND


@dataclass(frozen=True)
class Get:
    id: int
    path: str


@dataclass(frozen=True)
class Cancel:
    id: int


def parse_request(message: str | bytes) -> Get | Cancel:
    """One browser message -> Get or Cancel; raises BadRequest (with the id when known)."""
    if not isinstance(message, str):
        raise BadRequest("requests are JSON text messages, not binary")
    if len(message) > MAX_REQUEST_TEXT:
        raise BadRequest(f"request longer than {MAX_REQUEST_TEXT} characters")
    try:
        request = json.loads(message)
    except ValueError:
        raise BadRequest("request is not JSON")
    if not isinstance(request, dict):
        raise BadRequest("request must be a JSON object")
    request_id = request.get("id")
    if type(request_id) is not int or not 0 <= request_id <= MAX_REQUEST_ID:
        raise BadRequest(f"id must be an integer from 0 to {MAX_REQUEST_ID}")
    op = request.get("op")
    if op == "cancel":
        return Cancel(request_id)
    if op != "get":
        raise BadRequest(f"unknown op {op!r}: use 'get' or 'cancel'", request_id)
    path = request.get("path")
    if not isinstance(path, str) or not path:
        raise BadRequest("path must be a non-empty string", request_id)
    return Get(request_id, path)


def resolve_path(root: Path, path: str) -> Path:
    """The file `path` names under `root`, resolved; Forbidden for anything that could escape.

    `path` is a plain relative POSIX path: no percent-encoding, no backslashes, no control
    characters, no drive letters, no '.', '..' or empty components. A symlink may point
    elsewhere inside the root, never outside it. Existence is checked when the file is opened.
    """
    if len(path) > MAX_PATH_LENGTH:
        raise BadRequest(f"path longer than {MAX_PATH_LENGTH} characters")
    if _CONTROL.search(path):
        raise Forbidden("control characters (NUL included) are not allowed in a path")
    if "\\" in path:
        raise Forbidden("backslashes are not allowed in a path: use '/'")
    if "%" in path:
        raise Forbidden("percent-encoding is not accepted: send the decoded relative path")
    if path.startswith("/") or _DRIVE.match(path):
        raise Forbidden("absolute paths are not allowed: send a path relative to the stream")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise Forbidden("'.', '..' and empty path components are not allowed")
    base = root.resolve()
    try:
        target = (base / path).resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError up to 3.12)
        raise NotFound(f"{path!r} cannot be resolved")
    if target.is_symlink():  # 3.13 returns a looping symlink unresolved instead of raising
        raise NotFound(f"{path!r} cannot be resolved")
    if target == base or not target.is_relative_to(base):
        raise Forbidden("path leads outside the stream folder")
    return target


def content_type(path: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(path)[1].lower(), DEFAULT_CONTENT_TYPE)


def _text(message: dict[str, object]) -> str:
    return json.dumps(message, separators=(",", ":"))


def encode_header(request_id: int, size: int, type_: str) -> str:
    return _text({"id": request_id, "status": OK, "size": size, "type": type_})


def encode_error(request_id: int | None, status: int, message: str) -> str:
    return _text({"id": request_id, "status": status, "error": message})


def encode_end(request_id: int) -> str:
    return _text({"id": request_id, "op": "end"})


def encode_chunk(request_id: int, payload: bytes) -> bytes:
    return FRAME_HEADER.pack(request_id) + payload


def decode_chunk(message: bytes) -> tuple[int, bytes]:
    if len(message) < FRAME_HEADER.size:
        raise ValueError(f"binary message of {len(message)} bytes has no request id")
    (request_id,) = FRAME_HEADER.unpack_from(message)
    return request_id, message[FRAME_HEADER.size :]


@dataclass
class TransferStats:
    """What one channel (or session, or server) served. Plain data: callers copy it."""

    requests: int = 0  # get messages received
    served: int = 0  # requests answered in full ("end" sent)
    failed: int = 0  # requests answered with an error status (cancelled ones excluded)
    cancelled: int = 0
    bytes_sent: int = 0  # file payload bytes handed to the channel
    peak_buffered: int = 0  # the highest bufferedAmount seen after a send, in bytes
    paths: Counter[str] = field(default_factory=Counter)  # path -> times opened (status 200)

    def add(self, other: TransferStats) -> None:
        self.requests += other.requests
        self.served += other.served
        self.failed += other.failed
        self.cancelled += other.cancelled
        self.bytes_sent += other.bytes_sent
        self.peak_buffered = max(self.peak_buffered, other.peak_buffered)
        self.paths.update(other.paths)

    def snapshot(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "served": self.served,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "bytes_sent": self.bytes_sent,
            "peak_buffered": self.peak_buffered,
            "paths": dict(self.paths),
        }


class _Transfer:
    def __init__(self, request_id: int, file: BinaryIO, size: int) -> None:
        self.id = request_id
        self.file = file
        self.remaining = size


class FileServer:
    """The server side of one data channel over the files under `root`."""

    def __init__(
        self, root: Path, *, chunk_size: int = MAX_CHUNK, stats: TransferStats | None = None
    ) -> None:
        if not 0 < chunk_size <= MAX_CHUNK:
            raise ValueError(f"chunk_size must be 1..{MAX_CHUNK} bytes")
        self.root = root
        self.chunk_size = chunk_size
        self.stats = stats if stats is not None else TransferStats()
        self._active: dict[int, _Transfer] = {}  # insertion order is the round-robin order
        self._closed = False

    @property
    def pending(self) -> bool:
        return bool(self._active)

    def receive(self, message: str | bytes) -> list[str]:
        """Take one browser message; return the replies to send at once (a header or an error)."""
        if self._closed:
            return []  # the channel is going away: open nothing more
        try:
            request = parse_request(message)
            if isinstance(request, Cancel):
                return self._cancel(request.id)
            self.stats.requests += 1
            if request.id in self._active:
                raise BadRequest(f"request id {request.id} is already in flight", request.id)
            try:
                return [self._open(request)]
            except RequestError as error:
                error.request_id = request.id
                raise
        except RequestError as error:
            self.stats.failed += 1
            return [encode_error(error.request_id, error.status, error.message)]

    def next_message(self) -> str | bytes | None:
        """The next message to send: one chunk of the next active request in turn, or None."""
        if not self._active:
            return None
        transfer = self._active.pop(next(iter(self._active)))
        if transfer.remaining == 0:
            transfer.file.close()
            self.stats.served += 1
            return encode_end(transfer.id)
        try:
            payload = transfer.file.read(min(self.chunk_size, transfer.remaining))
        except OSError as error:
            return self._fail(transfer, f"reading the file failed: {error.strerror}")
        if not payload:
            return self._fail(transfer, "the file shrank while it was being sent")
        transfer.remaining -= len(payload)
        self.stats.bytes_sent += len(payload)
        self._active[transfer.id] = transfer  # to the back of the line
        return encode_chunk(transfer.id, payload)

    def close(self) -> None:
        """Close the open files; later messages are ignored."""
        self._closed = True
        for transfer in self._active.values():
            transfer.file.close()
        self._active.clear()

    def _open(self, request: Get) -> str:
        target = resolve_path(self.root, request.path)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"no file {request.path!r} in this stream")
        except OSError:
            raise NotFound(f"{request.path!r} cannot be opened")
        info = os.fstat(fd)  # O_NONBLOCK above: opening a FIFO must not hang us
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise NotFound(f"{request.path!r} is not a file")
        file = os.fdopen(fd, "rb", buffering=0)
        self._active[request.id] = _Transfer(request.id, file, info.st_size)
        self.stats.paths[request.path] += 1
        return encode_header(request.id, info.st_size, content_type(request.path))

    def _cancel(self, request_id: int) -> list[str]:
        transfer = self._active.pop(request_id, None)
        if transfer is None:
            return []  # finished or unknown: the browser drops whatever still arrives
        transfer.file.close()
        self.stats.cancelled += 1
        return [encode_error(request_id, CANCELLED, "cancelled")]

    def _fail(self, transfer: _Transfer, message: str) -> str:
        transfer.file.close()
        self.stats.failed += 1
        return encode_error(transfer.id, SERVER_ERROR, message)
