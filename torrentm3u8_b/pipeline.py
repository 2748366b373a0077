"""One task on B, from magnet to HLS: the steps and what is reported to A at each.

    task.start ─▶ add magnet ─▶ metadata (timeout) ─▶ task.metadata (+ task.more_files)
               ─▶ download the video files ─▶ task.progress every PROGRESS_INTERVAL
                  (meanwhile the largest video's live HLS: task.hls_ready live=True, and
                  seek renditions on demand: seeking.py)
               ─▶ task.state completed ─▶ task.state transcoding (until every video has
                  its HLS; the live one is final at its ENDLIST) ─▶ per video:
                  task.transcode_progress, task.hls_ready ─▶ (A marks the task playable)

Any step failing ends in `task.state failed` with a readable reason; B keeps running.
Reports go through the outbox, so a report made while A is away is delivered after reconnect.
Making HLS from a finished file, and a live run that re-encodes, hold the worker's transcode
slot; a live remux and seek renditions do not. `task.hls_ready` entries carry
`media_duration` (the probe's duration of the whole video) when it is known.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import trio

import rpc

from .paths import hls_dir, task_dir
from .piece_server import unwrapped
from .progressive import LiveFile, LiveRendition, make_live_hls
from .records import Records, TaskRecord
from .seeking import SeekRuns, seek
from .torrents import TorrentError
from .transcode import TranscodeError, is_complete_rendition, make_hls, probe

log = logging.getLogger("torrentm3u8.b.tasks")


class TaskFailed(Exception):
    """A task cannot go on; the message is shown to the user as the task's error."""


Report = Callable[..., None]  # report(method, coalesce_key=None, **params)

# The most JSON bytes of file entries in one report: a torrent with tens of thousands of files
# goes to A as task.metadata plus task.more_files reports, each well inside the link's limit.
FILE_LIST_PART_BYTES = 256 * 1024


def file_list_parts(files: list[dict], max_bytes: int = FILE_LIST_PART_BYTES) -> list[list]:
    """`files` cut into consecutive parts of at most `max_bytes` of JSON each, as the link
    encodes it (a part holds at least one entry); [[]] for no files, so there is always a
    first part."""
    parts: list[list] = [[]]
    size = 2  # []
    for entry in files:
        entry_size = rpc.encoded_size(entry)
        if parts[-1] and size + 1 + entry_size > max_bytes:
            parts.append([])
            size = 2
        size += entry_size + (1 if parts[-1] else 0)  # and a comma after the first
        parts[-1].append(entry)
    return parts


class TorrentStatus(Protocol):
    def status(self) -> dict[str, Any]: ...


def progress_params(torrent: TorrentStatus, task_id: str, phase: str = "data") -> dict[str, Any]:
    s = torrent.status()
    return {
        "task_id": task_id,
        "phase": phase,
        "percent": round(float(s["percent"]), 2),
        "download_rate": int(s["download_rate"]),
        "upload_rate": int(s["upload_rate"]),
        "peers": int(s["peers"]),
        "downloaded": int(s["downloaded"]),
        "total": int(s["total"]),
        "eta": s.get("eta"),
    }


async def report_progress_every(
    torrent: TorrentStatus, task_id: str, report: Report, interval: float
) -> None:
    """Report download progress now and every `interval` seconds until cancelled."""
    while True:
        report("task.progress", f"progress:{task_id}", **progress_params(torrent, task_id))
        await trio.sleep(interval)


