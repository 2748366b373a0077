"""The JSON-RPC method tables of A.

`public_methods` is what browsers and client scripts call (`POST /rpc`, websocket `/ws`);
`worker_methods` is what a worker calls on its `/worker` link. Handlers are thin: they check
what the connection may do and hand over to the task service or the signaling relay.
"""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass, field
from typing import Any

import rpc

from . import __version__, errors
from .signaling import StreamSessions

OPENRPC_TITLE = "TorrentM3U8 service A"
FILES_PAGE = 1000  # the most files one task.files call returns


@dataclass
class Connection:
    """What a public handler knows about its caller.

    Over HTTP every request is its own connection; over `/ws` one object lives as long as the
    socket, so stream sessions can be bound to it and events pushed to it.
    """

    authorized: bool
    peer: Any = None  # rpc.Peer for websockets
    subscribed: bool = False
    key: object = field(default_factory=object)


def public_methods(service, sessions: StreamSessions, registry, conn: Connection, *, api_token):
    methods = rpc.Methods()

    def guard() -> None:
        if not conn.authorized:
            raise errors.unauthorized("API token")

    def owner() -> object | None:
        # Read at call time: /ws sets conn.peer only after building these methods.
        return conn.key if conn.peer is not None else None

    async def notify(method: str, params: dict[str, Any]) -> None:
        if conn.peer is not None:
            await conn.peer.notify(method, params)

    @methods.add(name="auth")
    async def auth(token: str) -> bool:
        """Authenticate a websocket with the API token (when A has one)."""
        if api_token is None or hmac.compare_digest(token.encode(), api_token.encode()):
            conn.authorized = True
            return True
        raise errors.unauthorized("API token")

    @methods.add(name="task.add")
    async def task_add(magnet: str) -> dict:
        """Add a task from a magnet link; the same info hash returns the existing task."""
        guard()
        return await service.add(magnet)

    @methods.add(name="task.get")
    async def task_get(id: str) -> dict:
        """A task with its files, progress and HLS renditions."""
        guard()
        return await service.get(id)

    @methods.add(name="task.files")
    async def task_files(id: str, offset: int = 0, limit: int = FILES_PAGE) -> dict:
        """A page of a task's files in index order: {files, total}. A task lists only its
        first files and its videos; this pages through all of them."""
        guard()
        if offset < 0 or not 1 <= limit <= FILES_PAGE:
            raise rpc.InvalidParams(f"offset must be >= 0 and limit 1 to {FILES_PAGE}")
        return await service.files(id, offset, limit)

    @methods.add(name="task.list")
    async def task_list() -> list:
        """Every task, newest first."""
        guard()
        return await service.list()

    @methods.add(name="task.remove")
    async def task_remove(id: str) -> bool:
        """Remove a task; its worker stops it and deletes its files."""
        guard()
        return await service.remove(id)

    @methods.add(name="task.retry")
    async def task_retry(id: str) -> dict:
        """Queue a failed task again."""
        guard()
        return await service.retry(id)

    @methods.add(name="worker.list")
    async def worker_list() -> list:
        """Workers A knows: id, connected, last_seen, version, tasks."""
        guard()
        load = await service.db.counts_by_worker()
        return [{**w, "tasks": load.get(w["id"], 0)} for w in registry.list()]

    @methods.add(name="events.subscribe")
    async def events_subscribe() -> bool:
        """Websocket only: receive task.updated, task.removed and worker.updated notifications."""
        guard()
        if conn.peer is None:
            raise rpc.InvalidRequest("events.subscribe needs the websocket /ws")
        conn.subscribed = True
        return True

    @methods.add(name="stream.open")
    async def stream_open(task_id: str, file_index: int) -> dict:
        """Start a P2P stream of a playable file: returns session_id and the ICE servers."""
        guard()
        return await sessions.open(task_id, file_index, owner=owner(), notify=notify)

    @methods.add(name="stream.offer")
    async def stream_offer(session_id: str, sdp: str) -> dict:
        """Relay the browser's SDP offer to the worker; returns the worker's answer {sdp}."""
        guard()
        return await sessions.offer(session_id, sdp, owner=owner())

    @methods.add(name="stream.candidate")
    async def stream_candidate(session_id: str, candidate: dict | None = None) -> None:
        """Relay one trickled ICE candidate of the browser to the worker."""
        guard()
        await sessions.candidate(session_id, candidate, owner=owner())

    @methods.add(name="stream.seek")
    async def stream_seek(session_id: str, position: float) -> dict:
        """Play from `position` seconds, even past what has downloaded: returns {playlist,
        start}, the rendition to load over the session's data channel (a path under its root)
        and the media time of that playlist's time 0."""
        guard()
        if not math.isfinite(position) or position < 0:
            raise rpc.InvalidParams(f"position must be a number of seconds >= 0, not {position}")
        return await sessions.seek(session_id, float(position), owner=owner())

    @methods.add(name="stream.close")
    async def stream_close(session_id: str) -> None:
        """End a stream session."""
        guard()
        await sessions.close(session_id, owner=owner())

    methods.add_discover(title=OPENRPC_TITLE, version=__version__)
    return methods


