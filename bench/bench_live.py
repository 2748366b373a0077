"""Watching while downloading: time from task.add to the first live rendition, next to the
download-then-HLS path on the same file in the same run.

    python bench/bench_live.py [--seconds 60] [--size 640x360] [--speed 2.0] [--browser]

Sets up the real thing on 127.0.0.1: a libtorrent seeder throttled to `speed` times the clip's
bitrate, A (hypercorn) and B (libtorrent, FFmpeg) in this process. For each path, with a fresh
seeder, A and B: the time from task.add until A stores the first `task.hls_ready` (live for the
progressive path, final for the other), how much of the file the seeder had sent by then (an
upper bound of what B had), and the time until the task is playable. With --browser, headless
Chromium opens the player page right after task.add (it starts by itself) and the time to the
video's first frame (`currentTime > 0`) is printed too, and then the time a seek to 75 % takes
to play: past the download on the progressive path, within the finished rendition (a plain
hls.js seek) on the other. Never asserts a timing.
Baseline (RECIPES.md): 120 s 720p at 2x bitrate, first segment 4.9-7.7 s, playing at 5.2 s
with 7 % downloaded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the repo first: tests/rpc/ has no __init__

from support import WORKER_TOKEN, http_rpc, run_a, wait_task  # noqa: E402

from torrentm3u8_b.config import WorkerConfig  # noqa: E402
from torrentm3u8_b.samples import make_sample, make_torrent  # noqa: E402
from torrentm3u8_b.seeder import open_seeder  # noqa: E402
from torrentm3u8_b.worker import run_worker  # noqa: E402

PIECE_SIZE = 65_536  # bytes
RUN_TIMEOUT = 600  # seconds for one path
PLAY_TIMEOUT = 300_000  # ms for the player page to show a frame
BROWSER_CONFTEST = REPO / "tests" / "browser" / "conftest.py"
SEEK_TO = 0.75  # of the duration: the seek the --browser run times once playing
VIDEO = "document.querySelector('video')"
POSITION = f"(Number({VIDEO}.dataset.start || 0) + {VIDEO}.currentTime)"


def _browser_support():
    """tests/browser/conftest.py: BrowserThread, CHROMIUM, CHROMIUM_ARGS."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("browser_support", BROWSER_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def time_to_playing(thread, browser, url: str, seek_to: float, on_frame) -> float:
    """Open the player page; call on_frame() once the video shows a frame, then move the
    seek bar to `seek_to` seconds and return the seconds until it plays from there."""

    def run() -> float:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(url)
            page.wait_for_function(f"{VIDEO}.currentTime > 0", timeout=PLAY_TIMEOUT)
            on_frame()
            asked = time.perf_counter()
            page.fill("[data-testid=seek]", f"{seek_to:.1f}")
            # From the keyframe before the target (2 s apart in the samples), and moving.
            there = f"{POSITION} >= {seek_to - 2.1} && {POSITION} < {seek_to + 3}"
            page.wait_for_function(f"{there} && !{VIDEO}.seeking && {VIDEO}.readyState >= 3")
            position = page.evaluate(POSITION)
            page.wait_for_function(f"{POSITION} > {position + 0.2}", timeout=PLAY_TIMEOUT)
            return time.perf_counter() - asked
        finally:
            context.close()

    return await thread.run(run)


