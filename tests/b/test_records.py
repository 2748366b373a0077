"""B's own records on a real sqlite file: tasks and the outbox survive a restart."""

from __future__ import annotations

import threading

from torrentm3u8_b.link import Outbox
from torrentm3u8_b.records import open_records


async def test_tasks_survive_reopen(tmp_path):
    path = tmp_path / "worker.sqlite3"
    async with open_records(path) as records:
        await records.add("t1", "magnet:?xt=urn:btih:" + "a" * 40)
        await records.add("t1", "magnet:?ignored-duplicate")
        await records.update("t1", state="completed", info={"name": "x"}, info_hash="a" * 40)
        await records.update("t1", hls=[{"file_index": 0, "playlist": "index.m3u8"}])
        await records.add("t2", "magnet:?xt=urn:btih:" + "b" * 40)
        await records.remove("t2")
    async with open_records(path) as records:
        (only,) = await records.all()
    assert only.task_id == "t1"
    assert only.magnet.endswith("a" * 40)
    assert (only.state, only.info, only.info_hash) == ("completed", {"name": "x"}, "a" * 40)
    assert only.snapshot()["hls"] == [{"file_index": 0, "playlist": "index.m3u8"}]


async def test_outbox_is_read_and_written_off_the_trio_thread_and_survives_reopen(tmp_path):
    path = tmp_path / "worker.sqlite3"
    trio_thread = threading.get_ident()
    writers = set()
    async with open_records(path) as records:
        records._conn.set_trace_callback(
            lambda sql: sql.startswith("INSERT") and writers.add(threading.get_ident())
        )
        outbox = Outbox(store=records)
        outbox.put("task.state", {"task_id": "t1", "state": "completed"})
        outbox.put("task.progress", {"task_id": "t1", "percent": 1}, coalesce_key="p")
        outbox.put("task.progress", {"task_id": "t1", "percent": 2}, coalesce_key="p")
    assert writers  # the outbox was written...
    assert trio_thread not in writers  # ...but never from the trio thread
    async with open_records(path) as records:
        statements = []
        records._conn.set_trace_callback(statements.append)
        again = Outbox(store=records)  # on the trio thread: reads no sqlite
        assert statements == []
        assert [(m, p.get("percent")) for m, p in again.pending()] == [
            ("task.state", None),
            ("task.progress", 2),
        ]
