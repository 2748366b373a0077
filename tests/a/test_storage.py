import re
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest
import trio

from torrentm3u8_a.magnets import parse_magnet
from torrentm3u8_a.states import InvalidTransition
from torrentm3u8_a.storage import (
    FILES_IN_TASK,
    SCHEMA_VERSION,
    StorageError,
    UnknownTask,
    new_task_id,
    open_storage,
)

FILES = [
    {"index": 0, "path": "Movie/movie.mkv", "size": 700_000_000, "is_video": True},
    {"index": 1, "path": "Movie/readme.txt", "size": 120, "is_video": False},
]

# Schema version 1 as it shipped, frozen here: files on disk keep it whatever the code says now.
V1_DDL = """
CREATE TABLE tasks (
    id TEXT PRIMARY KEY, magnet TEXT NOT NULL, info_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL, added_at REAL NOT NULL, updated_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'downloading', 'completed',
                                         'transcoding', 'playable', 'failed')),
    phase TEXT, error TEXT, worker_id TEXT, trackers TEXT NOT NULL DEFAULT '[]');
CREATE TABLE files (
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
    path TEXT NOT NULL, size INTEGER NOT NULL, is_video INTEGER NOT NULL, path_on_worker TEXT,
    PRIMARY KEY (task_id, idx));
CREATE TABLE progress (
    task_id TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    percent REAL NOT NULL DEFAULT 0, download_rate INTEGER NOT NULL DEFAULT 0,
    upload_rate INTEGER NOT NULL DEFAULT 0, peers INTEGER NOT NULL DEFAULT 0,
    downloaded INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, eta REAL,
    updated_at REAL);
CREATE TABLE hls (
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE, file_index INTEGER NOT NULL,
    playlist TEXT, duration REAL, segments INTEGER, live INTEGER NOT NULL DEFAULT 0,
    ready_at REAL, transcode_percent REAL, PRIMARY KEY (task_id, file_index));
CREATE TABLE applied_reports (report_id TEXT PRIMARY KEY, applied_at REAL NOT NULL);
PRAGMA user_version = 1;
"""


def write_v1_file(path, trackers='["http://127.0.0.1:6969/announce", "udp://127.0.0.1:1"]'):
    conn = sqlite3.connect(path)
    conn.executescript(V1_DDL)
    conn.execute(
        "INSERT INTO tasks VALUES ('old1', 'magnet:?xt=urn:btih:" + "a" * 40 + "', ?, 'Old',"
        " 10.0, 20.0, 'playable', NULL, NULL, 'w1', ?)",
        ("a" * 40, trackers),
    )
    conn.execute("INSERT INTO files VALUES ('old1', 0, 'old.mp4', 1000, 1, '/srv/old.mp4')")
    conn.execute("INSERT INTO progress VALUES ('old1', 100.0, 0, 5, 2, 1000, 1000, 0, 19.0)")
    conn.execute("INSERT INTO hls VALUES ('old1', 0, 'old/index.m3u8', 60.5, 16, 0, 20.0, 100)")
    conn.execute("INSERT INTO applied_reports VALUES ('report-1', 19.0)")
    conn.commit()
    conn.close()


def table_columns(conn, table):
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


async def test_new_file_gets_the_schema_and_settings(db, db_path):
    def inspect(conn):
        pragma = {
            name: conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("user_version", "journal_mode", "foreign_keys", "synchronous")
        }
        pragma["busy_timeout"] = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        return pragma, tables

    pragma, tables = await db.run_sync(inspect)
    assert pragma == {
        "user_version": SCHEMA_VERSION,
        "journal_mode": "wal",
        "foreign_keys": 1,
        "synchronous": 1,  # NORMAL
        "busy_timeout": 5000,
    }
    assert {"tasks", "files", "progress", "hls", "trackers", "applied_reports"} <= tables
    assert db.path == str(db_path)