async def one_path(
    root: Path, clip: Path, seconds: int, speed: float, live: bool, chromium=None
) -> dict:
    torrent = await trio.to_thread.run_sync(lambda: make_torrent(clip, piece_size=PIECE_SIZE))
    size = (await trio.Path(clip).stat()).st_size
    limit = int(speed * size / seconds)
    result: dict = {}
    with trio.fail_after(RUN_TIMEOUT):
        async with (
            run_a(root / "a") as (a, url),
            open_seeder(torrent, clip.parent, upload_limit=limit) as seeder,
            trio.open_nursery() as nursery,
        ):
            config = WorkerConfig(
                server="ws" + url.removeprefix("http") + "/worker",
                data_dir=root / "b",
                token=WORKER_TOKEN,
                worker_id="bench-live",
                loopback_only=True,
                progress_interval=0.5,
                # No periodic resume saves: one overlapping the final save can fail the task
                # (torrents.py writes both through the same .tmp file; reported).
                resume_save_interval=3600,
            )
            config.watch_while_downloading = live
            await nursery.start(run_worker, config)
            began = time.perf_counter()
            task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
            shown = trio.Event()
            if chromium is not None:

                def on_frame() -> None:  # in the browser's thread: plain values only
                    result["playing"] = time.perf_counter() - began
                    result["playing_percent"] = 100 * seeder.uploaded_bytes() / size

                async def watch() -> None:
                    page = f"{url}/player.html?id={task['id']}&file=0"
                    result["seek"] = await time_to_playing(
                        *chromium, page, SEEK_TO * seconds, on_frame
                    )
                    result["seek_percent"] = 100 * seeder.uploaded_bytes() / size
                    shown.set()

                nursery.start_soon(watch)
            first = await wait_task(a, task["id"], lambda t: t["hls"], what="a rendition")
            result["first_hls"] = time.perf_counter() - began
            result["percent"] = 100 * seeder.uploaded_bytes() / size
            result["live"] = first["hls"][0]["live"]
            result["segments"] = first["hls"][0]["segments"]
            done = await wait_task(a, task["id"], lambda t: t["state"] == "playable", what="end")
            result["playable"] = time.perf_counter() - began
            result["duration"] = done["hls"][0]["duration"]
            if chromium is not None:
                await shown.wait()  # the page may still be starting (download-then-HLS path)
            nursery.cancel_scope.cancel()
    return result


async def main(seconds: int, size: str, speed: float, use_browser: bool) -> None:
    chromium, stop = None, None
    if use_browser:
        support = _browser_support()
        thread = support.BrowserThread()

        def launch():
            from playwright.sync_api import sync_playwright

            playwright = sync_playwright().start()
            return playwright, playwright.chromium.launch(
                executable_path=support.CHROMIUM, args=support.CHROMIUM_ARGS
            )

        playwright, browser = await thread.run(launch)
        chromium = (thread, browser)

        async def stop():
            await thread.run(browser.close)
            await thread.run(playwright.stop)
            thread.shutdown()

    try:
        await measure(seconds, size, speed, chromium)
    finally:
        if stop is not None:
            await stop()


async def measure(seconds: int, size: str, speed: float, chromium) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        root = Path(tmp)
        folder = root / "content"
        folder.mkdir()
        began = time.perf_counter()
        clip = await make_sample(folder / "clip.mp4", seconds=seconds, size=size)
        bitrate = (await trio.Path(clip).stat()).st_size * 8 / seconds / 1000
        print(
            f"source: {seconds} s {size} H.264/AAC MP4, {bitrate:.0f} kbit/s, made in "
            f"{time.perf_counter() - began:.1f} s; seeder at {speed:g}x the bitrate"
        )
        for live, label in ((True, "watch while downloading"), (False, "download, then HLS")):
            r = await one_path(
                root / ("live" if live else "vod"), clip, seconds, speed, live, chromium
            )
            kind = f"live, {r['segments']} segments" if r["live"] else "final"
            print(
                f"{label:23}: first hls_ready ({kind}) {r['first_hls']:.1f} s at "
                f"{r['percent']:.0f} % downloaded; playable {r['playable']:.1f} s "
                f"({r['duration']:.1f} s of video)"
            )
            if "playing" in r:
                print(
                    f"{'':23}  Chromium shows the first frame at {r['playing']:.1f} s, "
                    f"{r['playing_percent']:.0f} % downloaded"
                )
            if "seek" in r:
                where = "past the download" if r["live"] else "in the finished rendition"
                print(
                    f"{'':23}  a seek to {SEEK_TO:.0%} ({where}) plays after {r['seek']:.1f} s, "
                    f"{r['seek_percent']:.0f} % downloaded then"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--speed", type=float, default=2.0)
    parser.add_argument("--browser", action="store_true", help="time to a frame in Chromium")
    args = parser.parse_args()
    trio.run(main, args.seconds, args.size, args.speed, args.browser)
