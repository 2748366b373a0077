"""One torrent of B's libtorrent session (`torrents.TorrentSession` makes them): waits on
its metadata, pieces and completion, file selection and priorities, safe file names, resume
data, removal. The session's alert reader hands each alert to `Torrent._on_alert`; nothing here
touches the session itself.
"""

import logging
import math
import os
import re
from pathlib import Path, PurePosixPath

import libtorrent as lt
import trio

from .paths import safe_relpath

log = logging.getLogger("torrentm3u8_b.torrents")

RECHECK_INTERVAL = 1.0  # seconds: waiters re-read the status even when no alert came
PRIORITY_NORMAL = 4
PRIORITY_SKIP = 0
VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mkv .webm .avi .mov .ts .m2ts .mpg .mpeg .wmv .flv .ogv .3gp".split()
)
_SAVE_RESUME_FLAGS = lt.torrent_handle.save_info_dict | lt.torrent_handle.flush_disk_cache
_NOT_A_FILE = lt.file_storage.flag_pad_file | lt.file_storage.flag_symlink
_CHECKING = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)


class TorrentError(Exception):
    """libtorrent could not do what was asked; the message says why."""


def is_video_name(path: str) -> bool:
    """True when the file name has a video container extension (mp4, mkv, avi, ...)."""
    return PurePosixPath(path).suffix.lower() in VIDEO_EXTENSIONS


def lt_message(exc: BaseException) -> str:
    """libtorrent's text for `exc`, without its ' [libtorrent:22]' tail."""
    return re.sub(r"\s*\[[\w ]+:\d+\]$", "", str(exc))


class _Reply:
    """The answer an alert brings to one request."""

    def __init__(self) -> None:
        self._done = trio.Event()
        self._value = None
        self._error: str | None = None

    def set(self, value=None) -> None:
        if not self._done.is_set():
            self._value = value
            self._done.set()

    def fail(self, error: str) -> None:
        if not self._done.is_set():
            self._error = error
            self._done.set()

    async def get(self):
        await self._done.wait()
        if self._error is not None:
            raise TorrentError(self._error)
        return self._value