async def test_migrates_a_v1_file_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v1.sqlite"
    write_v1_file(path)
    async with open_storage(path) as db:
        task = await db.get_task("old1")
        version, columns, indexes = await db.run_sync(
            lambda conn: (
                conn.execute("PRAGMA user_version").fetchone()[0],
                table_columns(conn, "tasks"),
                {row[1] for row in conn.execute("PRAGMA index_list(tasks)")},
            )
        )
        assert await db.report_applied("report-1")
    assert version == SCHEMA_VERSION == 3
    assert "trackers" not in columns
    assert {"tasks_by_state", "tasks_by_worker"} <= indexes
    assert task["trackers"] == ["http://127.0.0.1:6969/announce", "udp://127.0.0.1:1"]
    assert task["files"] == [{"index": 0, "path": "old.mp4", "size": 1000, "is_video": True}]
    assert task["progress"]["percent"] == 100.0
    assert task["hls"] == [
        {
            "file_index": 0,
            "playlist": "old/index.m3u8",
            "duration": 60.5,
            "segments": 16,
            "live": False,
            "ready_at": 20.0,
            "media_duration": None,  # v3 added the column: unknown for older rows
        }
    ]
    assert (task["state"], task["worker_id"], task["added_at"]) == ("playable", "w1", 10.0)


async def test_failed_upgrade_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "v1.sqlite"
    write_v1_file(path, trackers='{"not": "a list"}')
    with pytest.raises(StorageError, match=r"upgrade .* to schema version 2 .*left unchanged at"):
        async with open_storage(path):
            pass
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "trackers" in table_columns(conn, "tasks")
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'trackers'").fetchone() is None
    conn.close()


async def test_refuses_a_newer_or_foreign_file(tmp_path):
    newer = tmp_path / "newer.sqlite"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer than this program knows"):
        async with open_storage(newer):
            pass
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="not a usable torrentm3u8 database"):
        async with open_storage(garbage):
            pass
    with pytest.raises(StorageError, match="check that its folder exists"):
        async with open_storage(tmp_path / "missing" / "a.sqlite"):
            pass


async def test_a_restart_keeps_everything(db_path, clock, make_magnet):
    async with open_storage(db_path, clock=clock) as db:
        task, _ = await db.add_task(make_magnet(1, dn="Movie", tr="http://127.0.0.1:1/a"))
        await db.set_state(task["id"], "downloading", worker_id="w1")
        await db.set_metadata(task["id"], "Movie", None, ["http://127.0.0.1:2/b"], FILES)
        await db.set_progress(task["id"], percent=100.0, downloaded=10, total=10, eta=0.0)
        await db.set_state(task["id"], "completed")
        await db.set_state(task["id"], "transcoding")
        await db.set_transcode_progress(task["id"], 0, 40.0)
        await db.set_hls(task["id"], 0, "index.m3u8", 12.5, 3, True)
        before = await db.get_task(task["id"])
    async with open_storage(db_path, clock=clock) as db:
        assert await db.get_task(task["id"]) == before
        assert await db.list_tasks() == [before]
    assert before["files"] == [
        {k: f[k] for k in ("index", "path", "size", "is_video")} for f in FILES
    ]
    assert before["trackers"] == ["http://127.0.0.1:2/b"]
    assert before["transcode"] == [{"file_index": 0, "percent": 40.0}]
    assert before["hls"][0]["live"] is True


KILLED_WRITER = """
import sys
import trio
from torrentm3u8_a.magnets import parse_magnet
from torrentm3u8_a.storage import open_storage

async def main(path, count):
    async with open_storage(path) as db:
        for n in range(count):
            task, _ = await db.add_task(parse_magnet(f"magnet:?xt=urn:btih:{n + 1:040x}"))
            await db.set_progress(task["id"], percent=float(n))
            sys.stdout.write(task["id"] + "\\n")
            sys.stdout.flush()
        await trio.sleep_forever()

trio.run(main, sys.argv[1], int(sys.argv[2]))
"""


async def test_committed_writes_survive_kill_9(db_path):
    count = 20
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", KILLED_WRITER, str(db_path), str(count)], stdout=subprocess.PIPE
    )
    try:
        with trio.fail_after(30):
            output = b""
            while output.count(b"\n") < count:
                chunk = await proc.stdout.receive_some()
                assert chunk, "the writer exited early"
                output += chunk
            # The rows sit in the write-ahead log, not yet checkpointed into the main file.
            assert db_path.with_name(db_path.name + "-wal").stat().st_size > 0
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
    finally:
        proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
            await proc.stdout.aclose()
    assert proc.returncode == -signal.SIGKILL
    acknowledged = output.decode().split()
    async with open_storage(db_path) as db:
        tasks = {task["id"]: task for task in await db.list_tasks()}
    assert set(acknowledged) <= set(tasks)
    assert len(acknowledged) == count
    assert [tasks[task_id]["progress"]["percent"] for task_id in acknowledged] == [
        float(n) for n in range(count)
    ]


