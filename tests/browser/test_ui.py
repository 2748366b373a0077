"""The pages (static/) in headless Chromium against the real service A on 127.0.0.1.

A runs under hypercorn on port 0 with its real sqlite file; a ScriptedWorker speaks the real
/worker link and sends the reports a download would produce (the test decides when), so each
state can be checked as it arrives. For the player, the worker answers offers with the real
RtcServer (torrentm3u8_b.webrtc) over an HLS folder made by real FFmpeg: the video plays over
the data channel with A's real signaling.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest
import trio
from support import WORKER_TOKEN, http_rpc, run_a, ws_url

import rpc
from torrentm3u8_a.app import serve
from torrentm3u8_a.config import Config
from torrentm3u8_a.magnets import parse_magnet
from torrentm3u8_a.storage import open_storage
from torrentm3u8_b.webrtc import open_rtc_server

pytestmark = pytest.mark.browser

MEDIA_SECONDS = 6
SEGMENT_SECONDS = 2
WAIT_MS = 10_000  # ms for one thing to show up on a page
PHONE = {"width": 360, "height": 740}
FILES = [
    {"index": 0, "path": "Show/episode 1.mp4", "size": 1_500_000_000, "is_video": True},
    {"index": 1, "path": "Show/extras/trailer.mkv", "size": 480_000_000, "is_video": True},
    {"index": 2, "path": "Show/readme.txt", "size": 2_100, "is_video": False},
]


def magnet(n: int, name: str = "") -> str:
    info_hash = hashlib.sha1(f"ui test {n}".encode()).hexdigest()
    return f"magnet:?xt=urn:btih:{info_hash}" + (f"&dn={name.replace(' ', '+')}" if name else "")


class ScriptedWorker:
    """A worker on A's real /worker link whose downloads the test scripts.

    A's `task.start` orders arrive on `started` as (task_id, magnet); `report(method, **params)`
    sends what B would report; `rtc.*` go to a real RtcServer serving `hls_root`. Exceptions in
    `offer_errors` are raised by the next offers, one each.
    """

    def __init__(self, rtc: Any = None, hls_root: Path | None = None) -> None:
        self.rtc = rtc
        self.hls_root = hls_root
        self.offer_errors: list[rpc.RPCError] = []
        self.offers = 0
        self._send, self.started = trio.open_memory_channel[tuple[str, str]](math.inf)
        self.peer: rpc.Peer | None = None
        self.methods = methods = rpc.Methods()

        @methods.add(name="worker.ping")
        async def ping() -> dict:
            return {"time": trio.current_time()}

        @methods.add(name="task.start")
        async def start(task_id: str, magnet: str) -> None:
            self._send.send_nowait((task_id, magnet))

        @methods.add(name="task.remove")
        async def remove(task_id: str, delete_files: bool = True) -> None:
            return None

        @methods.add(name="rtc.offer")
        async def offer(
            session_id: str,
            task_id: str,
            file_index: int,
            sdp: str,
            ice_servers: list | None = None,
            ice_transport_policy: str = "all",
        ) -> dict:
            self.offers += 1
            if self.offer_errors:
                raise self.offer_errors.pop(0)
            answer = await self.rtc.answer(session_id, sdp, root=self.hls_root, ice_servers=[])
            return {"sdp": answer}

        @methods.add(name="rtc.candidate")
        async def candidate(session_id: str, candidate: dict | None = None) -> None:
            await self.rtc.add_candidate(session_id, candidate)

        @methods.add(name="rtc.close")
        async def close(session_id: str) -> None:
            await self.rtc.close(session_id)

    async def report(self, method: str, **params: Any) -> None:
        await self.peer.call(method, params)

    @asynccontextmanager
    async def connect(self, base_url: str, *, worker_id: str = "ui-worker") -> AsyncIterator[None]:
        async with rpc.open_websocket(ws_url(base_url, "/worker")) as ws:
            async with rpc.open_peer(rpc.TrioWebSocketStream(ws), self.methods) as peer:
                hello = {
                    "worker_id": worker_id,
                    "token": WORKER_TOKEN,
                    "version": "test",
                    "tasks": [],
                    "max_tasks": 0,
                }
                await peer.call("worker.hello", hello)
                self.peer = peer
                yield

    async def make_playable(self, task_id: str, *, live: bool = False) -> None:
        """Reports metadata and an HLS rendition of file 0 (`live`: while downloading)."""
        await self.report(
            "task.metadata", task_id=task_id, name="Show", info_hash="ab" * 20, files=FILES
        )
        if not live:
            await self.report("task.state", task_id=task_id, state="completed")
            await self.report("task.state", task_id=task_id, state="transcoding")
        await self.report(
            "task.hls_ready",
            task_id=task_id,
            file_index=0,
            playlist="index.m3u8",
            duration=float(MEDIA_SECONDS),
            segments=MEDIA_SECONDS // SEGMENT_SECONDS,
            live=live,
        )


@pytest.fixture(scope="module")
def hls_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few seconds of H.264/AAC test pattern as HLS, made by real FFmpeg."""
    out = tmp_path_factory.mktemp("hls")
    ffmpeg = shutil.which("ffmpeg") or imageio_ffmpeg.get_ffmpeg_exe()
    command = [
        ffmpeg, "-nostdin", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={MEDIA_SECONDS}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={MEDIA_SECONDS}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-c:a", "aac",
        "-f", "hls", "-hls_time", str(SEGMENT_SECONDS), "-hls_playlist_type", "vod",
        str(out / "index.m3u8"),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return out


@asynccontextmanager
async def open_a(page: Any, tmp_path: Path, **overrides: Any) -> AsyncIterator[tuple[Any, str]]:
    """Service A for one test; the page's browser context closes before A stops (its idle
    keep-alive connections would hold A's shutdown for hypercorn's whole graceful timeout)."""
    async with run_a(tmp_path / "a", **overrides) as (a, url):
        try:
            yield a, url
        finally:
            with trio.move_on_after(5) as cleanup:
                cleanup.shield = True
                await page.run(lambda p: p.context.close())


@asynccontextmanager
async def playable_task(page: Any, tmp_path: Path, hls_folder: Path, *, live: bool = False):
    """A, a worker with a real RtcServer over `hls_folder`, and a task with a rendition of
    file 0; yields (url, task_id, worker, rtc)."""
    async with (
        open_rtc_server(loopback_only=True) as rtc,
        open_a(page, tmp_path) as (a, url),
    ):
        worker = ScriptedWorker(rtc, hls_folder)
        async with worker.connect(url):
            task = await a.service.add(magnet(1, "Show"))
            await worker.started.receive()
            await worker.make_playable(task["id"], live=live)
            yield url, task["id"], worker, rtc


# --- page helpers (Playwright runs on its own thread: see conftest.py) ---------------------------


def hook(testid: str, within: str = "", **attrs: str) -> str:
    """A CSS selector for a data-testid hook, optionally inside `within` and with attributes:
    hook("task-row", state="failed") -> [data-testid='task-row'][data-state='failed']."""
    extra = "".join(f"[data-{name.replace('_', '-')}='{value}']" for name, value in attrs.items())
    return f"{within} [data-testid='{testid}']{extra}".strip()


def task_row(task_id: str, **attrs: str) -> str:
    return hook("task-row", task_id=task_id, **attrs)


async def appears(page: Any, selector: str, *, within_ms: int = WAIT_MS) -> None:
    await page.run(lambda p: p.wait_for_selector(selector, state="attached", timeout=within_ms))


async def disappears(page: Any, selector: str) -> None:
    await page.run(lambda p: p.wait_for_selector(selector, state="detached", timeout=WAIT_MS))


async def shows(page: Any, selector: str) -> None:
    await page.run(lambda p: p.wait_for_selector(selector, state="visible", timeout=WAIT_MS))


async def is_visible(page: Any, selector: str) -> bool:
    return await page.run(lambda p: p.locator(selector).is_visible())


async def until(page: Any, expression: str, *, within_ms: int = WAIT_MS) -> None:
    await page.run(lambda p: p.wait_for_function(expression, timeout=within_ms))


async def until_text(page: Any, selector: str, text: str) -> None:
    """Wait until the element's text contains `text`."""
    await page.run(
        lambda p: p.wait_for_function(
            "([s, t]) => document.querySelector(s)?.textContent.includes(t)",
            arg=[selector, text],
            timeout=WAIT_MS,
        )
    )


async def text(page: Any, selector: str) -> str:
    return (await page.run(lambda p: p.locator(selector).first.text_content())).strip()


async def prop(page: Any, selector: str, expression: str) -> Any:
    """Evaluate `expression` (a function of the element) on the element `selector` matches."""
    return await page.run(lambda p: p.eval_on_selector(selector, expression))


async def fits_width(page: Any) -> bool:
    """True when nothing overflows sideways (no horizontal scrolling on a phone)."""
    return await page.evaluate(
        "document.scrollingElement.scrollWidth <= document.documentElement.clientWidth"
    )


def page_errors(page: Any) -> list[str]:
    return [line for line in page.console if line.startswith("pageerror")]


# --- tests ---------------------------------------------------------------------------------------


async def test_human_units_and_the_magnet_check(page, tmp_path):
    with trio.fail_after(30):
        async with open_a(page, tmp_path) as (_, url):
            await page.goto(url + "/")
            got = await page.evaluate(
                """async () => {
                  const f = await import('/static/js/format.js');
                  const api = await import('/static/js/api.js');
                  const now = Date.parse('2030-01-01T12:00:00Z');
                  const named = (name, magnet, h) => f.taskTitle({ name, magnet, info_hash: h });
                  return {
                    bytes: [0, 999, 1000, 12_345_678, 999_960, 1.5e9, null].map(f.formatBytes),
                    rate: f.formatRate(1_234_567),
                    durations: [45, 180, 7_500, 90_000].map(f.formatDuration),
                    eta: [null, -1, 3_600].map(f.formatEta),
                    ago: [0, 180, 7_200].map((s) => f.formatAgo(now / 1000 - s, now)),
                    agoIso: f.formatAgo('2030-01-01T11:57:00Z', now),
                    percent: [0, 42.37, 99.96, 100].map(f.formatPercent),
                    clock: [5, 65, 3_725].map(f.formatClock),
                    stale: [
                      [{ updated_at: 1 }, { updated_at: 2 }],
                      [{ updated_at: 2 }, { updated_at: 1 }],
                      [{ updated_at: 2, progress: { updated_at: 5 } },
                       { updated_at: 2, progress: { updated_at: 6 } }],
                      [{ updated_at: 2, progress: { updated_at: 6 } },
                       { updated_at: 2, progress: { updated_at: 6 } }],
                    ].map(([a, b]) => f.isStale(a, b)),
                    title: [
                      named('Named', 'magnet:?dn=x', 'h'),
                      named(null, 'magnet:?xt=urn:btih:h&dn=Big+Buck', 'h'),
                      named('', 'magnet:?xt=urn:btih:abc', 'abc'),
                    ],
                    magnets: [
                      '', 'http://example.com', 'magnet:?dn=x', 'magnet:?xt=urn:btih:',
                      'magnet:?xt=urn:btih:abc', ' MAGNET:?dn=a&xt=urn:btmh:1220ab ',
                    ].map(api.checkMagnet),
                  };
                }"""
            )
    assert got["bytes"] == ["0 B", "999 B", "1.0 kB", "12.3 MB", "1.0 MB", "1.5 GB", "—"]
    assert got["rate"] == "1.2 MB/s"
    assert got["durations"] == ["45 s", "3 min", "2 h 5 min", "1 d 1 h"]
    assert got["eta"] == ["—", "—", "1 h"]
    assert got["ago"] == ["just now", "3 min ago", "2 h ago"]
    assert got["agoIso"] == "3 min ago"
    assert got["percent"] == ["0%", "42.3%", "99.9%", "100%"]
    assert got["clock"] == ["0:05", "1:05", "1:02:05"]
    assert got["stale"] == [True, False, True, False]
    assert got["title"] == ["Named", "Big Buck", "abc"]
    assert got["magnets"][0] == "Paste a magnet link first."
    assert got["magnets"][1] == 'Not a magnet link: it must start with "magnet:?".'
    assert "missing xt=urn:btih" in got["magnets"][2]
    assert "missing xt=urn:btih" in got["magnets"][3]
    assert got["magnets"][4:] == ["", ""]


async def test_home_adds_a_magnet_and_follows_the_task_live(page, tmp_path, artifacts):
    worker = ScriptedWorker()
    field, error_box = hook("magnet-input"), hook("magnet-error")
    with trio.fail_after(60):
        async with open_a(page, tmp_path) as (a, url):
            await page.run(lambda p: p.set_viewport_size(PHONE))
            await page.goto(url + "/")
            await appears(page, hook("worker-indicator", connected="false"))
            assert await text(page, hook("worker-indicator")) == "No worker connected"
            await shows(page, hook("tasks-empty"))

            # Checked while typing, before anything is sent to A.
            await page.run(lambda p: p.fill(field, "https://example.com/file.torrent"))
            assert "must start with" in await text(page, error_box)
            assert await prop(page, field, "(el) => el.getAttribute('aria-invalid')") == "true"
            await page.run(lambda p: p.fill(field, ""))
            assert await text(page, error_box) == ""
            assert await a.service.list() == []

            # A's own -32602 message is shown as is.
            bad = "magnet:?xt=urn:btih:1234"
            reply = await http_rpc(url, "task.add", {"magnet": bad})
            assert reply["error"]["code"] == -32602
            await page.run(lambda p: p.fill(field, bad))
            await page.run(lambda p: p.click(hook("magnet-submit")))
            await until_text(page, error_box, reply["error"]["message"])
            assert await text(page, error_box) == reply["error"]["message"]

            # Keyboard: Enter in the field submits the form.
            await page.run(lambda p: p.fill(field, magnet(1, "Big Buck Bunny")))
            await page.run(lambda p: p.press(field, "Enter"))
            await appears(page, hook("task-row"))
            task_id = await prop(page, hook("task-row"), "(el) => el.dataset.taskId")
            this = task_row(task_id)
            assert await text(page, hook("task-link", this)) == "Big Buck Bunny"
            assert await text(page, hook("state-badge", this)) == "Waiting"
            assert await prop(page, this, "(el) => el.dataset.state") == "waiting"
            assert await text(page, error_box) == ""
            assert await prop(page, field, "(el) => el.value") == ""
            assert await text(page, hook("notice")) == "Added Big Buck Bunny."

            # The same magnet again: A gives back the task it has, still one row.
            await page.run(lambda p: p.fill(field, magnet(1, "Big Buck Bunny")))
            await page.run(lambda p: p.click(hook("magnet-submit")))
            await until_text(page, hook("notice"), "“Big Buck Bunny” is already in the list.")
            assert await page.run(lambda p: p.locator(hook("task-row")).count()) == 1

            async with worker.connect(url):
                await appears(page, hook("worker-indicator", connected="true"))
                assert await text(page, hook("worker-indicator")) == "Worker connected"
                started_id, _ = await worker.started.receive()
                assert started_id == task_id
                await appears(page, task_row(task_id, state="downloading"))
                assert await text(page, hook("state-badge", this)) == "Downloading · metadata"

                await worker.report(
                    "task.metadata",
                    task_id=task_id,
                    name="Big Buck Bunny 1080p",
                    info_hash="ab" * 20,
                    files=FILES,
                )
                await worker.report(
                    "task.progress",
                    task_id=task_id,
                    percent=42.37,
                    download_rate=1_234_567,
                    upload_rate=0,
                    peers=5,
                    downloaded=837_000_000,
                    total=1_980_002_100,
                    eta=180,
                    phase="data",
                )
                await until_text(page, hook("task-percent", this), "42.3%")
                assert await text(page, hook("task-link", this)) == "Big Buck Bunny 1080p"
                assert await text(page, hook("state-badge", this)) == "Downloading"
                assert await text(page, hook("task-speed", this)) == "1.2 MB/s"
                assert await text(page, hook("task-peers", this)) == "5"
                assert await text(page, hook("task-eta", this)) == "3 min"
                assert await text(page, hook("task-size", this)) == "2.0 GB"
                assert await text(page, hook("task-added", this)) == "just now"
                assert await prop(page, hook("task-progress", this), "(el) => el.value") == 42.37
                assert not await is_visible(page, hook("retry-button", this))
                assert await fits_width(page)

                # Failed: the error as sent, and a Retry that queues the task again.
                error = "disk full on the worker: free some space, then retry"
                await worker.report("task.state", task_id=task_id, state="failed", error=error)
                await appears(page, task_row(task_id, state="failed"))
                assert await text(page, hook("task-error", this)) == error
                await page.run(lambda p: p.click(hook("retry-button", this)))
                again_id, _ = await worker.started.receive()
                assert again_id == task_id
                await appears(page, task_row(task_id, state="downloading"))
                shot = artifacts / "home.png"
                await page.run(lambda p: p.screenshot(path=str(shot), full_page=True))
                assert shot.stat().st_size > 0

                # Remove asks first; Cancel keeps the task.
                await page.run(lambda p: p.click(hook("remove-button", this)))
                await page.run(lambda p: p.click(hook("confirm-cancel")))
                assert [t["id"] for t in await a.service.list()] == [task_id]
                await page.run(lambda p: p.click(hook("remove-button", this)))
                await page.run(lambda p: p.click(hook("confirm-ok")))
                await disappears(page, this)
                assert await a.service.list() == []
                await shows(page, hook("tasks-empty"))

            await appears(page, hook("worker-indicator", connected="false"))
    assert page_errors(page) == [], page.console


async def test_home_refetches_the_list_after_the_websocket_reconnects(page, tmp_path):
    data = tmp_path / "a"
    live = hook("live-status")
    with trio.fail_after(60):
        async with run_a(data) as (a, url):
            kept, _ = await a.db.add_task(parse_magnet(magnet(1, "Kept")))
            gone, _ = await a.db.add_task(parse_magnet(magnet(2, "Removed while offline")))
            await page.goto(url + "/")
            await appears(page, task_row(gone["id"]))
            await appears(page, hook("live-status", state="open"))

        # A is down: the page says so and keeps trying. What changes meanwhile sends no event.
        await until_text(page, live, "Offline, retrying")
        async with open_storage(data / "torrentm3u8.sqlite3") as db:
            added, _ = await db.add_task(parse_magnet(magnet(3, "Added while offline")))
            await db.remove_task(gone["id"])

        port = int(url.rsplit(":", 1)[1])
        config = Config(
            data_dir=data, listen=f"127.0.0.1:{port}", worker_token=WORKER_TOKEN, loopback_only=True
        )
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve, config, shutdown_trigger=stop.wait))
            await appears(page, task_row(added["id"]))
            await disappears(page, task_row(gone["id"]))
            await appears(page, hook("live-status", state="open"))
            assert await is_visible(page, task_row(kept["id"]))
            await page.run(lambda p: p.context.close())
            stop.set()


