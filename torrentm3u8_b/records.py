"""B's own record of the tasks it holds, so a restart (even after `kill -9`) resumes them.

One small sqlite file, `<data>/worker.sqlite3`. Each write is one short transaction; every
call runs in a worker thread (`trio.to_thread`) so the trio thread never touches sqlite.
The outbox of reports A has not acknowledged lives here too (see `link.Outbox`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger("torrentm3u8.b.records")

SCHEMA = [
    # version 1
    """
    CREATE TABLE tasks (
        task_id TEXT PRIMARY KEY,
        magnet TEXT NOT NULL,
        state TEXT NOT NULL,
        info_hash TEXT,
        error TEXT,
        info TEXT,            -- JSON: name, files, trackers (after metadata)
        hls TEXT NOT NULL DEFAULT '[]',  -- JSON: [{file_index, playlist, duration, segments}]
        added_at REAL NOT NULL
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,
        body TEXT NOT NULL    -- JSON list of pending reports, replaced whole
    );
    """,
]


@dataclass
class TaskRecord:
    task_id: str
    magnet: str
    state: str
    info_hash: str | None = None
    error: str | None = None
    info: dict[str, Any] | None = None
    hls: list[dict[str, Any]] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "info_hash": self.info_hash,
            "state": self.state,
            "error": self.error,
            "hls": self.hls,
        }


class Records:
    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._call_sync(self._migrate)
        # Read here, in the thread that opens the records, so that the Outbox built on them
        # in the trio thread gets its reports without touching sqlite.
        self._stored_outbox = self._call_sync(self._read_outbox)
        # The outbox is saved on every change from the trio thread: a writer thread takes the
        # latest snapshot so the trio thread never waits on sqlite.
        self._outbox_wake = threading.Condition()
        self._outbox_pending: str | None = None
        self._outbox_stop = False
        self._writer = threading.Thread(target=self._write_outbox, name="outbox", daemon=True)
        self._writer.start()

    def _call_sync(self, fn, *args):
        with self._lock:
            return fn(*args)

    async def _call(self, fn, *args):
        return await trio.to_thread.run_sync(self._call_sync, fn, *args)

    def _migrate(self) -> None:
        c = self._conn
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        version = c.execute("PRAGMA user_version").fetchone()[0]
        for number, ddl in enumerate(SCHEMA[version:], start=version + 1):
            c.executescript(f"BEGIN; {ddl}; PRAGMA user_version={number}; COMMIT;")

    def close(self) -> None:
        with self._outbox_wake:
            self._outbox_stop = True
            self._outbox_wake.notify()
        self._writer.join()  # writes the last snapshot first
        with self._lock:
            self._conn.close()

    # ---- tasks ---------------------------------------------------------------------------

    async def add(self, task_id: str, magnet: str) -> None:
        def q():
            self._conn.execute(
                "INSERT OR IGNORE INTO tasks (task_id, magnet, state, added_at)"
                " VALUES (?, ?, 'downloading', strftime('%s','now'))",
                (task_id, magnet),
            )

        await self._call(q)

    async def update(self, task_id: str, **fields: Any) -> None:
        cols = []
        values = []
        for key, value in fields.items():
            if key not in ("state", "info_hash", "error", "info", "hls", "magnet"):
                raise ValueError(f"unknown task record field {key!r}")
            cols.append(f"{key} = ?")
            values.append(json.dumps(value) if key in ("info", "hls") else value)

        def q():
            self._conn.execute(
                f"UPDATE tasks SET {', '.join(cols)} WHERE task_id = ?", (*values, task_id)
            )

        await self._call(q)

    async def remove(self, task_id: str) -> None:
        await self._call(
            lambda: self._conn.execute("DELETE FROM tasks WHERE task_id = ?", (task_id,))
        )

    async def get(self, task_id: str) -> TaskRecord | None:
        rows = await self._call(self._select, "WHERE task_id = ?", (task_id,))
        return rows[0] if rows else None

    async def all(self) -> list[TaskRecord]:
        return await self._call(self._select, "ORDER BY added_at", ())

    def _select(self, where: str, args: tuple) -> list[TaskRecord]:
        rows = self._conn.execute(
            "SELECT task_id, magnet, state, info_hash, error, info, hls FROM tasks " + where, args
        ).fetchall()
        return [
            TaskRecord(
                task_id=r[0],
                magnet=r[1],
                state=r[2],
                info_hash=r[3],
                error=r[4],
                info=json.loads(r[5]) if r[5] else None,
                hls=json.loads(r[6] or "[]"),
            )
            for r in rows
        ]

    # ---- outbox persistence (link.Outbox store protocol) -------------------------------------

    def load(self) -> list[dict[str, Any]]:
        """The outbox as stored when the records were opened (no sqlite call: see __init__)."""
        return list(self._stored_outbox)

    def _read_outbox(self) -> list[dict[str, Any]]:
        row = self._conn.execute("SELECT body FROM outbox WHERE seq = 1").fetchone()
        return json.loads(row[0]) if row else []

    def save(self, reports: list[dict[str, Any]]) -> None:
        """Queue the outbox snapshot for the writer thread (never blocks on sqlite)."""
        body = json.dumps(reports)
        with self._outbox_wake:
            self._outbox_pending = body
            self._outbox_wake.notify()

    def _write_outbox(self) -> None:
        while True:
            with self._outbox_wake:
                while self._outbox_pending is None and not self._outbox_stop:
                    self._outbox_wake.wait()
                body, self._outbox_pending = self._outbox_pending, None
                stop = self._outbox_stop
            if body is not None:
                try:
                    self._call_sync(
                        lambda body=body: self._conn.execute(
                            "INSERT INTO outbox (seq, body) VALUES (1, ?)"
                            " ON CONFLICT(seq) DO UPDATE SET body = excluded.body",
                            (body,),
                        )
                    )
                except sqlite3.Error as exc:  # e.g. disk full: the next snapshot tries again
                    log.warning("could not save the outbox: %s", exc)
            if stop:
                return


@asynccontextmanager
async def open_records(path: Path) -> AsyncIterator[Records]:
    records = await trio.to_thread.run_sync(Records, Path(path))
    try:
        yield records
    finally:
        records.close()
