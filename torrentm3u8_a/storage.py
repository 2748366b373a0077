"""Service A's system of record: one sqlite3 file holding tasks, files, progress and HLS.

    async with open_storage(data_dir / "a.sqlite") as db:
        task, created = await db.add_task(parse_magnet(text))

One connection, owned by one dedicated thread: every sqlite call runs there, never on the trio
thread (the connection keeps `check_same_thread`, so a stray call elsewhere would raise). A job
that has started finishes even if its caller is cancelled, so a write is never left half done;
each write is one `BEGIN IMMEDIATE ... COMMIT` transaction. WAL with synchronous=NORMAL: a
committed write survives the process being killed.

The schema and its migrations live in `_schema` (versioned with `PRAGMA user_version`, upgraded
on open); `SCHEMA_VERSION` and `MIGRATIONS` are re-exported here. `_rows` turns rows into the
task dicts the API returns.

Worker reports carry a `report_id`: the setters take it and record it in `applied_reports` in the
same transaction as the write, so a report delivered twice has exactly one effect.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import outcome
import trio

from . import _rows, states
from ._rows import FILES_IN_TASK as FILES_IN_TASK
from ._rows import PROGRESS_FIELDS
from ._schema import MIGRATIONS as MIGRATIONS
from ._schema import SCHEMA_VERSION as SCHEMA_VERSION
from ._schema import SchemaError, migrate
from .magnets import Magnet
from .states import ACTIVE_STATES, Phase, State

BUSY_TIMEOUT = 5.0  # seconds a write waits for another connection's lock
TASK_ID_BYTES = 8  # random bytes in a task id: 11 url-safe characters


class StorageError(Exception):
    """Root of the storage errors; `str(exc)` tells the operator what to do."""


class UnknownTask(StorageError, LookupError):
    """No task has this id (it never existed or was removed)."""


class _DbThread:
    """A thread that owns the connection and runs jobs `fn(conn, *args)` one at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self._thread = threading.Thread(
            target=self._serve, name=f"sqlite {os.path.basename(path)}", daemon=True
        )

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, args, deliver = job
            deliver(outcome.capture(fn, self._conn, *args))

    def _open(self, _conn: None) -> None:
        self._conn = _connect(self.path)

    def _close(self, conn: sqlite3.Connection | None) -> None:
        if conn is not None:
            conn.close()
        self._conn = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        await trio.lowlevel.checkpoint_if_cancelled()
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()

        def deliver(result: outcome.Outcome) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        self._jobs.put((fn, args, deliver))
        # Abort.FAILED: a cancelled caller still waits for its job, which cannot be stopped.
        return await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)

    async def start(self) -> None:
        self._thread.start()
        await self.run(self._open)

    async def stop(self) -> None:
        if self._thread.is_alive():
            await self.run(self._close)
            self._jobs.put(None)
            await trio.to_thread.run_sync(self._thread.join)


def _connect(path: str) -> sqlite3.Connection:
    try:
        # Explicit transactions; only the thread that opened the connection may use it.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    except sqlite3.Error as exc:
        raise StorageError(
            f"cannot open the database {path} ({exc}): check that its folder exists and is writable"
        ) from None
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, path)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, SchemaError):
            raise StorageError(str(exc)) from exc.__cause__
        if isinstance(exc, sqlite3.DatabaseError):
            raise StorageError(
                f"{path} is not a usable torrentm3u8 database ({exc}): move it away or point "
                "--data at another folder"
            ) from None
        raise
    return conn


@contextlib.asynccontextmanager
async def open_storage(
    path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
) -> AsyncIterator[Storage]:
    """Open (creating or upgrading) the database at `path`; `clock` gives unix seconds."""
    thread = _DbThread(os.fspath(path))
    try:
        await thread.start()
        yield Storage(thread, clock)
    finally:
        with trio.CancelScope(shield=True):
            await thread.stop()


_KEEP: Any = object()  # "leave this column as it is"


