"""B's libtorrent session, driven from trio.

One session per B process::

    async with open_torrent_session(TorrentSettings(), resume_dir) as ts:
        t = await ts.add_magnet(task_id, magnet, save_path, resume_data=saved)
        with trio.fail_after(METADATA_TIMEOUT):
            await t.wait_metadata()
        t.select_files([f["index"] for f in t.info()["files"] if f["is_video"]])
        await t.wait_complete()
        path = t.file_disk_path(index)

A task in the session waits on libtorrent's alert fd (`set_alert_fd` on a non-blocking pipe)
and hands each alert to the `Torrent` it concerns. Torrents are added in upload mode so nothing
downloads before `select_files`. libtorrent 2.1 already cleans '..' and absolute paths out of a
torrent's file list; what `paths.safe_relpath` would still change is renamed when the metadata
arrives, before a byte is written.
"""

import logging
import math
import os
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import libtorrent as lt
import trio

from .paths import safe_relpath

log = logging.getLogger(__name__)

SHUTDOWN_SAVE_TIMEOUT = 5.0  # seconds: saving resume data of every torrent when the session ends
ALERT_QUEUE_SIZE = 10_000  # alerts kept by libtorrent between two reads
LOOPBACK_RECONNECT = 1  # seconds before retrying a local peer that failed (libtorrent: 60)
RESUME_SUFFIX = ".resume"
RECHECK_INTERVAL = 1.0  # seconds: waiters re-read the status even when no alert came
PRIORITY_NORMAL = 4
PRIORITY_SKIP = 0
VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mkv .webm .avi .mov .ts .m2ts .mpg .mpeg .wmv .flv .ogv .3gp".split()
)

_Cat = lt.alert.category_t
ALERT_MASK = (
    _Cat.error_notification
    | _Cat.status_notification
    | _Cat.storage_notification
    | _Cat.file_progress_notification
    | _Cat.piece_progress_notification  # piece_finished_alert, for Torrent.wait_piece
)
_PRODUCTION_INTERFACES = "0.0.0.0:6881,[::]:6881"
_LOOPBACK_INTERFACE = "127.0.0.1:0"
_SAVE_RESUME_FLAGS = lt.torrent_handle.save_info_dict | lt.torrent_handle.flush_disk_cache
_NOT_A_FILE = lt.file_storage.flag_pad_file | lt.file_storage.flag_symlink
_CHECKING = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)


@dataclass
class TorrentSettings:
    """What the session may do on the network. The defaults are for production.

    `loopback_only` (tests, demo): listen and connect on 127.0.0.1 only; DHT, LSD, UPnP,
    NAT-PMP, the IP notifier and uTP are off; rate limits apply to loopback peers too, and a
    peer that failed is retried after 1 s instead of 60.
    """

    loopback_only: bool = False
    listen_interfaces: str | None = None  # None: 0.0.0.0:6881,[::]:6881, or 127.0.0.1:0
    dht: bool = True
    lsd: bool = True
    upnp: bool = True
    natpmp: bool = True
    utp: bool = True
    download_limit: int = 0  # bytes per second, 0: unlimited
    upload_limit: int = 0  # bytes per second, 0: unlimited

    def settings_pack(self) -> dict:
        """The libtorrent settings (pass them to `lt.session()`: a bare session starts DHT)."""
        pack = {
            "listen_interfaces": self.listen_interfaces or _PRODUCTION_INTERFACES,
            "enable_dht": self.dht,
            "enable_lsd": self.lsd,
            "enable_upnp": self.upnp,
            "enable_natpmp": self.natpmp,
            "enable_outgoing_utp": self.utp,
            "enable_incoming_utp": self.utp,
            "download_rate_limit": self.download_limit,
            "upload_rate_limit": self.upload_limit,
            "alert_mask": int(ALERT_MASK),
            "alert_queue_size": ALERT_QUEUE_SIZE,
        }
        if self.loopback_only:
            interfaces = self.listen_interfaces or _LOOPBACK_INTERFACE
            if not all(i.strip().startswith("127.") for i in interfaces.split(",")):
                raise ValueError(f"loopback_only but listen_interfaces is {interfaces!r}")
            pack.update(
                listen_interfaces=interfaces,
                outgoing_interfaces="127.0.0.1",
                enable_dht=False,
                dht_bootstrap_nodes="",
                enable_lsd=False,
                enable_upnp=False,
                enable_natpmp=False,
                enable_ip_notifier=False,
                allow_multiple_connections_per_ip=True,
                enable_outgoing_utp=False,
                enable_incoming_utp=False,
                ignore_limits_on_local_network=False,
                min_reconnect_time=LOOPBACK_RECONNECT,
            )
        return pack


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
    removed or the session closed.
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
        total, done = st.total_wanted, st.total_wanted_done
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