async def test_task_view_lists_files_and_follows_transcoding_to_play_buttons(page, tmp_path):
    worker = ScriptedWorker()
    first = hook("file-row", file_index="0")
    with trio.fail_after(60):
        async with open_a(page, tmp_path) as (a, url), worker.connect(url):
            task = await a.service.add(magnet(1, "Show"))
            await worker.started.receive()
            task_id = task["id"]
            await page.run(lambda p: p.set_viewport_size(PHONE))
            await page.goto(f"{url}/task.html?id={task_id}")
            await until_text(page, hook("task-title"), "Show")
            await shows(page, hook("files-empty"))

            await worker.report(
                "task.metadata", task_id=task_id, name="Show S01", info_hash="ab" * 20, files=FILES
            )
            await appears(page, hook("file-row", file_index="2"))
            rows = await page.run(
                lambda p: p.eval_on_selector_all(
                    hook("file-row"),
                    """(rows) => rows.map((r) =>
                         [...r.cells].map((c) => c.textContent.trim()).concat(r.dataset.video))""",
                )
            )
            assert rows == [
                ["Show/episode 1.mp4", "1.5 GB", "Video", "Not ready yet", "true"],
                ["Show/extras/trailer.mkv", "480 MB", "Video", "Not ready yet", "true"],
                ["Show/readme.txt", "2.1 kB", "Other", "—", "false"],
            ]
            assert await text(page, hook("task-title")) == "Show S01"
            assert not await is_visible(page, hook("files-empty"))
            assert not await is_visible(page, hook("files-more"))

            # A long list, sent in parts: the page lists the first 1000 files and says so.
            notes = [
                {"index": i, "path": f"Show/notes/{i:04d}.txt", "size": 10, "is_video": False}
                for i in range(3, 1503)
            ]
            await worker.report("task.more_files", task_id=task_id, files=notes)
            await until_text(page, hook("files-more"), "… and 503 more files, not listed here.")
            assert await page.run(lambda p: p.locator(hook("file-row")).count()) == 1000

            await worker.report("task.state", task_id=task_id, state="completed")
            await worker.report("task.state", task_id=task_id, state="transcoding")
            await worker.report(
                "task.transcode_progress", task_id=task_id, file_index=0, percent=37.5
            )
            await until_text(page, hook("transcode-progress", first), "37.5%")
            assert await text(page, hook("state-badge")) == "Transcoding"
            assert await page.run(lambda p: p.locator(hook("play-button")).count()) == 0

            await worker.report(
                "task.hls_ready",
                task_id=task_id,
                file_index=0,
                playlist="index.m3u8",
                duration=60.0,
                segments=15,
            )
            await appears(page, hook("play-button", first))
            href = await prop(page, hook("play-button", first), "(el) => el.getAttribute('href')")
            assert href == f"/player.html?id={task_id}&file=0"
            assert await text(page, hook("state-badge")) == "Playable"
            assert await page.run(lambda p: p.locator(hook("play-button")).count()) == 1
            assert await fits_width(page)

            # The home list offers the same rendition.
            await page.goto(url + "/")
            home_play = hook("play-button", task_row(task_id))
            await appears(page, home_play)
            assert await prop(page, home_play, "(el) => el.getAttribute('href')") == href

            await page.goto(f"{url}/task.html?id={task_id}")
            await appears(page, hook("play-button"))
            await a.service.remove(task_id)
            await until_text(page, hook("task-problem"), "This task was removed")
            await page.goto(f"{url}/task.html?id=nope")
            await until_text(page, hook("task-problem"), "no task with id nope")
    assert page_errors(page) == [], page.console


