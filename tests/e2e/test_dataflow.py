"""The data-flow diagram as one test, every step checked by its effect, all parts real.

A (hypercorn on 127.0.0.1:0, its sqlite file), B in-process (`run_worker`: libtorrent, FFmpeg,
aiortc), a libtorrent seeder on 127.0.0.1 throttled so the download lasts a few seconds, and
headless Chromium driving the pages:

     1  the user pastes a magnet into the home page and submits it
     2  A gives the task to B                       A's task has B's id; B recorded the task
   3-4  B fetches the metadata, A stores it         files rows in A's sqlite file
   5-6  B reports progress every interval           A stores it (progress.updated_at moves);
                                                    the page's percent moves without a reload
   7-9  download completes, B makes HLS             A: completed, transcoding, playable;
                                                    B: index.m3u8 + .ts files on its disk
 10-11  the user clicks Play                        the player page opens
 12-19  WebRTC signaling through A                 A relayed offer and answer; no media
                                                    request reached A (browser- and A-side)
 20-23  playlist + segments over the data channel   B's rtc served index.m3u8 and .ts files;
                                                    the video plays past 5 s
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
from support import run_a, wait_task

from torrentm3u8_b.paths import hls_dir
from torrentm3u8_b.samples import make_sample, make_torrent
from torrentm3u8_b.seeder import open_seeder

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.deadline(90)]

SAMPLE_SECONDS = 10
SAMPLE_SIZE = "640x360"
DOWNLOAD_SECONDS = 4  # the seeder's upload limit spreads the download over about this long
PROGRESS_INTERVAL = 0.5  # seconds between B's progress reports
FLOW_DEADLINE = 60  # seconds for the whole flow, sample made
WAIT_MS = 20_000  # ms for one thing to show up on a page
PLAYED_SECONDS = 5  # the video must play past this
MEDIA_SUFFIXES = (".m3u8", ".ts")

WATCH_PERCENT = """() => {
  // Every text the task row's percent shows, in order (one row on this page).
  window.percents = [];
  window.sameDocument = true;
  new MutationObserver(() => {
    const text = document.querySelector("[data-testid='task-percent']")?.textContent;
    if (text && window.percents.at(-1) !== text) window.percents.push(text);
  }).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


def hook(testid: str, **attrs: str) -> str:
    extra = "".join(f"[data-{name.replace('_', '-')}='{value}']" for name, value in attrs.items())
    return f"[data-testid='{testid}']{extra}"


@pytest.fixture
async def sample(tmp_path: Path) -> tuple[bytes, Path, int]:
    """A 640x360 H.264/AAC clip and its torrent: (torrent, content dir, size in bytes)."""
    content = tmp_path / "content"
    content.mkdir()
    video = await make_sample(content / "flow.mp4", seconds=SAMPLE_SECONDS, size=SAMPLE_SIZE)
    torrent = await trio.to_thread.run_sync(make_torrent, video)
    return torrent, content, video.stat().st_size


def record_paths(a: Any) -> list[tuple[str, str]]:
    """Every HTTP request and websocket that reaches A's app, as (type, path): an ASGI
    middleware on `app.asgi_app` (Quart's documented hook)."""
    seen: list[tuple[str, str]] = []
    inner = a.app.asgi_app

    async def recording(scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            seen.append((scope["type"], scope["path"]))
        await inner(scope, receive, send)

    a.app.asgi_app = recording
    return seen


async def record_updates(a: Any, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Collect every `task.updated` A publishes, in order, into the list reported at start."""
    updates: list[dict[str, Any]] = []
    async with a.hub.subscribe() as events:
        task_status.started(updates)
        async for method, params in events:
            if method == "task.updated":
                updates.append(params["task"])


async def record_requests(page: Any) -> list[str]:
    urls: list[str] = []
    await page.run(lambda p: p.on("request", lambda request: urls.append(request.url)))
    return urls


def read_files_rows(db_path: Path, task_id: str) -> list[tuple]:
    """A's files rows for the task, read from the sqlite file by a separate connection."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        return conn.execute(
            "SELECT idx, path, size, is_video FROM files WHERE task_id = ? ORDER BY idx",
            (task_id,),
        ).fetchall()


def distinct_in_order(values: list[Any]) -> list[Any]:
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


async def test_magnet_to_playback_along_the_data_flow(tmp_path, sample, page, start_b):
    torrent, content, size = sample
    with trio.fail_after(FLOW_DEADLINE):
        async with (
            open_seeder(torrent, content, upload_limit=size // DOWNLOAD_SECONDS) as seeder,
            trio.open_nursery() as b_side,
        ):
            async with run_a(tmp_path / "a") as (a, url), trio.open_nursery() as nursery:
                try:
                    a_paths = record_paths(a)
                    updates = await nursery.start(record_updates, a)
                    worker = await start_b(
                        b_side, url, tmp_path / "b", progress_interval=PROGRESS_INTERVAL
                    )
                    browser_urls = await record_requests(page)
                    task_id = await follow_the_flow(page, a, url, worker, seeder.magnet(), size)
                    relayed = dict(a.sessions.relayed)
                    served = dict(worker.rtc.stats["total"]["paths"])
                finally:
                    nursery.cancel_scope.cancel()
                    # The page's keep-alive connections would hold A's shutdown.
                    with trio.move_on_after(5) as closing:
                        closing.shield = True
                        await page.run(lambda p: p.context.close())
            b_side.cancel_scope.cancel()  # after A: B has no link left to close politely

    mine = [t for t in updates if t["id"] == task_id]
    # 5-6: progress stored at least twice while the data downloaded (each a new updated_at).
    stamps = {
        t["progress"]["updated_at"]
        for t in mine
        if t["state"] == "downloading" and 0 < t["progress"]["percent"] < 100
    }
    assert len(stamps) >= 2, mine
    stored = sorted(
        (t["progress"]["updated_at"], t["progress"]["percent"])
        for t in mine
        if t["progress"]["updated_at"] is not None
    )
    assert [percent for _, percent in stored] == sorted(percent for _, percent in stored)
    # 7-9: every state, in order, as A stored and published it.
    assert distinct_in_order([t["state"] for t in mine]) == [
        "waiting",
        "downloading",
        "completed",
        "transcoding",
        "playable",
    ]
    # 12-19: A relayed the signaling; no media request reached A (seen by the browser and by A).
    assert relayed["offer"] >= 1 and relayed["answer"] >= 1, relayed
    assert [u for u in browser_urls if u.split("?")[0].endswith(MEDIA_SUFFIXES)] == []
    assert [path for _, path in a_paths if path.endswith(MEDIA_SUFFIXES)] == []
    assert {("websocket", "/ws"), ("websocket", "/worker")} <= set(a_paths)
    # 20-23: the playlist and several segments went over B's data channel.
    assert served.get("index.m3u8", 0) >= 1, served
    assert sum(n for path, n in served.items() if path.endswith(".ts")) >= 2, served
    assert [line for line in page.console if line.startswith("pageerror")] == [], page.console


async def follow_the_flow(page: Any, a: Any, url: str, worker: Any, magnet: str, size: int) -> str:
    """Steps 1-23, each checked as it happens; returns the task id."""
    # 1: the magnet goes in through the page.
    await page.goto(url + "/")
    await page.evaluate(WATCH_PERCENT)
    await page.run(lambda p: p.fill(hook("magnet-input"), magnet))
    await page.run(lambda p: p.click(hook("magnet-submit")))
    await page.run(lambda p: p.wait_for_selector(hook("task-row"), timeout=WAIT_MS))
    task_id = await page.run(
        lambda p: p.eval_on_selector(hook("task-row"), "(el) => el.dataset.taskId")
    )
    assert await page.run(lambda p: p.text_content(hook("magnet-error"))) == ""

    # 2: A gave the task to B, and B keeps its own record of it.
    task = await wait_task(a, task_id, lambda t: t["worker_id"], what="a worker")
    assert task["worker_id"] == worker.config.worker_id
    record = await worker.records.get(task_id)
    assert record is not None and record.magnet == magnet

    # 3-4: the metadata B fetched is in A's sqlite file.
    await wait_task(a, task_id, lambda t: t["files"], what="metadata")
    rows = await trio.to_thread.run_sync(read_files_rows, a.config.db_path, task_id)
    assert rows == [(0, "flow.mp4", size, 1)]

    # 7-9: downloaded, transcoded, playable; the rendition is on B's disk.
    task = await wait_task(a, task_id, lambda t: t["state"] == "playable", what="playable")
    assert task["progress"]["percent"] == 100.0
    assert [h["file_index"] for h in task["hls"]] == [0]
    rendition = hls_dir(worker.config.data_dir, task_id, 0)
    assert (rendition / "index.m3u8").is_file()
    assert len(list(rendition.glob("*.ts"))) >= 2

    # 6: the home page followed the download live, without a reload.
    play = hook("play-button", file_index="0")
    await page.run(lambda p: p.wait_for_selector(play, state="attached", timeout=WAIT_MS))
    shown = await page.evaluate("window.percents")
    assert len([text for text in shown if text not in ("—", "0%", "100%")]) >= 2, shown
    assert shown[-1] == "100%", shown
    assert await page.evaluate("window.sameDocument === true")

    # 10-11: Play opens the player for that file.
    await page.run(lambda p: p.click(play))
    await page.run(lambda p: p.wait_for_url(f"**/player.html?id={task_id}&file=0"))

    # 12-23: peer to peer through A's signaling, then the video plays.
    connected = hook("connection-state", state="connected")
    await page.run(lambda p: p.wait_for_selector(connected, state="attached", timeout=WAIT_MS))
    await page.wait_for_function(
        f"document.querySelector('video').currentTime > {PLAYED_SECONDS}", within_ms=WAIT_MS
    )
    return task_id