async def test_same_info_hash_returns_the_existing_task(db):
    hex_link = "magnet:?xt=urn:btih:f7079c66cca02ab45934b9868572060010dfc97e&dn=first"
    base32_link = "magnet:?xt=urn:btih:64DZYZWMUAVLIWJUXGDIK4QGAAIN7SL6&dn=second"

    first, created = await db.add_task(parse_magnet(hex_link))
    assert created
    again, created = await db.add_task(parse_magnet(base32_link))
    assert not created
    assert again == first
    assert again["name"] == "first"
    assert len(await db.list_tasks()) == 1


async def test_concurrent_adds_of_one_torrent_make_one_task(db, make_magnet):
    results = []

    async def add():
        results.append(await db.add_task(make_magnet(7)))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(add)
    assert sorted(created for _, created in results) == [False] * 9 + [True]
    assert len({task["id"] for task, _ in results}) == 1
    assert len(await db.list_tasks()) == 1


async def test_remove_cascades_to_every_child_table(db, make_magnet):
    kept, _ = await db.add_task(make_magnet(1, tr="http://127.0.0.1:1/a"))
    task, _ = await db.add_task(make_magnet(2, tr="http://127.0.0.1:1/a"))
    for target in (kept, task):
        await db.set_state(target["id"], "downloading", worker_id="w1")
        await db.set_metadata(target["id"], "x", None, ["http://127.0.0.1:1/a"], FILES)
        await db.set_hls(target["id"], 0, "index.m3u8", 1.0, 1)

    assert await db.remove_task(task["id"]) is True
    assert await db.remove_task(task["id"]) is False
    assert await db.get_task(task["id"]) is None

    def leftovers(conn):
        return {
            table: conn.execute(
                f"SELECT task_id FROM {table} GROUP BY task_id ORDER BY task_id"
            ).fetchall()
            for table in ("files", "progress", "hls", "trackers")
        }

    rows = await db.run_sync(leftovers)
    assert {table: [row[0] for row in found] for table, found in rows.items()} == {
        table: [kept["id"]] for table in ("files", "progress", "hls", "trackers")
    }


async def test_transitions_are_enforced(db, clock, make_magnet):
    task, _ = await db.add_task(make_magnet(1))
    clock.advance(5)
    with pytest.raises(InvalidTransition, match="cannot go from waiting to playable"):
        await db.set_state(task["id"], "playable")
    with pytest.raises(InvalidTransition, match="unknown task state 'paused'"):
        await db.set_state(task["id"], "paused")
    with pytest.raises(InvalidTransition, match="only a downloading task has a phase"):
        await db.set_state(task["id"], "failed", phase="data")
    assert await db.get_task(task["id"]) == task  # nothing written, not even updated_at

    path = ["downloading", "completed", "transcoding", "completed", "playable", "playable"]
    for state in path:
        task = await db.set_state(task["id"], state)
        assert task["state"] == state
    with pytest.raises(InvalidTransition, match="cannot go from playable to downloading"):
        await db.set_state(task["id"], "downloading")


async def test_state_details(db, clock, make_magnet):
    task, _ = await db.add_task(make_magnet(1))
    task_id = task["id"]
    clock.advance(1)
    task = await db.set_state(task_id, "downloading", worker_id="w1")
    assert (task["phase"], task["worker_id"], task["updated_at"]) == ("metadata", "w1", clock.now)

    clock.advance(1)
    assert await db.set_state(task_id, "downloading") == task  # same state: a no-op
    task = await db.set_metadata(task_id, "Movie", None, None, FILES)
    assert (task["phase"], task["name"], task["updated_at"]) == ("data", "Movie", clock.now)

    task = await db.set_state(task_id, "failed", error="disk full", phase=None)
    assert (task["state"], task["error"], task["phase"], task["worker_id"]) == (
        "failed",
        "disk full",
        None,
        "w1",
    )
    task = await db.set_state(task_id, "waiting", error="ignored", worker_id=None)
    assert (task["error"], task["worker_id"]) == (None, None)
    task = await db.set_state(task_id, "downloading")
    assert task["phase"] == "data"  # the files are known already
    task = await db.set_progress(task_id, phase="metadata")
    assert task["phase"] == "metadata"
    task = await db.set_state(task_id, "downloading", phase="data")
    assert task["phase"] == "data"
    task = await db.assign_worker(task_id, "w2")
    assert task["worker_id"] == "w2"