async def record_requests(page: Any) -> list[str]:
    urls: list[str] = []
    await page.run(lambda p: p.on("request", lambda request: urls.append(request.url)))
    return urls


REFUSE_FIRST_PLAY = """
  // Autoplay refused once, as for a visitor who has not clicked on the page yet.
  const play = HTMLMediaElement.prototype.play;
  let refused = false;
  HTMLMediaElement.prototype.play = function () {
    if (refused) return play.call(this);
    refused = true;
    return Promise.reject(new DOMException('no user gesture yet', 'NotAllowedError'));
  };
"""


async def uses_the_controls(page) -> None:
    """Play/pause, seek, volume and mute through the player's own controls, as a user would:
    clicks, and the seek bar moved with the keyboard."""
    video = "document.querySelector('video')"
    assert await prop(page, hook("play-pause"), "(el) => el.getAttribute('aria-label')") == "Pause"
    assert (await text(page, hook("clock"))).endswith(f"/ 0:0{MEDIA_SECONDS}")
    assert await prop(page, hook("seek"), "(el) => Number(el.max)") == pytest.approx(
        MEDIA_SECONDS, abs=0.2
    )
    await page.run(lambda p: p.click(hook("play-pause")))
    await until(page, f"{video}.paused")
    assert await prop(page, hook("play-pause"), "(el) => el.getAttribute('aria-label')") == "Play"
    # Home, then three steps right: the seek bar is a range input, its step is 0.1 s.
    await page.run(lambda p: p.focus(hook("seek")))
    for key in ("Home", "ArrowRight", "ArrowRight", "ArrowRight"):
        await page.run(lambda p, key=key: p.keyboard.press(key))
    await until(page, f"Math.abs({video}.currentTime - 0.3) < 0.05")
    assert await text(page, hook("clock")) == f"0:00 / 0:0{MEDIA_SECONDS}"
    await page.run(lambda p: p.click(hook("play-pause")))
    await until(page, f"!{video}.paused && {video}.currentTime > 0.5")
    await page.run(lambda p: p.fill(hook("volume"), "0.25"))
    assert await page.evaluate(f"{video}.volume") == pytest.approx(0.25)
    await page.run(lambda p: p.click(hook("mute")))
    assert await page.evaluate(f"{video}.muted") is True
    assert await prop(page, hook("mute"), "(el) => el.getAttribute('aria-pressed')") == "true"
    await page.run(lambda p: p.click(hook("mute")))
    assert await page.evaluate(f"{video}.muted") is False