class Torrent:
    """One torrent of a `TorrentSession`, made by `add_magnet`. `key` is B's task id.

    Methods that are not async return at once; they raise TorrentError once the torrent was
    removed or the session closed. `_handle`, `_on_alert`, `_start_removal` and `_close` are
    for the session that owns it.
    """

    def __init__(self, key, handle, save_path: Path, info_hash: str, renamed, store_resume):
        self.key = key
        self.save_path = save_path
        self.info_hash = info_hash  # v1 hex, or the v2 hash truncated to 40 digits if v2-only
        self._handle = handle
        self._store_resume = store_resume
        self._renamed: dict[int, str] = renamed  # index -> path, the files we renamed
        self._changed = trio.Event()
        self._error: str | None = None
        self._closed: str | None = None
        self._ti = None  # torrent_info once the names are checked
        self._naming = trio.Lock()
        self._renames: dict[int, _Reply] = {}
        self._selected: list[int] | None = None
        self._resume_lock = trio.Lock()
        self._resume: _Reply | None = None
        self._pieces: dict[int, _Reply] = {}
        self._finished: dict[int, trio.Event] = {}  # piece -> set by its piece_finished_alert
        self._removal: _Reply | None = None
        self._delete_files = False

    # -- metadata and files

    async def wait_metadata(self) -> None:
        """Return once the torrent's metadata is here and its file names are safe. Never times
        out: a magnet nobody seeds stays without metadata, so wrap it in trio.fail_after."""
        await self._wait_until(lambda: self._handle.torrent_file() is not None)
        async with self._naming:
            if self._ti is None:
                ti = self._handle.torrent_file()
                await self._make_names_safe(ti.layout())
                self._ti = ti

    async def _make_names_safe(self, layout) -> None:
        # libtorrent 2.1 already drops '..' and absolute roots; anything else that
        # safe_relpath would change is renamed before a byte is written (upload mode).
        current = {i: self._renamed.get(i, layout.file_path(i)) for i in range(layout.num_files())}
        used = set(current.values())
        replies = []
        for index, path in current.items():
            safe = str(safe_relpath(path))
            if safe == path or layout.file_flags(index) & lt.file_storage.flag_pad_file:
                continue
            safe = _unique(safe, used)
            used.add(safe)
            log.warning("task %s: saving file %d %r as %r", self.key, index, path, safe)
            replies.append(self._renames.setdefault(index, _Reply()))
            self._handle.rename_file(index, safe)
        for reply in replies:
            await reply.get()

    def info(self) -> dict:
        """{name, info_hash, trackers, files: [{index, path, size, is_video}]}; `path` is
        relative to save_path. Pad files and symlinks (no data, never downloaded) are left
        out."""
        ti = self._metadata()
        layout = ti.layout()
        files = []
        for index in range(layout.num_files()):
            if layout.file_flags(index) & _NOT_A_FILE:
                continue
            path = self._renamed.get(index, layout.file_path(index))
            size = layout.file_size(index)
            files.append(
                {"index": index, "path": path, "size": size, "is_video": is_video_name(path)}
            )
        return {
            "name": ti.name(),
            "info_hash": self.info_hash,
            "trackers": [entry["url"] for entry in self._handle.trackers()],
            "files": files,
        }

    def select_files(self, indexes) -> None:
        """Download these files only (by index), and start downloading."""
        layout = self._metadata().layout()
        wanted = set()
        for index in indexes:
            valid = type(index) is int and 0 <= index < layout.num_files()
            if not valid or layout.file_flags(index) & _NOT_A_FILE:
                raise ValueError(f"the torrent has no file {index!r} to download")
            wanted.add(index)
        if not wanted:
            raise ValueError("select at least one file to download")
        priorities = [
            PRIORITY_NORMAL if i in wanted else PRIORITY_SKIP for i in range(layout.num_files())
        ]
        self._handle.prioritize_files(priorities)
        self._handle.unset_flags(lt.torrent_flags.upload_mode)
        self._selected = sorted(wanted)

    @property
    def selected(self) -> list[int] | None:
        return self._selected

    def file_disk_path(self, index: int) -> Path:
        """Where libtorrent writes file `index` (always under save_path)."""
        layout = self._metadata().layout()
        if not (type(index) is int and 0 <= index < layout.num_files()):
            raise ValueError(f"the torrent has no file {index!r}")
        path = self.save_path / self._renamed.get(index, layout.file_path(index))
        base, real = os.path.realpath(self.save_path), os.path.realpath(path)
        if os.path.commonpath([base, real]) != base:
            raise TorrentError(f"file {index} of the torrent is outside its download directory")
        return path

    # -- progress

    def status(self) -> dict:
        """{percent, download_rate, upload_rate, peers, downloaded, total, eta, state, error}:
        bytes and bytes per second of the wanted files (payload), eta in seconds or None."""
        self._check()
        st = self._handle.status()
        # total_wanted_done counts whole pieces, and a piece at the edge of a wanted file also
        # holds bytes of its unwanted neighbour: it can pass total_wanted before the end.
        total = st.total_wanted
        done = min(st.total_wanted_done, total)
        rate = st.download_payload_rate
        if total and done >= total:
            eta = 0
        elif total and rate > 0:
            eta = math.ceil((total - done) / rate)
        else:
            eta = None
        return {
            "percent": round(100.0 * done / total, 2) if total else 0.0,
            "download_rate": rate,
            "upload_rate": st.upload_payload_rate,
            "peers": st.num_peers,
            "downloaded": done,
            "total": total,
            "eta": eta,
            "state": st.state.name,
            "error": self._error or (st.errc.message() if st.errc.value() else None),
        }

    async def wait_complete(self) -> None:
        """Return once every selected file is downloaded, checked and flushed to disk. Raises
        TorrentError with libtorrent's message when the torrent fails (disk full, file error)."""
        if self._selected is None:
            raise TorrentError("no files selected: call select_files() first")
        await self._wait_until(self._is_complete)
        await self.save_resume_data()  # flushes libtorrent's disk cache first

    def _is_complete(self) -> bool:
        st = self._handle.status()
        return st.is_finished and not st.upload_mode and st.state not in _CHECKING

    async def save_resume_data(self) -> bytes:
        """Resume data (lt.write_resume_data_buf) for `add_magnet(resume_data=...)`, also
        written to the session's resume_dir when it has one."""
        async with self._resume_lock:
            self._check()
            reply = self._resume = _Reply()
            self._handle.save_resume_data(_SAVE_RESUME_FLAGS)
            try:
                data = await reply.get()
            finally:
                self._resume = None
        await self._store_resume(self.key, data)
        return data

    # -- pieces, for watching while downloading

    def set_sequential(self, on: bool = True) -> None:
        self._check()
        if on:
            self._handle.set_flags(lt.torrent_flags.sequential_download)
        else:
            self._handle.unset_flags(lt.torrent_flags.sequential_download)

    @property
    def piece_length(self) -> int:
        return self._metadata().piece_length()

    @property
    def num_pieces(self) -> int:
        return self._metadata().num_pieces()

    def map_file(self, index: int, offset: int) -> tuple[int, int]:
        """(piece, offset in that piece) of byte `offset` of file `index`."""
        request = self._metadata().map_file(index, offset, 1)
        return request.piece, request.start

    def have_piece(self, piece: int) -> bool:
        self._check()
        return bool(self._handle.have_piece(piece))

    def set_piece_deadline(self, piece: int, deadline: int) -> None:
        """Ask for `piece` within `deadline` milliseconds."""
        self._check()
        self._handle.set_piece_deadline(piece, deadline)

    def clear_piece_deadlines(self) -> None:
        """Forget every piece deadline: the download goes back to its usual order."""
        self._check()
        self._handle.clear_piece_deadlines()

    async def wait_piece(self, piece: int) -> None:
        """Return once `piece` is downloaded and checked (at once if it is). Raises
        TorrentError when the torrent is removed, the session closes or the torrent fails."""
        while True:
            self._check()
            if self._error is not None:
                raise TorrentError(self._error)
            if self._handle.have_piece(piece):
                return
            await self._finished.setdefault(piece, trio.Event()).wait()

    async def read_piece(self, piece: int) -> bytes:
        """The bytes of a downloaded piece, from libtorrent (not the file: see RECIPES)."""
        self._check()
        reply = self._pieces.get(piece)
        if reply is None:
            reply = self._pieces[piece] = _Reply()
            self._handle.read_piece(piece)
        return await reply.get()

    # -- plumbing

    def _metadata(self):
        self._check()
        if self._ti is None:
            raise TorrentError("no metadata yet: await wait_metadata() first")
        return self._ti

    def _check(self) -> None:
        if self._closed is not None:
            raise TorrentError(self._closed)

    async def _wait_until(self, predicate) -> None:
        while True:
            self._check()
            if self._error is not None:
                raise TorrentError(self._error)
            if predicate():
                return
            changed = self._changed
            with trio.move_on_after(RECHECK_INTERVAL):
                await changed.wait()

    def _on_alert(self, alert) -> None:
        if isinstance(alert, lt.save_resume_data_alert):
            if self._resume is not None:
                self._resume.set(lt.write_resume_data_buf(alert.params))
        elif isinstance(alert, lt.save_resume_data_failed_alert):
            if self._resume is not None:
                self._resume.fail(f"could not save resume data: {alert.error.message()}")
        elif isinstance(alert, lt.read_piece_alert):
            reply = self._pieces.pop(alert.piece, None)
            if reply is not None and alert.error.value():
                reply.fail(f"could not read piece {alert.piece}: {alert.error.message()}")
            elif reply is not None:
                reply.set(bytes(alert.buffer))
        elif isinstance(alert, lt.piece_finished_alert):
            finished = self._finished.pop(alert.piece_index, None)
            if finished is not None:
                finished.set()
        elif isinstance(alert, lt.file_renamed_alert):
            self._renamed[alert.index] = alert.new_name()
            self._renames.pop(alert.index, _Reply()).set()
        elif isinstance(alert, lt.file_rename_failed_alert):
            error = f"could not rename file {alert.index}: {alert.error.message()}"
            self._renames.pop(alert.index, _Reply()).fail(error)
        elif isinstance(alert, lt.file_error_alert):
            self._error = f"{alert.error.message()}: {alert.filename()}"
            self._wake_piece_waiters()
        elif isinstance(alert, lt.torrent_error_alert):
            self._error = self._error or alert.error.message()
            self._wake_piece_waiters()
        elif isinstance(alert, lt.torrent_removed_alert) and self._removal is not None:
            if not self._delete_files:
                self._removal.set()
        elif isinstance(alert, lt.torrent_deleted_alert) and self._removal is not None:
            self._removal.set()
        elif isinstance(alert, lt.torrent_delete_failed_alert) and self._removal is not None:
            if alert.error.value():
                self._removal.fail(f"could not delete the files: {alert.error.message()}")
            self._removal.set()  # a torrent without metadata "fails" with no error: no files
        self._changed.set()
        self._changed = trio.Event()

    def _start_removal(self, delete_files: bool) -> _Reply:
        self._close("the torrent was removed")  # fails what waits on this torrent
        self._delete_files = delete_files
        self._removal = _Reply()
        return self._removal

    def _close(self, reason: str) -> None:
        if self._closed is None:
            self._closed = reason
        replies = [self._resume, self._removal, *self._pieces.values(), *self._renames.values()]
        for reply in replies:
            if reply is not None:
                reply.fail(self._closed)
        self._wake_piece_waiters()
        self._changed.set()

    def _wake_piece_waiters(self) -> None:
        # They look at the torrent again and raise its error.
        for finished in self._finished.values():
            finished.set()
        self._finished.clear()


def _unique(path: str, used: set[str]) -> str:
    candidate, pure, n = path, PurePosixPath(path), 0
    while candidate in used:
        n += 1
        candidate = str(pure.with_name(f"{pure.stem}.{n}{pure.suffix}"))
    return candidate