async def test_report_delivered_twice_has_one_effect(db, clock, make_magnet):
    task, _ = await db.add_task(make_magnet(1))
    task_id = task["id"]
    await db.set_state(task_id, "downloading", worker_id="w1")
    done = await db.set_state(task_id, "completed", report_id="w1:7")
    later = await db.set_state(task_id, "transcoding")
    clock.advance(1)
    # B resends report 7 after a reconnect: completed is not applied again (transcoding ->
    # completed would be a legal requeue, so only the report id stops it).
    assert await db.set_state(task_id, "completed", report_id="w1:7") == later
    assert done["state"] == "completed"

    await db.set_progress(task_id, percent=10.0, report_id="w1:8")
    await db.set_progress(task_id, percent=20.0, report_id="w1:9")
    task = await db.set_progress(task_id, percent=10.0, report_id="w1:8")
    assert task["progress"]["percent"] == 20.0

    with pytest.raises(InvalidTransition):
        await db.set_state(task_id, "waiting", report_id="w1:10")
    assert not await db.report_applied("w1:10")  # a refused report is not marked as applied
    assert await db.report_applied("w1:9")

    clock.advance(100)
    await db.set_transcode_progress(task_id, 0, 50.0, report_id="w1:11")
    assert await db.forget_reports(applied_before=clock.now) == 3  # 7, 8 and 9
    assert await db.report_applied("w1:11")
    assert not await db.report_applied("w1:8")


async def test_unknown_task(db):
    assert await db.get_task("nope") is None
    for write in (
        db.set_state("nope", "downloading"),
        db.assign_worker("nope", "w1"),
        db.set_metadata("nope", "n", None, [], []),
        db.set_progress("nope", percent=1.0),
        db.set_transcode_progress("nope", 0, 1.0),
        db.set_hls("nope", 0, "index.m3u8", 1.0, 1, report_id="r1"),
    ):
        with pytest.raises(UnknownTask, match="no task 'nope'"):
            await write
    assert not await db.report_applied("r1")


async def test_bad_arguments_are_refused(db, make_magnet):
    task, _ = await db.add_task(make_magnet(1))
    with pytest.raises(TypeError, match="unknown fields: speed"):
        await db.set_progress(task["id"], speed=3)
    with pytest.raises(ValueError, match="has no 'size'"):
        await db.set_metadata(task["id"], "n", None, [], [{"index": 0, "path": "a"}])


async def test_new_task_shape_and_name_fallback(db, clock, make_magnet):
    task, created = await db.add_task(make_magnet(1, dn="Big+Buck%20Bunny", tr="udp://127.0.0.1:1"))
    assert created
    assert set(task) == {
        "id", "magnet", "info_hash", "name", "state", "phase", "error", "added_at",
        "updated_at", "worker_id", "trackers", "files", "file_count", "total_size", "progress",
        "hls", "transcode",
    }  # fmt: skip
    assert task["id"].replace("-", "").replace("_", "").isalnum()
    assert 8 <= len(task["id"]) <= 16
    assert task["magnet"].startswith("magnet:?xt=urn:btih:")
    assert (task["name"], task["state"], task["phase"], task["error"]) == (
        "Big Buck Bunny",
        "waiting",
        None,
        None,
    )
    assert task["added_at"] == task["updated_at"] == clock.now
    assert task["trackers"] == ["udp://127.0.0.1:1"]
    assert (task["files"], task["hls"], task["transcode"]) == ([], [], [])
    assert (task["file_count"], task["total_size"]) == (0, None)
    assert task["progress"] == {
        "percent": 0.0,
        "download_rate": 0,
        "upload_rate": 0,
        "peers": 0,
        "downloaded": 0,
        "total": 0,
        "eta": None,
        "updated_at": None,
    }
    nameless, _ = await db.add_task(make_magnet(2))
    assert nameless["name"] == nameless["info_hash"]
    renamed = await db.set_metadata(nameless["id"], "Real name", None, None, FILES)
    assert renamed["name"] == "Real name"
    assert renamed["trackers"] == []  # None leaves the trackers as they were