async def test_player_starts_with_one_click_and_plays_over_the_data_channel(
    page, tmp_path, hls_folder, artifacts
):
    with trio.fail_after(60):
        async with playable_task(page, tmp_path, hls_folder) as (url, task_id, _, rtc):
            requests = await record_requests(page)
            await page.run(lambda p: p.add_init_script(REFUSE_FIRST_PLAY))
            await page.goto(f"{url}/player.html?id={task_id}&file=0")
            await shows(page, hook("start-button"))
            assert await prop(page, hook("connection-state"), "(el) => el.dataset.state") == (
                "connected"
            )
            assert await text(page, hook("connection-text")) == (
                "Connected to the worker (peer to peer)"
            )
            assert await text(page, hook("player-title")) == "episode 1.mp4"
            back = await prop(page, hook("back-link"), "(el) => el.getAttribute('href')")
            assert back == f"/task.html?id={task_id}"

            await page.run(lambda p: p.click(hook("start-button")))
            await until(page, "document.querySelector('video').currentTime > 2.5")
            shot = artifacts / "player.png"
            await page.run(lambda p: p.screenshot(path=str(shot), full_page=True))
            assert shot.stat().st_size > 0
            assert not await is_visible(page, hook("buffering"))
            assert not await is_visible(page, hook("start-button"))
            await until_text(page, hook("available"), f"Whole video available: 0:0{MEDIA_SECONDS}")
            await uses_the_controls(page)
            served = dict(rtc.stats["total"]["paths"])

    assert served.get("index.m3u8", 0) >= 1
    assert sum(n for path, n in served.items() if path.endswith(".ts")) >= 2
    media_over_http = [u for u in requests if u.split("?")[0].endswith((".m3u8", ".ts"))]
    assert media_over_http == []
    assert page_errors(page) == [], page.console


