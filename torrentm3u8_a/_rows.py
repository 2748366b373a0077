"""Tasks read out of A's database as the dicts the API returns. Runs on the storage's
database thread (see storage.py), inside or outside a write's transaction."""

from __future__ import annotations

import sqlite3

# A task dict lists its files with an index below this, and every video; `file_count` says how
# many there are and `list_files` pages through all of them. This keeps a task with 10 000
# files to a small event instead of ~1 MB sent to every subscriber on each progress report.
FILES_IN_TASK = 1000

PROGRESS_FIELDS = (
    "percent",
    "download_rate",
    "upload_rate",
    "peers",
    "downloaded",
    "total",
    "eta",
)
PROGRESS_DEFAULTS = dict.fromkeys(PROGRESS_FIELDS, 0) | {"percent": 0.0, "eta": None}


def select_one(conn: sqlite3.Connection, task_id: str) -> dict | None:
    tasks = select(conn, "t.id = ?", (task_id,))
    return tasks[0] if tasks else None


def select(conn: sqlite3.Connection, where: str, params: tuple) -> list[dict]:
    """Full task dicts for the tasks matching `where` (a fixed SQL snippet on `tasks AS t`)."""
    rows = conn.execute(
        "SELECT t.*, p.percent, p.download_rate, p.upload_rate, p.peers, p.downloaded, p.total,"
        " p.eta, p.updated_at AS progress_updated_at"
        f" FROM tasks AS t LEFT JOIN progress AS p ON p.task_id = t.id WHERE {where}"
        " ORDER BY t.added_at DESC, t.rowid DESC",
        params,
    ).fetchall()
    tasks = {row["id"]: _task_dict(row) for row in rows}
    if not tasks:
        return []
    subset = f"task_id IN (SELECT t.id FROM tasks AS t WHERE {where})"
    for row in conn.execute(
        f"SELECT task_id, url FROM trackers WHERE {subset} ORDER BY position", params
    ):
        tasks[row["task_id"]]["trackers"].append(row["url"])
    for row in conn.execute(
        f"SELECT task_id, COUNT(*) AS n, SUM(size) AS size FROM files WHERE {subset}"
        " GROUP BY task_id",
        params,
    ):
        tasks[row["task_id"]].update(file_count=row["n"], total_size=row["size"])
    for row in conn.execute(
        f"SELECT task_id, idx, path, size, is_video FROM files WHERE {subset}"
        " AND (idx < ? OR is_video) ORDER BY idx",
        (*params, FILES_IN_TASK),
    ):
        tasks[row["task_id"]]["files"].append(_file_dict(row))
    for row in conn.execute(f"SELECT * FROM hls WHERE {subset} ORDER BY file_index", params):
        task = tasks[row["task_id"]]
        if row["playlist"] is not None:
            task["hls"].append(
                {
                    "file_index": row["file_index"],
                    "playlist": row["playlist"],
                    "duration": row["duration"],
                    "segments": row["segments"],
                    "live": bool(row["live"]),
                    "ready_at": row["ready_at"],
                    "media_duration": row["media_duration"],
                }
            )
        if row["transcode_percent"] is not None:
            task["transcode"].append(
                {"file_index": row["file_index"], "percent": row["transcode_percent"]}
            )
    return list(tasks.values())


def list_files(
    conn: sqlite3.Connection, task_id: str, offset: int, limit: int
) -> tuple[list[dict], int] | None:
    """(files in index order from position `offset`, at most `limit`; how many in all), or
    None when there is no such task."""
    if conn.execute("SELECT 1 FROM tasks WHERE id = ?", (task_id,)).fetchone() is None:
        return None
    (total,) = conn.execute("SELECT COUNT(*) FROM files WHERE task_id = ?", (task_id,)).fetchone()
    rows = conn.execute(
        "SELECT idx, path, size, is_video FROM files WHERE task_id = ?"
        " ORDER BY idx LIMIT ? OFFSET ?",
        (task_id, limit, offset),
    )
    return [_file_dict(row) for row in rows], total


def _file_dict(row: sqlite3.Row) -> dict:
    return {
        "index": row["idx"],
        "path": row["path"],
        "size": row["size"],
        "is_video": bool(row["is_video"]),
    }


def _task_dict(row: sqlite3.Row) -> dict:
    progress = {
        name: PROGRESS_DEFAULTS[name] if row[name] is None else row[name]
        for name in PROGRESS_FIELDS
    }
    progress["updated_at"] = row["progress_updated_at"]
    return {
        "id": row["id"],
        "magnet": row["magnet"],
        "info_hash": row["info_hash"],
        "name": row["name"],
        "state": row["state"],
        "phase": row["phase"],
        "error": row["error"],
        "added_at": row["added_at"],
        "updated_at": row["updated_at"],
        "worker_id": row["worker_id"],
        "trackers": [],
        "files": [],  # those below FILES_IN_TASK, and the videos
        "file_count": 0,
        "total_size": None,  # bytes of all files, once known
        "progress": progress,
        "hls": [],
        "transcode": [],
    }