class TaskPipeline:
    """Runs one task; `Worker` owns one per task and cancels it on remove or shutdown."""

    def __init__(self, worker, record: TaskRecord) -> None:
        self.w = worker
        self.config = worker.config
        self.records: Records = worker.records
        self.record = record
        self.task_id = record.task_id
        self.dir = task_dir(self.config.data_dir, self.task_id)
        self.torrent = None
        self._live_entries: dict[int, dict[str, Any]] = {}
        self._live_changed = trio.Event()
        self._live_files: dict[int, LiveFile] = {}  # live runs in progress, by file index
        self._media_durations: dict[int, float] = {}  # seconds, from the live runs' probes
        self.seeks: SeekRuns | None = None

    def report(self, method: str, coalesce_key: str | None = None, **params: Any) -> None:
        self.w.report(method, coalesce_key=coalesce_key, **params)

    async def set_state(self, state: str, error: str | None = None) -> None:
        self.record.state = state
        self.record.error = error
        try:
            await self.records.update(self.task_id, state=state, error=error)
        except sqlite3.Error as exc:  # e.g. B's disk is full: A must still hear of the state
            log.warning("task %s: could not record state %s: %s", self.task_id, state, exc)
        params: dict[str, Any] = {"task_id": self.task_id, "state": state}
        if error is not None:
            params["error"] = error
        self.report("task.state", **params)

    async def run(self) -> None:
        """Run the task to its end; a failure becomes `task.state failed` with the reason.

        Resume data is saved periodically while downloading and by the torrent session when B
        stops, so a restart does not fetch again what is on disk.
        """
        try:
            with unwrapped():
                async with trio.open_nursery() as seek_runs:  # they end with the pipeline
                    self.seeks = SeekRuns(seek_runs)
                    await self._run()
        except (TaskFailed, *self.w.failures) as exc:
            log.warning("task %s failed: %s", self.task_id, exc)
            await self.set_state("failed", str(exc) or type(exc).__name__)
            await self._drop_torrent(delete_files=False)

    async def _drop_torrent(self, *, delete_files: bool) -> None:
        if self.torrent is not None:
            self.torrent = None
            await self.w.torrents.remove(self.task_id, delete_files=delete_files)

    async def _run(self) -> None:
        cfg = self.config
        self.dir.mkdir(parents=True, exist_ok=True)
        videos = [h["file_index"] for h in self.record.hls]
        if self.record.state == "playable" and self._renditions_complete(videos):
            log.info("task %s: HLS already complete on disk", self.task_id)
            return
        resume = await self.w.torrents.load_resume_data(self.task_id)
        self.torrent = await self.w.torrents.add_magnet(
            self.task_id, self.record.magnet, self.dir / "files", resume_data=resume
        )
        t = self.torrent
        with trio.move_on_after(cfg.metadata_timeout) as waited:
            await t.wait_metadata()
        if waited.cancelled_caught:
            await self._drop_torrent(delete_files=True)
            raise TaskFailed(
                f"no peer sent the torrent's metadata within {cfg.metadata_timeout:g} s"
            )
        info = t.info()
        if self.record.info is None:
            self.record.info = info
            self.record.info_hash = info["info_hash"]
            await self.records.update(self.task_id, info=info, info_hash=info["info_hash"])
            first, *more = file_list_parts(info["files"])
            self.report(
                "task.metadata",
                task_id=self.task_id,
                name=info["name"],
                info_hash=info["info_hash"],
                trackers=info["trackers"],
                files=first,
            )
            for part in more:
                self.report("task.more_files", task_id=self.task_id, files=part)
        video_files = [f for f in info["files"] if f["is_video"]]
        if not video_files:
            raise TaskFailed("no playable video in this torrent")
        wanted = [f["index"] for f in (info["files"] if cfg.download_all_files else video_files)]
        t.select_files(wanted)

        if self.record.state == "downloading":
            with unwrapped():  # a failure comes out as itself, for run()
                live_file, live_scope = None, trio.CancelScope()
                async with trio.open_nursery() as live:
                    if cfg.watch_while_downloading:
                        main = max(video_files, key=lambda f: f["size"])  # not a sample clip
                        out = hls_dir(cfg.data_dir, self.task_id, main["index"])
                        live_file = LiveFile(t, main["index"], main["size"], out)
                        live.start_soon(self._make_live_rendition, live_file, live_scope)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            report_progress_every,
                            t,
                            self.task_id,
                            self.report,
                            cfg.progress_interval,
                        )
                        nursery.start_soon(self._save_resume_every, cfg.resume_save_interval)
                        await t.wait_complete()
                        nursery.cancel_scope.cancel()
                    self.report(
                        "task.progress",
                        f"progress:{self.task_id}",
                        **progress_params(t, self.task_id),
                    )
                    await t.save_resume_data()
                    log.info("task %s: download complete", self.task_id)
                    await self.set_state("completed")
                    if live_file is not None:  # the HLS step ends at ENDLIST: A shows it
                        if not live_file.started:  # still waiting for the transcode slot:
                            live_scope.cancel()  # the complete-file path does it instead
                        await self.set_state("transcoding")
            # The live rendition (if any) has ended: _make_rendition finds it complete and
            # reports it final, after `completed`, so A can make the task playable.

        for f in video_files:
            await self._make_rendition(t, f["index"])
        if self.record.state != "playable":
            self.record.state = "playable"
            await self.records.update(self.task_id, state="playable")

    async def _make_live_rendition(self, live: LiveFile, scope: trio.CancelScope) -> None:
        """HLS of `live`'s file while it downloads (see progressive.py). A failure is logged
        and left to the complete-file path, which runs once the download is done."""
        file_index = live.file_index

        def on_live(now: LiveRendition) -> None:
            if live.media is not None and live.media.duration:
                self._media_durations[file_index] = live.media.duration
            entry = {
                "file_index": file_index,
                "playlist": now.playlist,
                "duration": now.duration,
                "segments": now.segments,
                "live": True,
            }
            self._live_entries[file_index] = entry | self._media_duration_field(file_index)
            self._live_changed.set()

        self._live_files[file_index] = live
        try:
            with scope:
                with unwrapped():
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._store_live_entries)
                        await make_live_hls(
                            live,
                            on_live=on_live,
                            on_progress=partial(self._report_transcode, file_index),
                            slot=self.w.transcode_limit,
                        )
                        nursery.cancel_scope.cancel()
                log.info("task %s: live HLS of file %d ended", self.task_id, file_index)
        except (TranscodeError, TorrentError, OSError) as exc:
            log.warning("task %s: no live HLS of file %d: %s", self.task_id, file_index, exc)
        finally:
            self._live_files.pop(file_index, None)
        if scope.cancelled_caught:
            log.info(
                "task %s: file %d downloaded before a transcode slot was free",
                self.task_id,
                file_index,
            )

    def _report_transcode(self, file_index: int, percent: float) -> None:
        """FFmpeg's progress on one file, for A (coalesced: only the latest is kept)."""
        self.report(
            "task.transcode_progress",
            coalesce_key=f"transcode:{self.task_id}:{file_index}",
            task_id=self.task_id,
            file_index=file_index,
            percent=round(percent, 1),
        )

    def _media_duration_field(self, file_index: int) -> dict[str, float]:
        """{"media_duration": seconds} when this run or the record knows it, else {}."""
        if file_index in self._media_durations:
            return {"media_duration": self._media_durations[file_index]}
        for h in self.record.hls:
            if h["file_index"] == file_index and h.get("media_duration"):
                return {"media_duration": h["media_duration"]}
        return {}

    async def seek(self, file_index: int, position: float) -> dict[str, Any]:
        """`task.seek` for one of this task's files (see seeking.py); raises SeekError."""
        entry = next((h for h in self.record.hls if h["file_index"] == file_index), None)
        return await seek(
            entry,
            position,
            out_dir=hls_dir(self.config.data_dir, self.task_id, file_index),
            live=self._live_files.get(file_index),
            runs=self.seeks,
            what=f"file {file_index} of task {self.task_id}",
        )

    async def _store_live_entries(self) -> None:
        """Record each growing rendition, then tell A: rtc.offer serves what the record lists,
        so a viewer A lets in finds it here."""
        while True:
            await self._live_changed.wait()
            self._live_changed = trio.Event()
            live = dict(self._live_entries)
            kept = [h for h in self.record.hls if h["file_index"] not in live]
            self.record.hls = kept + list(live.values())
            await self.records.update(self.task_id, hls=self.record.hls)
            for file_index, entry in live.items():
                self.report(
                    "task.hls_ready",
                    coalesce_key=f"hls:{self.task_id}:{file_index}",
                    task_id=self.task_id,
                    **entry,
                )

    async def _save_resume_every(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            await self.torrent.save_resume_data()

    def _renditions_complete(self, indexes: list[int]) -> bool:
        return bool(indexes) and all(
            is_complete_rendition(hls_dir(self.config.data_dir, self.task_id, i)) for i in indexes
        )

    async def _make_rendition(self, t, file_index: int) -> None:
        out = hls_dir(self.config.data_dir, self.task_id, file_index)
        result = is_complete_rendition(out)
        known = self._media_duration_field(file_index)
        if result is None:
            async with self.w.transcode_limit:
                if self.record.state == "completed":
                    await self.set_state("transcoding")
                log.info("task %s: making HLS of file %d", self.task_id, file_index)
                path = str(t.file_disk_path(file_index))
                media = await probe(path)
                known = {"media_duration": media.duration} if media.duration else {}
                report = partial(self._report_transcode, file_index)
                result = await make_hls(path, out, on_progress=report, media=media)
        elif not known:  # made by an earlier run that did not record it
            try:
                media = await probe(str(t.file_disk_path(file_index)))
                known = {"media_duration": media.duration} if media.duration else {}
            except TranscodeError as exc:
                log.warning("task %s: no duration of file %d: %s", self.task_id, file_index, exc)
        entry = {
            "file_index": file_index,
            "playlist": result.playlist,
            "duration": result.duration,
            "segments": result.segments,
            **known,
        }
        self.record.hls = [h for h in self.record.hls if h["file_index"] != file_index] + [entry]
        await self.records.update(self.task_id, hls=self.record.hls)
        self.report("task.hls_ready", task_id=self.task_id, live=False, **entry)
        log.info(
            "task %s: HLS of file %d ready (%d segments, %.1f s)",
            self.task_id,
            file_index,
            result.segments,
            result.duration,
        )