async def test_player_shows_a_failed_connection_and_retries_without_reload(
    page, tmp_path, hls_folder
):
    busy = "this worker already serves 8 streams; try again later"
    with trio.fail_after(60):
        async with playable_task(page, tmp_path, hls_folder, live=True) as (
            url,
            task_id,
            worker,
            _,
        ):
            worker.offer_errors.append(rpc.ApplicationError(-32006, busy))
            await page.goto(f"{url}/player.html?id={task_id}&file=0")
            await appears(page, hook("connection-state", state="failed"))
            assert busy in await text(page, hook("connection-text"))
            assert await is_visible(page, hook("retry-button"))
            assert "available so far" in await text(page, hook("available"))

            await page.evaluate("window.sameDocument = true")
            await page.run(lambda p: p.click(hook("retry-button")))
            await appears(page, hook("connection-state", state="connected"))
            await until(page, "document.querySelector('video').currentTime > 1")
            assert await page.evaluate("window.sameDocument === true")
            assert not await is_visible(page, hook("retry-button"))
            assert worker.offers == 2


async def test_api_token_is_asked_for_and_used_for_rpc_and_the_websocket(page, tmp_path):
    with trio.fail_after(60):
        async with open_a(page, tmp_path, api_token="s3cret") as (a, url):
            await a.db.add_task(parse_magnet(magnet(1, "Private")))
            await page.goto(url + "/")
            await shows(page, hook("token-dialog"))
            await page.run(lambda p: p.fill(hook("token-input"), "wrong"))
            await page.run(lambda p: p.click(hook("token-submit")))
            await until_text(page, "#token-reason", "refused")
            await page.run(lambda p: p.fill(hook("token-input"), "s3cret"))
            await page.run(lambda p: p.click(hook("token-submit")))

            await appears(page, hook("task-row"))
            await appears(page, hook("live-status", state="open"))
            assert not await is_visible(page, hook("token-dialog"))
            token = await page.evaluate("localStorage.getItem('torrentm3u8.token')")
            assert token == "s3cret"

            # Events reach the authenticated websocket.
            added = await a.service.add(magnet(2, "Second"))
            await appears(page, task_row(added["id"]))