class Storage:
    """The task store. Every method runs its sqlite work on the database thread."""

    def __init__(self, thread: _DbThread, clock: Callable[[], float]) -> None:
        self._thread = thread
        self._clock = clock

    @property
    def path(self) -> str:
        return self._thread.path

    @property
    def thread_ident(self) -> int | None:
        """`threading.get_ident()` of the thread that owns the connection."""
        return self._thread.ident

    async def run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(conn, *args)` on the database thread (for queries this class lacks)."""
        return await self._thread.run(fn, *args)

    # Reads.

    async def get_task(self, task_id: str) -> dict | None:
        return await self._thread.run(_rows.select_one, task_id)

    async def list_tasks(self) -> list[dict]:
        """Every task, newest first."""
        return await self._thread.run(_rows.select, "1", ())

    async def list_files(self, task_id: str, offset: int, limit: int) -> tuple[list[dict], int]:
        """(the task's files in index order from position `offset`, at most `limit` of them;
        how many files the task has). Raises UnknownTask."""
        found = await self._thread.run(_rows.list_files, task_id, offset, limit)
        if found is None:
            raise UnknownTask(f"no task {task_id!r}")
        return found

    async def tasks_in_states(self, wanted: Iterable[str]) -> list[dict]:
        names = [states.to_state(name).value for name in wanted]
        marks = ", ".join("?" * len(names))
        return await self._thread.run(_rows.select, f"t.state IN ({marks})", tuple(names))

    async def tasks_for_worker(self, worker_id: str) -> list[dict]:
        return await self._thread.run(_rows.select, "t.worker_id = ?", (worker_id,))

    async def counts_by_worker(self, wanted: Iterable[str] = ACTIVE_STATES) -> dict[str, int]:
        """{worker_id: number of its tasks in `wanted`}; by default the tasks taking a slot."""
        names = [states.to_state(name).value for name in wanted]
        marks = ", ".join("?" * len(names))
        sql = (
            "SELECT worker_id, COUNT(*) FROM tasks WHERE worker_id IS NOT NULL"
            f" AND state IN ({marks}) GROUP BY worker_id"
        )
        rows = await self._thread.run(_fetch_all, sql, names)
        return {worker_id: count for worker_id, count in rows}

    async def report_applied(self, report_id: str) -> bool:
        sql = "SELECT 1 FROM applied_reports WHERE report_id = ?"
        return bool(await self._thread.run(_fetch_all, sql, (report_id,)))

    # Writes.

    async def add_task(self, magnet: Magnet) -> tuple[dict, bool]:
        """Store a new `waiting` task, or return the one with the same info hash (created False)."""
        return await self._write(_add_task, magnet)

    async def remove_task(self, task_id: str) -> bool:
        """Delete a task with its files, progress and HLS rows; False if there was none."""
        sql = "DELETE FROM tasks WHERE id = ?"
        return await self._write(lambda conn, now: conn.execute(sql, (task_id,)).rowcount > 0)

    async def forget_reports(self, applied_before: float) -> int:
        """Drop report ids applied before this unix time; return how many went."""
        sql = "DELETE FROM applied_reports WHERE applied_at < ?"
        return await self._write(lambda conn, now: conn.execute(sql, (applied_before,)).rowcount)

    async def set_state(
        self,
        task_id: str,
        state: str,
        *,
        error: str | None = None,
        phase: str | None = None,
        worker_id: str | None = _KEEP,
        report_id: str | None = None,
    ) -> dict:
        """Move a task to `state` (raises `states.InvalidTransition` if it may not go there).

        `error` is kept only by `failed`; `phase` only by `downloading`, where it defaults to the
        current phase, else `data` if the files are known, else `metadata`. `worker_id` is left as
        it is unless given (None clears it).
        """
        return await self._write_task(
            task_id, report_id, _set_state, state, error, phase, worker_id
        )

    async def assign_worker(self, task_id: str, worker_id: str | None) -> dict:
        return await self._write_task(task_id, None, _assign_worker, worker_id)

    async def set_metadata(
        self,
        task_id: str,
        name: str,
        info_hash: str | None,
        trackers: Iterable[str] | None,
        files: Iterable[dict],
        *,
        report_id: str | None = None,
    ) -> dict:
        """Record what the torrent holds: files are `{index, path, size, is_video}` (optionally
        `path_on_worker`) and replace any earlier list; a downloading task moves to phase `data`.
        """
        rows = [_file_row(task_id, entry) for entry in files]
        urls = None if trackers is None else list(trackers)
        return await self._write_task(
            task_id, report_id, _set_metadata, name, info_hash, urls, rows
        )

    async def add_files(
        self, task_id: str, files: Iterable[dict], *, report_id: str | None = None
    ) -> dict:
        """Add files to the list `set_metadata` started (a worker sends a long list in parts);
        an entry whose index is already there replaces it."""
        rows = [_file_row(task_id, entry) for entry in files]
        return await self._write_task(task_id, report_id, _add_files, rows)

    async def set_progress(
        self, task_id: str, *, report_id: str | None = None, **fields: Any
    ) -> dict:
        """Update any of percent, download_rate, upload_rate, peers, downloaded, total, eta
        (seconds, None if unknown) and phase (applied only while the task is downloading)."""
        unknown = set(fields) - {*PROGRESS_FIELDS, "phase"}
        if unknown:
            raise TypeError(f"set_progress() got unknown fields: {', '.join(sorted(unknown))}")
        return await self._write_task(task_id, report_id, _set_progress, fields)

    async def set_transcode_progress(
        self, task_id: str, file_index: int, percent: float, *, report_id: str | None = None
    ) -> dict:
        return await self._write_task(task_id, report_id, _set_transcode, file_index, percent)

    async def set_hls(
        self,
        task_id: str,
        file_index: int,
        playlist: str,
        duration: float,
        segments: int,
        live: bool = False,
        media_duration: float | None = None,
        *,
        report_id: str | None = None,
    ) -> dict:
        """Record a file's HLS rendition (again as it grows while `live`); `ready_at` is the
        first time. A final (not live) rendition completes that file's transcode progress.
        `media_duration` is the whole video's (a live rendition lists less)."""
        args = (file_index, playlist, duration, segments, bool(live), media_duration)
        return await self._write_task(task_id, report_id, _set_hls, *args)

    async def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._thread.run(_transaction, self._clock, fn, *args)

    async def _write_task(
        self, task_id: str, report_id: str | None, fn: Callable[..., None], *args: Any
    ) -> dict:
        """Apply `fn(conn, now, task_row, *args)` unless `report_id` was applied before; return
        the task as it is afterwards."""
        return await self._thread.run(
            _transaction, self._clock, _on_task, task_id, report_id, fn, *args
        )


# Everything below runs on the database thread.


def _transaction(
    conn: sqlite3.Connection, clock: Callable[[], float], fn: Callable[..., Any], *args: Any
) -> Any:
    now = clock()
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, now, *args)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _on_task(
    conn: sqlite3.Connection,
    now: float,
    task_id: str,
    report_id: str | None,
    fn: Callable[..., None],
    *args: Any,
) -> dict:
    task = conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if task is None:
        raise UnknownTask(f"no task {task_id!r}")
    if report_id is None or _claim_report(conn, now, report_id):
        fn(conn, now, task, *args)
    return _select_one(conn, task_id)


def _claim_report(conn: sqlite3.Connection, now: float, report_id: str) -> bool:
    """Record `report_id` as applied; False if it already was."""
    inserted = conn.execute(
        "INSERT INTO applied_reports (report_id, applied_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (report_id, now),
    )
    return inserted.rowcount == 1


def _fetch_all(conn: sqlite3.Connection, sql: str, params: Iterable[Any]) -> list[sqlite3.Row]:
    return conn.execute(sql, tuple(params)).fetchall()


def new_task_id() -> str:
    """11 random url-safe characters, never starting with '-': a command line would take such
    an id for an option (`torrentm3u8 show -Xb3...` fails in argparse)."""
    while (task_id := secrets.token_urlsafe(TASK_ID_BYTES)).startswith("-"):
        pass
    return task_id


def _add_task(conn: sqlite3.Connection, now: float, magnet: Magnet) -> tuple[dict, bool]:
    row = conn.execute("SELECT id FROM tasks WHERE info_hash = ?", (magnet.info_hash,)).fetchone()
    if row is not None:
        return _select_one(conn, row["id"]), False
    task_id = new_task_id()
    conn.execute(
        "INSERT INTO tasks (id, magnet, info_hash, name, added_at, updated_at, state)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            task_id,
            magnet.uri,
            magnet.info_hash,
            magnet.dn or magnet.info_hash,
            now,
            now,
            State.WAITING.value,
        ),
    )
    conn.execute("INSERT INTO progress (task_id) VALUES (?)", (task_id,))
    _replace_trackers(conn, task_id, magnet.tr)
    return _select_one(conn, task_id), True


def _set_state(conn, now, task, state, error, phase, worker_id) -> None:
    new = states.to_state(state)
    states.check_transition(task["state"], new)
    new_phase = states.check_phase(new, phase)
    if new == State.DOWNLOADING and new_phase is None:
        if task["state"] == State.DOWNLOADING and task["phase"]:
            new_phase = Phase(task["phase"])
        else:
            has_files = conn.execute("SELECT 1 FROM files WHERE task_id = ?", (task["id"],))
            new_phase = Phase.DATA if has_files.fetchone() else Phase.METADATA
    values = {
        "state": new.value,
        "phase": None if new_phase is None else new_phase.value,
        "error": error if new == State.FAILED else None,
        "worker_id": task["worker_id"] if worker_id is _KEEP else worker_id,
    }
    _update_task(conn, now, task, values)


def _assign_worker(conn, now, task, worker_id) -> None:
    _update_task(conn, now, task, {"worker_id": worker_id})


def _set_metadata(conn, now, task, name, info_hash, trackers, files) -> None:
    values = {"name": name or task["name"]}
    if info_hash and info_hash != task["info_hash"]:
        # A worker may report another spelling of the hash (v2 for a v1 magnet); keep the key
        # the user added the task under if another task already holds the reported one.
        taken = conn.execute("SELECT 1 FROM tasks WHERE info_hash = ?", (info_hash,)).fetchone()
        if taken is None:
            values["info_hash"] = info_hash
    if task["state"] == State.DOWNLOADING:
        values["phase"] = Phase.DATA.value
    _update_task(conn, now, task, values, force=True)
    conn.execute("DELETE FROM files WHERE task_id = ?", (task["id"],))
    _add_files(conn, now, task, files)
    if trackers is not None:
        _replace_trackers(conn, task["id"], trackers)


def _add_files(conn, now, task, files) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO files (task_id, idx, path, size, is_video, path_on_worker)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        files,
    )


def _set_progress(conn, now, task, fields) -> None:
    phase = fields.pop("phase", None)
    values = {}
    if phase is not None and task["state"] == State.DOWNLOADING:
        values["phase"] = states.check_phase(State.DOWNLOADING, phase).value
    _update_task(conn, now, task, values, force=True)
    columns = "".join(f"{name} = ?, " for name in fields)
    conn.execute(
        f"UPDATE progress SET {columns}updated_at = ? WHERE task_id = ?",
        (*fields.values(), now, task["id"]),
    )


def _set_transcode(conn, now, task, file_index, percent) -> None:
    conn.execute(
        "INSERT INTO hls (task_id, file_index, transcode_percent) VALUES (?, ?, ?)"
        " ON CONFLICT (task_id, file_index)"
        " DO UPDATE SET transcode_percent = excluded.transcode_percent",
        (task["id"], file_index, percent),
    )
    _update_task(conn, now, task, {}, force=True)


def _set_hls(conn, now, task, file_index, playlist, duration, segments, live, media_duration):
    conn.execute(
        "INSERT INTO hls (task_id, file_index, playlist, duration, segments, live, ready_at,"
        " media_duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (task_id, file_index) DO UPDATE SET playlist = excluded.playlist,"
        " duration = excluded.duration, segments = excluded.segments, live = excluded.live,"
        " media_duration = coalesce(excluded.media_duration, hls.media_duration),"
        " ready_at = coalesce(hls.ready_at, excluded.ready_at),"
        " transcode_percent = CASE WHEN excluded.live OR hls.transcode_percent IS NULL"
        " THEN hls.transcode_percent ELSE 100.0 END",
        (task["id"], file_index, playlist, duration, segments, live, now, media_duration),
    )
    _update_task(conn, now, task, {}, force=True)


def _update_task(conn, now, task, values: dict, *, force: bool = False) -> None:
    """Write changed columns and bump updated_at; a same-value update writes nothing."""
    changed = {key: value for key, value in values.items() if task[key] != value}
    if not changed and not force:
        return
    columns = "".join(f"{name} = ?, " for name in changed)
    conn.execute(
        f"UPDATE tasks SET {columns}updated_at = ? WHERE id = ?",
        (*changed.values(), now, task["id"]),
    )


def _replace_trackers(conn, task_id: str, urls: Iterable[str]) -> None:
    conn.execute("DELETE FROM trackers WHERE task_id = ?", (task_id,))
    conn.executemany(
        "INSERT INTO trackers (task_id, position, url) VALUES (?, ?, ?)",
        [(task_id, position, url) for position, url in enumerate(urls)],
    )


def _file_row(task_id: str, entry: dict) -> tuple:
    try:
        return (
            task_id,
            int(entry["index"]),
            str(entry["path"]),
            int(entry["size"]),
            bool(entry["is_video"]),
            entry.get("path_on_worker"),
        )
    except KeyError as exc:
        raise ValueError(f"file entry {entry!r} has no {exc.args[0]!r}") from None


def _select_one(conn: sqlite3.Connection, task_id: str) -> dict:
    task = _rows.select_one(conn, task_id)
    if task is None:
        raise UnknownTask(f"no task {task_id!r}")
    return task
