"""Service A's database schema: the DDL of each version and the migrations between them.

The schema is versioned with `PRAGMA user_version`. `migrate(conn, path)` upgrades a file on
open by running `MIGRATIONS[v]` for each version `v` it is behind, each in its own
`BEGIN IMMEDIATE ... COMMIT` transaction (so one process upgrades at a time and a failed step
leaves the file at the version before it). Never edit a migration that has shipped: append a new
one; `tests/a/test_storage.py` keeps a frozen copy of version 1 to check the upgrade path.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable


class SchemaError(Exception):
    """The file cannot be brought to this program's schema; `str(exc)` says what to do.

    `storage` turns it into a `StorageError` with the same message.
    """


_V1 = (
    """CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        magnet TEXT NOT NULL,
        info_hash TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        added_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('waiting', 'downloading', 'completed',
                                             'transcoding', 'playable', 'failed')),
        phase TEXT,
        error TEXT,
        worker_id TEXT,
        trackers TEXT NOT NULL DEFAULT '[]'
    )""",
    """CREATE TABLE files (
        task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        is_video INTEGER NOT NULL,
        path_on_worker TEXT,
        PRIMARY KEY (task_id, idx)
    )""",
    """CREATE TABLE progress (
        task_id TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
        percent REAL NOT NULL DEFAULT 0,
        download_rate INTEGER NOT NULL DEFAULT 0,
        upload_rate INTEGER NOT NULL DEFAULT 0,
        peers INTEGER NOT NULL DEFAULT 0,
        downloaded INTEGER NOT NULL DEFAULT 0,
        total INTEGER NOT NULL DEFAULT 0,
        eta REAL,
        updated_at REAL
    )""",
    """CREATE TABLE hls (
        task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        file_index INTEGER NOT NULL,
        playlist TEXT,
        duration REAL,
        segments INTEGER,
        live INTEGER NOT NULL DEFAULT 0,
        ready_at REAL,
        transcode_percent REAL,
        PRIMARY KEY (task_id, file_index)
    )""",
    "CREATE TABLE applied_reports (report_id TEXT PRIMARY KEY, applied_at REAL NOT NULL)",
)


def _v1_initial(conn: sqlite3.Connection) -> None:
    for statement in _V1:
        conn.execute(statement)


def _v2_trackers_table(conn: sqlite3.Connection) -> None:
    """Trackers move from a JSON column to rows; tasks get indexes for the worker queries."""
    conn.execute(
        """CREATE TABLE trackers (
            task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            url TEXT NOT NULL,
            PRIMARY KEY (task_id, position)
        )"""
    )
    for task_id, trackers in conn.execute("SELECT id, trackers FROM tasks").fetchall():
        urls = json.loads(trackers)
        if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
            raise ValueError(f"task {task_id} has trackers {trackers!r}, not a list of URLs")
        conn.executemany(
            "INSERT INTO trackers (task_id, position, url) VALUES (?, ?, ?)",
            [(task_id, position, url) for position, url in enumerate(urls)],
        )
    conn.execute("ALTER TABLE tasks DROP COLUMN trackers")
    conn.execute("CREATE INDEX tasks_by_state ON tasks(state)")
    conn.execute("CREATE INDEX tasks_by_worker ON tasks(worker_id)")


def _v3_media_duration(conn: sqlite3.Connection) -> None:
    """Renditions record the whole video's duration: a player draws its seek bar over all of
    it while the rendition still grows."""
    conn.execute("ALTER TABLE hls ADD COLUMN media_duration REAL")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _v1_initial,
    _v2_trackers_table,
    _v3_media_duration,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the file open on `conn` to `SCHEMA_VERSION`; raises `SchemaError` if it cannot."""
    while True:
        conn.execute("BEGIN IMMEDIATE")  # read the version under the lock: one upgrader at a time
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            conn.execute("COMMIT")
            break
        try:
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise SchemaError(
                f"could not upgrade {path} to schema version {version + 1} ({exc}); the file "
                f"was left unchanged at version {version}"
            ) from exc
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"{path} has schema version {version}, newer than this program knows "
            f"({SCHEMA_VERSION}): upgrade torrentm3u8 or point --data at another folder"
        )
