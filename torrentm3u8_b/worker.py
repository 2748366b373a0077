"""Service B: holds the tasks A gave it, answers A's calls, keeps the link to A up.

`run_worker(config)` owns every long-lived part: B's records (sqlite), the libtorrent
session, the aiortc thread, one `TaskPipeline` per task and the link to A (reconnecting by
itself). After a restart, even after `kill -9`, every recorded task is resumed from what is on
disk and reported in the hello snapshot. `task.seek` answers where a viewer can play a position
of a video, starting a seek rendition while the file downloads (seeking.py).
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

import rpc

from . import __version__
from .config import WorkerConfig
from .link import Outbox, keep_connected, run_link
from .paths import hls_dir, task_dir
from .pipeline import TaskPipeline
from .records import Records, open_records
from .seeking import NotSeekable, OutsideVideo, SeekFailed, seek
from .torrents import TorrentError, TorrentSettings, open_torrent_session
from .transcode import TranscodeError
from .webrtc import RtcBusy, RtcError, UnknownSession, open_rtc_server

log = logging.getLogger("torrentm3u8.b")

NOT_PLAYABLE = -32003
UNKNOWN_SESSION = -32005
WORKER_BUSY = -32006
STREAM_FAILED = -32011


@contextmanager
def rtc_errors():
    """WebRTC errors as JSON-RPC application errors A can pass on to the viewer."""
    try:
        yield
    except RtcBusy as exc:
        raise rpc.ApplicationError(WORKER_BUSY, str(exc)) from None
    except UnknownSession as exc:
        raise rpc.ApplicationError(UNKNOWN_SESSION, str(exc)) from None
    except RtcError as exc:
        raise rpc.ApplicationError(STREAM_FAILED, f"WebRTC: {exc}") from None


class Worker:
    failures = (TorrentError, TranscodeError, OSError, sqlite3.Error)  # a task fails, not B

    def __init__(self, config: WorkerConfig, records: Records, torrents, rtc, outbox, nursery):
        self.config = config
        self.records = records
        self.torrents = torrents
        self.rtc = rtc
        self.outbox = outbox
        self.transcode_limit = trio.CapacityLimiter(config.transcode_concurrency)
        self._nursery = nursery
        self._running: dict[str, tuple[trio.CancelScope, trio.Event]] = {}
        self._pipelines: dict[str, TaskPipeline] = {}
        self._idle = trio.Event()
        self._idle.set()

    # ---- tasks ---------------------------------------------------------------------------

    def report(self, method: str, coalesce_key: str | None = None, **params: Any) -> None:
        self.outbox.put(method, params, coalesce_key=coalesce_key)

    async def snapshot(self) -> list[dict[str, Any]]:
        return [r.snapshot() for r in await self.records.all()]

    async def resume(self) -> None:
        """Start again every task that was not finished (or whose HLS went missing)."""
        for record in await self.records.all():
            if record.state != "failed":
                self._spawn(record)

    def _spawn(self, record) -> None:
        if record.task_id in self._running:
            return
        scope = trio.CancelScope()
        done = trio.Event()
        self._running[record.task_id] = (scope, done)
        self._idle = trio.Event()

        pipeline = self._pipelines[record.task_id] = TaskPipeline(self, record)

        async def run() -> None:
            try:
                with scope:
                    await pipeline.run()
            finally:
                self._running.pop(record.task_id, None)
                self._pipelines.pop(record.task_id, None)
                done.set()
                if not self._running:
                    self._idle.set()

        self._nursery.start_soon(run)

    async def wait_idle(self) -> None:
        """Wait until no task pipeline runs (every task playable, failed or removed)."""
        await self._idle.wait()

    async def _stop(self, task_id: str) -> None:
        running = self._running.get(task_id)
        if running is not None:
            scope, done = running
            scope.cancel()
            await done.wait()

    async def start_task(self, task_id: str, magnet: str) -> None:
        task_dir(self.config.data_dir, task_id)  # validates the id
        record = await self.records.get(task_id)
        if record is None:
            await self.records.add(task_id, magnet)
            record = await self.records.get(task_id)
        elif record.state == "failed":
            await self.records.update(task_id, state="downloading", error=None)
            record.state, record.error = "downloading", None
        log.info("task %s: started", task_id)
        self._spawn(record)

    async def remove_task(self, task_id: str, *, delete_files: bool) -> None:
        await self._stop(task_id)
        if task_id in self.torrents.keys():
            await self.torrents.remove(task_id, delete_files=delete_files)
        if delete_files:  # first: on a full disk, the record's delete needs the space back
            folder = task_dir(self.config.data_dir, task_id)
            await trio.to_thread.run_sync(partial(shutil.rmtree, folder, ignore_errors=True))
        await self.records.remove(task_id)
        log.info("task %s: removed%s", task_id, " with its files" if delete_files else "")

    async def seek(self, task_id: str, file_index: int, position: float) -> dict[str, Any]:
        """Where to play `position` (seconds) of file `file_index`: {"playlist": path under
        the file's HLS folder, "start": the video time of that playlist's time 0}. Raises
        rpc errors: NOT_PLAYABLE, InvalidParams (position), STREAM_FAILED (no seek rendition
        in time)."""
        if isinstance(file_index, bool) or not isinstance(file_index, int) or file_index < 0:
            raise rpc.InvalidParams(f"file_index must be an integer >= 0, not {file_index!r}")
        try:
            pipeline = self._pipelines.get(task_id)
            if pipeline is not None:
                return await pipeline.seek(file_index, position)
            record = await self.records.get(task_id)
            if record is None:
                raise NotSeekable(f"this worker has no task {task_id}")
            entry = next((h for h in record.hls if h["file_index"] == file_index), None)
            what = f"file {file_index} of task {task_id}"
            out = hls_dir(self.config.data_dir, task_id, file_index)
            return await seek(entry, position, out_dir=out, live=None, runs=None, what=what)
        except NotSeekable as exc:
            raise rpc.ApplicationError(NOT_PLAYABLE, str(exc)) from None
        except OutsideVideo as exc:
            raise rpc.InvalidParams(str(exc)) from None
        except SeekFailed as exc:
            raise rpc.ApplicationError(STREAM_FAILED, str(exc)) from None

    # ---- what A may call -----------------------------------------------------------------

    def methods(self) -> rpc.Methods:
        methods = rpc.Methods()

        @methods.add(name="worker.ping")
        async def ping() -> dict:
            """Liveness check from A."""
            return {"time": trio.current_time()}

        @methods.add(name="task.start")
        async def task_start(task_id: str, magnet: str) -> None:
            """Download a magnet and make HLS of its videos."""
            await self.start_task(task_id, magnet)

        @methods.add(name="task.cancel")
        async def task_cancel(task_id: str) -> None:
            """Stop a task, keep its files."""
            await self.remove_task(task_id, delete_files=False)

        @methods.add(name="task.remove")
        async def task_remove(task_id: str, delete_files: bool = True) -> None:
            """Stop a task and (by default) delete its files."""
            await self.remove_task(task_id, delete_files=delete_files)

        @methods.add(name="task.seek")
        async def task_seek(task_id: str, file_index: int, position: float) -> dict:
            """Where a viewer plays `position` s of a video: the main playlist, or a seek
            rendition started there while the file downloads. {playlist, start}."""
            return await self.seek(task_id, file_index, position)

        @methods.add(name="rtc.offer")
        async def rtc_offer(
            session_id: str,
            task_id: str,
            file_index: int,
            sdp: str,
            ice_servers: list | None = None,
            ice_transport_policy: str = "all",
        ) -> dict:
            """Answer a browser's WebRTC offer for one rendition."""
            record = await self.records.get(task_id)
            if record is None or not any(h["file_index"] == file_index for h in record.hls):
                raise rpc.ApplicationError(
                    NOT_PLAYABLE, f"this worker has no HLS for file {file_index} of {task_id}"
                )
            root = hls_dir(self.config.data_dir, task_id, file_index)
            with rtc_errors():
                answer = await self.rtc.answer(
                    session_id,
                    sdp,
                    root=root,
                    ice_servers=ice_servers or [],
                    ice_transport_policy=ice_transport_policy,
                )
            return {"sdp": answer}

        @methods.add(name="rtc.candidate")
        async def rtc_candidate(session_id: str, candidate: dict | None = None) -> None:
            """A browser's trickled ICE candidate."""
            with rtc_errors():
                await self.rtc.add_candidate(session_id, candidate)

        @methods.add(name="rtc.close")
        async def rtc_close(session_id: str) -> None:
            """The viewer left."""
            with rtc_errors():
                await self.rtc.close(session_id)

        return methods


async def run_worker(config: WorkerConfig, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    data = Path(config.data_dir)
    await trio.Path(data).mkdir(parents=True, exist_ok=True)
    worker_id = await trio.to_thread.run_sync(config.resolve_worker_id)
    settings = TorrentSettings(loopback_only=config.loopback_only)
    async with (
        open_records(data / "worker.sqlite3") as records,
        open_torrent_session(settings, data / "session") as torrents,
        open_rtc_server(
            loopback_only=config.loopback_only,
            max_sessions=config.max_streams,
            idle_timeout=config.stream_idle_timeout,
        ) as rtc,
        trio.open_nursery() as nursery,
    ):
        outbox = Outbox(store=records)
        worker = Worker(config, records, torrents, rtc, outbox, nursery)
        await worker.resume()
        connect = partial(
            run_link,
            config.server,
            token=config.token,
            worker_id=worker_id,
            methods=worker.methods(),
            snapshot=worker.snapshot,
            outbox=outbox,
        )
        nursery.start_soon(keep_connected, connect)
        log.info("worker %s (v%s) started; A at %s", worker_id, __version__, config.server)
        task_status.started(worker)
