"""The A<->B link cut right when A handles one of B's reports (metadata, `completed`, final HLS):
the report is delivered again after B reconnects and has exactly one effect in A.

Real A (hypercorn on 127.0.0.1), real in-process B, a real seeder. The fault is injected by
wrapping ONE service method of A: on the chosen report it closes the worker's websocket from
A's side, either before applying the report or after applying it but before the answer leaves
(so B never learns it was applied and must send it again)."""

from __future__ import annotations

import shutil
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from support import WORKER_TOKEN, http_rpc, run_a, wait_task

import rpc
from torrentm3u8_b.config import WorkerConfig
from torrentm3u8_b.samples import make_torrent
from torrentm3u8_b.seeder import open_seeder
from torrentm3u8_b.worker import run_worker

pytestmark = pytest.mark.deadline(60)

REPORTS = {  # case: (A's service method, does this call carry the report to cut?)
    "metadata": ("report_metadata", lambda args, fields: True),
    "completed": ("report_state", lambda args, fields: args[2] == "completed"),
    "hls_ready": ("report_hls", lambda args, fields: fields.get("live") is False),
}
# A's states, each entered once (`transcoding` is skipped when the live rendition made while
# downloading is already the complete one).
EXPECTED_STATES = (
    ["downloading", "completed", "transcoding", "playable"],
    ["downloading", "completed", "playable"],
)


@asynccontextmanager
async def run_b(url: str, data: Path):
    config = WorkerConfig(
        server="ws" + url.removeprefix("http") + "/worker",
        data_dir=data,
        token=WORKER_TOKEN,
        worker_id="b-test",
        loopback_only=True,
        progress_interval=0.5,
    )
    async with trio.open_nursery() as nursery:
        yield await nursery.start(run_worker, config)
        nursery.cancel_scope.cancel()


class CutOnce:
    """Wraps one of A's `TaskService.report_*` methods: closes the worker link the first time
    the chosen report arrives; records every report id it sees."""

    def __init__(self, original, chosen, *, apply_first: bool) -> None:
        self.original = original
        self.chosen = chosen
        self.apply_first = apply_first
        self.cut_report_id: str | None = None
        self.seen: list[str] = []
        self.resent = trio.Event()

    async def __call__(self, *args, report_id, **fields):
        self.seen.append(report_id)
        if report_id == self.cut_report_id:
            self.resent.set()
        if self.cut_report_id is None and self.chosen(args, fields):
            self.cut_report_id = report_id
            if self.apply_first:
                await self.original(*args, report_id=report_id, **fields)
            await rpc.current_peer().aclose()  # the link drops; this handler is cancelled
            return
        await self.original(*args, report_id=report_id, **fields)


async def record_states(a, task_id: str, states: list[str], *, task_status) -> None:
    async with a.hub.subscribe() as events:
        task_status.started()
        async for method, params in events:
            if method == "task.updated" and params["task"]["id"] == task_id:
                state = params["task"]["state"]
                if not states or states[-1] != state:
                    states.append(state)


@pytest.mark.parametrize("apply_first", [False, True], ids=["before-apply", "after-apply"])
@pytest.mark.parametrize("report", sorted(REPORTS))
async def test_link_cut_during_report(tmp_path, clips, monkeypatch, report, apply_first):
    folder = tmp_path / "seed" / "Short"
    folder.mkdir(parents=True)
    shutil.copy(clips["short"], folder / "short.mp4")
    torrent = make_torrent(folder)
    name, chosen = REPORTS[report]
    async with (
        run_a(tmp_path / "a") as (a, url),
        open_seeder(torrent, folder.parent) as seeder,
    ):
        cut = CutOnce(getattr(a.service, name), chosen, apply_first=apply_first)
        monkeypatch.setattr(a.service, name, cut)
        task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
        states: list[str] = []
        async with trio.open_nursery() as nursery, run_b(url, tmp_path / "b"):
            await nursery.start(record_states, a, task["id"], states)
            done = await wait_task(
                a, task["id"], lambda t: t["state"] == "playable", what="playable"
            )
            await cut.resent.wait()  # (cut after applying the final HLS: playable came first)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        applied = await a.db.report_applied(cut.cut_report_id)
        files = await a.db.run_sync(
            lambda conn: conn.execute(
                "SELECT COUNT(*) FROM files WHERE task_id = ?", (task["id"],)
            ).fetchone()[0]
        )
        tasks = (await http_rpc(url, "task.list"))["result"]

    assert cut.cut_report_id is not None, f"no {report} report reached A"
    assert cut.seen.count(cut.cut_report_id) == 2  # sent again after the reconnect, once
    assert applied  # ... and recorded as applied (once: report_id is the table's key)
    assert states in EXPECTED_STATES
    assert [t["id"] for t in tasks] == [task["id"]]
    assert files == 1 and [f["path"].split("/")[-1] for f in done["files"]] == ["short.mp4"]
    assert done["worker_id"] == "b-test"
    assert [(h["file_index"], h["live"]) for h in done["hls"]] == [(0, False)]
    assert done["hls"][0]["segments"] >= 1