class TorrentSession:
    """The torrents of one libtorrent session, by key (B's task id). Made by
    `open_torrent_session`."""

    def __init__(self, session: lt.session, alert_fd: int, resume_dir: Path | None) -> None:
        self._session = session
        self._alert_fd = alert_fd
        self.resume_dir = Path(resume_dir) if resume_dir is not None else None
        self._torrents: dict[str, Torrent] = {}
        self._by_handle: dict[lt.torrent_handle, Torrent] = {}
        self._closed = False

    @property
    def listen_port(self) -> int:
        return self._session.listen_port()

    def __getitem__(self, key: str) -> Torrent:
        return self._torrents[key]

    def __contains__(self, key: str) -> bool:
        return key in self._torrents

    def keys(self) -> list[str]:
        return list(self._torrents)

    async def add_magnet(
        self, key: str, magnet: str, save_path: Path, *, resume_data: bytes | None = None
    ) -> Torrent:
        """Start `magnet` at once (not queued, x.pe peers and tr trackers used), in upload
        mode: nothing downloads before `Torrent.select_files`. `resume_data` (from
        `Torrent.save_resume_data` or `load_resume_data`) skips re-checking what is on disk;
        it is ignored, with a warning, when it is unreadable or for another torrent.
        """
        if self._closed:
            raise TorrentError("the torrent session is closed")
        if key in self._torrents:
            raise TorrentError(f"task {key} already has a torrent")
        try:
            params = lt.parse_magnet_uri(magnet)
        except RuntimeError as exc:
            raise TorrentError(f"not a magnet link: {lt_message(exc)}") from None
        renamed: dict[int, str] = {}
        if resume_data is not None:
            params, renamed = _with_resume_data(key, params, resume_data)
        params.save_path = str(await trio.Path(save_path).absolute())
        params.flags |= lt.torrent_flags.upload_mode | lt.torrent_flags.duplicate_is_error
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        try:
            handle = self._session.add_torrent(params)
        except RuntimeError as exc:
            raise TorrentError(f"could not add the torrent: {lt_message(exc)}") from None
        info_hash = _info_hash(params.info_hashes)
        torrent = Torrent(
            key, handle, Path(params.save_path), info_hash, renamed, self._save_resume_file
        )
        self._torrents[key] = torrent
        self._by_handle[handle] = torrent
        return torrent

    async def remove(self, key: str, delete_files: bool = False) -> None:
        """Remove the torrent of `key` (no-op when there is none) and its resume file; with
        `delete_files`, also the files it downloaded. Returns once libtorrent has done it."""
        torrent = self._torrents.pop(key, None)
        if torrent is None:
            return
        reply = torrent._start_removal(delete_files)
        flags = lt.session.delete_files if delete_files else 0
        self._session.remove_torrent(torrent._handle, flags)
        try:
            await reply.get()
        finally:
            self._by_handle.pop(torrent._handle, None)
            torrent._close("the torrent was removed")
            if self.resume_dir is not None:
                await trio.to_thread.run_sync(_unlink, self.resume_path(key))

    def resume_path(self, key: str) -> Path:
        if self.resume_dir is None:
            raise TorrentError("this session keeps no resume files (no resume_dir)")
        return self.resume_dir / f"{key}{RESUME_SUFFIX}"

    async def load_resume_data(self, key: str) -> bytes | None:
        """The resume data last saved for `key` in resume_dir, or None."""
        if self.resume_dir is None:
            return None
        try:
            return await trio.to_thread.run_sync(self.resume_path(key).read_bytes)
        except FileNotFoundError:
            return None

    async def _save_resume_file(self, key: str, data: bytes) -> None:
        if self.resume_dir is not None:
            await trio.to_thread.run_sync(_write_atomically, self.resume_path(key), data)

    async def _pump(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        # Shielded: resume data is saved while the session ends, and that needs alerts. The
        # owner cancels this scope last.
        with trio.CancelScope(shield=True) as scope:
            task_status.started(scope)
            while True:
                _drain(self._alert_fd)
                for alert in self._session.pop_alerts():
                    self._dispatch(alert)
                await trio.lowlevel.wait_readable(self._alert_fd)

    def _dispatch(self, alert: lt.alert) -> None:
        if isinstance(alert, lt.torrent_alert):
            torrent = self._by_handle.get(alert.handle)
            if torrent is not None:
                torrent._on_alert(alert)
        elif isinstance(alert, lt.alerts_dropped_alert):
            log.warning("libtorrent dropped alerts: the alert queue was full")
        elif isinstance(alert, lt.listen_failed_alert):
            log.error("libtorrent: %s", alert.message())

    async def _save_all(self) -> None:
        async def save(torrent: Torrent) -> None:
            try:
                await torrent.save_resume_data()
            except TorrentError as exc:
                log.warning("could not save resume data of task %s: %s", torrent.key, exc)

        async with trio.open_nursery() as nursery:
            for torrent in self._torrents.values():
                nursery.start_soon(save, torrent)

    def _close(self) -> None:
        self._closed = True
        for torrent in self._torrents.values():
            torrent._close("the torrent session is closed")
        self._by_handle.clear()
        self._session = None


@asynccontextmanager
async def open_torrent_session(
    settings: TorrentSettings | None = None, resume_dir: Path | None = None
) -> AsyncIterator[TorrentSession]:
    """Own one libtorrent session. On exit: pause it, save resume data of every torrent into
    resume_dir (at most SHUTDOWN_SAVE_TIMEOUT, even when cancelled), then destroy the session
    in a thread (no thread is left in libtorrent: that would abort the process at exit).
    An exception from the body comes out as itself, not wrapped in an ExceptionGroup."""
    settings = settings or TorrentSettings()
    if resume_dir is not None:
        await trio.Path(resume_dir).mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    holder: list[lt.session] = []
    try:
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        holder.append(lt.session(settings.settings_pack()))
        holder[0].set_alert_fd(write_fd)
        ts = TorrentSession(holder[0], read_fd, resume_dir)
        try:
            async with trio.open_nursery() as nursery:
                pump_scope = await nursery.start(ts._pump)
                try:
                    yield ts
                finally:
                    with trio.move_on_after(SHUTDOWN_SAVE_TIMEOUT) as saving:
                        saving.shield = True
                        holder[0].pause()  # no byte lands after the resume data is taken
                        if ts.resume_dir is not None:
                            await ts._save_all()
                    pump_scope.cancel()
        except BaseExceptionGroup as group:
            # The body's exception passes through the nursery; hand it back unwrapped.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            ts._close()
    finally:
        with trio.CancelScope(shield=True):
            # The last reference goes in a thread: the destructor joins libtorrent's threads.
            await trio.to_thread.run_sync(holder.clear)
        os.close(read_fd)
        os.close(write_fd)


def _with_resume_data(
    key: str, magnet: lt.add_torrent_params, data: bytes
) -> tuple[lt.add_torrent_params, dict[int, str]]:
    try:
        params = lt.read_resume_data(data)
    except RuntimeError as exc:
        log.warning("ignoring resume data of task %s: %s", key, lt_message(exc))
        return magnet, {}
    ours, theirs = magnet.info_hashes, params.info_hashes
    same_v1 = ours.has_v1() and theirs.has_v1() and ours.v1 == theirs.v1
    same_v2 = ours.has_v2() and theirs.has_v2() and ours.v2 == theirs.v2
    if not (same_v1 or same_v2):
        log.warning("ignoring resume data of task %s: it is for another torrent", key)
        return magnet, {}
    params.peers = list(params.peers) + list(magnet.peers)
    params.trackers = list(dict.fromkeys([*params.trackers, *magnet.trackers]))
    return params, dict(params.renamed_files)


def _info_hash(hashes) -> str:
    return str(hashes.v1) if hashes.has_v1() else str(hashes.v2)[:40]


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _write_atomically(path: Path, data: bytes) -> None:
    # A unique temporary name: two saves may overlap (the periodic one and the one at
    # completion), and a shared name made one of them fail its rename with ENOENT.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