async def test_metadata_info_hash_update_keeps_unique_key(db, make_magnet):
    one, _ = await db.add_task(make_magnet(1))
    two, _ = await db.add_task(make_magnet(2))
    v2 = "ab" * 32
    assert (await db.set_metadata(one["id"], "a", v2, [], []))["info_hash"] == v2
    # Another task already holds this hash: the reported one is ignored, the key stays.
    assert (await db.set_metadata(two["id"], "b", v2, [], []))["info_hash"] == two["info_hash"]


async def test_progress_transcode_and_hls(db, clock, make_magnet):
    task, _ = await db.add_task(make_magnet(1))
    task_id = task["id"]
    clock.advance(2)
    task = await db.set_progress(
        task_id, percent=12.5, download_rate=1_000_000, upload_rate=2, peers=3,
        downloaded=125, total=1000, eta=42.0,
    )  # fmt: skip
    assert task["progress"] == {
        "percent": 12.5,
        "download_rate": 1_000_000,
        "upload_rate": 2,
        "peers": 3,
        "downloaded": 125,
        "total": 1000,
        "eta": 42.0,
        "updated_at": clock.now,
    }
    task = await db.set_progress(task_id, peers=4, eta=None, phase="data")  # phase: not downloading
    assert (task["progress"]["peers"], task["progress"]["eta"], task["phase"]) == (4, None, None)
    assert task["progress"]["percent"] == 12.5

    task = await db.set_transcode_progress(task_id, 1, 30.0)
    assert (task["transcode"], task["hls"]) == ([{"file_index": 1, "percent": 30.0}], [])
    first_ready = clock.now
    task = await db.set_hls(task_id, 1, "1/index.m3u8", 8.0, 2, live=True, media_duration=60.2)
    assert task["hls"][0]["ready_at"] == first_ready
    assert task["hls"][0]["media_duration"] == 60.2
    assert task["transcode"] == [{"file_index": 1, "percent": 30.0}]  # live: still going
    clock.advance(30)
    task = await db.set_hls(task_id, 1, "1/index.m3u8", 60.0, 15, live=False)
    task = await db.set_hls(task_id, 0, "0/index.m3u8", 5.0, 1)
    assert task["hls"] == [
        {
            "file_index": 0,
            "playlist": "0/index.m3u8",
            "duration": 5.0,
            "segments": 1,
            "live": False,
            "ready_at": clock.now,
            "media_duration": None,
        },
        {
            "file_index": 1,
            "playlist": "1/index.m3u8",
            "duration": 60.0,
            "segments": 15,
            "live": False,
            "ready_at": first_ready,
            "media_duration": 60.2,  # a report without it keeps the known one
        },
    ]
    assert task["transcode"] == [{"file_index": 1, "percent": 100.0}]


async def test_queries(db, clock, make_magnet):
    ids = []
    for n in range(5):
        clock.advance(1)
        task, _ = await db.add_task(make_magnet(n))
        ids.append(task["id"])
    assert [task["id"] for task in await db.list_tasks()] == ids[::-1]  # newest first

    await db.set_state(ids[0], "downloading", worker_id="w1")
    await db.set_state(ids[1], "downloading", worker_id="w1")
    await db.set_state(ids[1], "completed")
    await db.set_state(ids[2], "downloading", worker_id="w2")
    await db.set_state(ids[3], "failed", error="no peers")
    await db.assign_worker(ids[4], "w2")  # waiting: takes no slot

    def found(tasks):
        return sorted(task["id"] for task in tasks)

    assert found(await db.tasks_in_states(["waiting"])) == [ids[4]]
    assert found(await db.tasks_in_states(["downloading", "failed"])) == sorted(
        [ids[0], ids[2], ids[3]]
    )
    assert await db.tasks_in_states([]) == []
    with pytest.raises(InvalidTransition, match="unknown task state"):
        await db.tasks_in_states(["paused"])
    assert found(await db.tasks_for_worker("w2")) == sorted([ids[2], ids[4]])
    assert await db.tasks_for_worker("w9") == []
    assert await db.counts_by_worker() == {"w1": 2, "w2": 1}
    assert await db.counts_by_worker(["waiting", "downloading"]) == {"w1": 1, "w2": 2}