def worker_methods(service, sessions: StreamSessions, worker_id: str):
    """Methods a worker calls once it has said hello (the registry handles `worker.hello`)."""
    methods = rpc.Methods()

    @methods.add(name="task.metadata")
    async def task_metadata(
        task_id: str,
        name: str,
        info_hash: str,
        files: list,
        trackers: list | None = None,
        report_id: str | None = None,
    ) -> None:
        """The torrent's metadata: name, info hash, trackers, files."""
        await service.report_metadata(
            worker_id,
            task_id,
            report_id=report_id,
            name=name,
            info_hash=info_hash,
            trackers=trackers or [],
            files=files,
        )

    @methods.add(name="task.more_files")
    async def task_more_files(task_id: str, files: list, report_id: str | None = None) -> None:
        """More of the file list that task.metadata started, for a list too long for one
        message."""
        await service.report_more_files(worker_id, task_id, report_id=report_id, files=files)

    @methods.add(name="task.progress")
    async def task_progress(
        task_id: str,
        percent: float,
        download_rate: float = 0,
        upload_rate: float = 0,
        peers: int = 0,
        downloaded: int = 0,
        total: int = 0,
        eta: float | None = None,
        phase: str | None = None,
        report_id: str | None = None,
    ) -> None:
        """Download progress, every few seconds."""
        await service.report_progress(
            worker_id,
            task_id,
            percent=percent,
            download_rate=download_rate,
            upload_rate=upload_rate,
            peers=peers,
            downloaded=downloaded,
            total=total,
            eta=eta,
        )

    @methods.add(name="task.state")
    async def task_state(
        task_id: str, state: str, error: str | None = None, report_id: str | None = None
    ) -> None:
        """A state change on the worker (downloading, completed, transcoding, failed)."""
        await service.report_state(worker_id, task_id, state, error, report_id=report_id)

    @methods.add(name="task.transcode_progress")
    async def task_transcode_progress(
        task_id: str, file_index: int, percent: float, report_id: str | None = None
    ) -> None:
        """FFmpeg's progress on one video file."""
        await service.report_transcode(worker_id, task_id, file_index, percent)

    @methods.add(name="task.hls_ready")
    async def task_hls_ready(
        task_id: str,
        file_index: int,
        playlist: str,
        duration: float,
        segments: int,
        live: bool = False,
        media_duration: float | None = None,
        report_id: str | None = None,
    ) -> None:
        """An HLS rendition exists for a file (live: still growing; media_duration: the whole
        video's, in seconds)."""
        if media_duration is not None and not (
            math.isfinite(media_duration) and media_duration > 0
        ):
            media_duration = None  # an unknown duration, not a reason to lose the rendition
        await service.report_hls(
            worker_id,
            task_id,
            report_id=report_id,
            file_index=file_index,
            playlist=playlist,
            duration=duration,
            segments=segments,
            live=live,
            media_duration=media_duration,
        )

    @methods.add(name="rtc.candidate")
    async def rtc_candidate(session_id: str, candidate: dict | None = None) -> None:
        """One of the worker's ICE candidates for a stream session."""
        await sessions.from_worker(worker_id, session_id, candidate)

    return methods
