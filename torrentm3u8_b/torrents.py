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
and hands each alert to the `Torrent` (torrent.py) it concerns. Torrents are added in upload
mode so nothing downloads before `select_files`. libtorrent 2.1 already cleans '..' and
absolute paths out of a torrent's file list; what `paths.safe_relpath` would still change is
renamed when the metadata arrives, before a byte is written.
"""

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import libtorrent as lt
import trio

from .torrent import Torrent, TorrentError, lt_message

log = logging.getLogger(__name__)

SHUTDOWN_SAVE_TIMEOUT = 5.0  # seconds: saving resume data of every torrent when the session ends
ALERT_QUEUE_SIZE = 10_000  # alerts kept by libtorrent between two reads
LOOPBACK_RECONNECT = 1  # seconds before retrying a local peer that failed (libtorrent: 60)
RESUME_SUFFIX = ".resume"

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