async def test_sqlite_never_runs_on_the_trio_thread(db, make_magnet):
    calls = []

    def trace(conn):
        conn.set_trace_callback(lambda sql: calls.append((threading.get_ident(), sql)))
        return conn

    conn = await db.run_sync(trace)
    task, _ = await db.add_task(make_magnet(1))
    await db.add_task(make_magnet(1))
    await db.set_state(task["id"], "downloading", worker_id="w1", report_id="r1")
    await db.set_metadata(task["id"], "n", None, ["http://127.0.0.1:1/a"], FILES)
    await db.set_progress(task["id"], percent=1.0)
    await db.set_transcode_progress(task["id"], 0, 1.0)
    await db.set_hls(task["id"], 0, "index.m3u8", 1.0, 1)
    await db.assign_worker(task["id"], "w2")
    await db.list_tasks()
    await db.tasks_in_states(["downloading"])
    await db.tasks_for_worker("w2")
    await db.counts_by_worker()
    await db.report_applied("r1")
    await db.forget_reports(0)
    await db.remove_task(task["id"])

    assert db.thread_ident is not None
    assert db.thread_ident != threading.get_ident()
    assert {ident for ident, _ in calls} == {db.thread_ident}
    assert any(sql.startswith("INSERT INTO tasks") for _, sql in calls)
    assert any(sql.startswith("DELETE FROM tasks") for _, sql in calls)
    with pytest.raises(sqlite3.ProgrammingError, match="thread"):
        conn.execute("SELECT 1")  # the connection refuses the trio thread outright


async def test_a_cancelled_caller_waits_for_its_started_job(db):
    entered, release = threading.Event(), threading.Event()

    def slow_write(conn):
        entered.set()
        release.wait()
        conn.execute("INSERT INTO applied_reports VALUES ('slow', 0)")
        return "finished"

    results = []

    async def caller(cancel_scope):
        with cancel_scope:
            results.append(await db.run_sync(slow_write))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()
            nursery.start_soon(caller, scope)
            await trio.to_thread.run_sync(entered.wait)
            scope.cancel()
            release.set()
    assert results == ["finished"]
    assert await db.report_applied("slow")


async def test_a_long_file_list_in_parts_is_listed_short_and_paged_whole(db, make_magnet):
    task, _ = await db.add_task(make_magnet(1))
    n = FILES_IN_TASK + 500
    files = [
        {"index": i, "path": f"t/{i:05d}.txt", "size": 10, "is_video": i == n - 3} for i in range(n)
    ]
    await db.set_metadata(task["id"], "Many", None, [], files[:700])
    await db.add_files(task["id"], files[700:1300], report_id="part-1")
    await db.add_files(task["id"], files[700:1300], report_id="part-1")  # resent: applied once
    again = await db.add_files(task["id"], files[1300:])
    assert (again["file_count"], again["total_size"]) == (n, 10 * n)
    # The task lists the first FILES_IN_TASK files and the video after them, in index order.
    assert [f["index"] for f in again["files"]] == [*range(FILES_IN_TASK), n - 3]
    assert (await db.list_tasks())[0]["files"] == again["files"]

    page, total = await db.list_files(task["id"], 0, 600)
    rest, _ = await db.list_files(task["id"], 600, 5000)
    assert total == n and page + rest == files
    assert await db.list_files(task["id"], n, 10) == ([], n)
    with pytest.raises(UnknownTask):
        await db.list_files("nope", 0, 10)

    # New metadata replaces the whole list, parts included.
    replaced = await db.set_metadata(task["id"], "Many", None, [], files[:2])
    assert (replaced["file_count"], len(replaced["files"])) == (2, 2)


def test_task_ids_never_look_like_options():
    # Before: 1 id in 64 began with '-', and `torrentm3u8 show ID` took it for an option.
    ids = {new_task_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 11 and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{10}", i) for i in ids)
