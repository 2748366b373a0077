"""Time to first frame: "play" (stream.open) to hls.js's `playing` in headless Chromium, over
A's signaling and B's data channel, next to hls.js over plain HTTP for the same playlist.

    python bench/bench_playback.py [--runs 7] [--seconds 12] [--size 1280x720]

Sets up the real thing on 127.0.0.1: a seeder, A (hypercorn), B in this process (libtorrent,
FFmpeg, aiortc), a task made playable from the seeder's torrent. Then, in alternation and each
in a fresh browser context, tests/p2p/pages/play.html plays B's rendition
  - P2P: `/ws` to A, stream.open / offer / candidate, static/js/p2p.js + hls-loader.js;
  - HTTP: hls.js's own loader, the same playlist and segments from a server on 127.0.0.1
    (tests/browser/conftest.py's test server, which also serves the page and static/).
The clock starts just before stream.open (P2P) or loadSource (HTTP); the websocket to A is
already open, as in the player page. Prints the medians and their ratio (goal: P2P <= 1.5x
HTTP); it never asserts a timing. Baseline (RECIPES.md): ~370 ms P2P vs ~340 ms HTTP.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import trio

REPO = Path(__file__).resolve().parents[1]
P2P_CONFTEST = REPO / "tests" / "p2p" / "conftest.py"
MIN_RUNS = 5
DEADLINE = 600  # seconds for the whole benchmark
SETUP_TIMEOUT = 120  # seconds to make the sample and get it playable
PLAY_TIMEOUT = 30_000  # ms for one page to reach `playing`
GOAL = 1.5  # P2P start-up time at most this many times HTTP's


def _p2p_support() -> Any:
    """tests/p2p/conftest.py (open_playable, load_browser_support); it imports tests/support."""
    # The repo first: tests/rpc/ (no __init__) must not shadow the rpc package.
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    spec = importlib.util.spec_from_file_location("p2p_support", P2P_CONFTEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def play_once(thread: Any, browser: Any, url: str) -> dict[str, Any]:
    """Open `url` in a fresh context, wait for window.bench to finish, return it."""

    def run() -> dict[str, Any]:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(url)
            page.wait_for_function(
                "window.bench?.done || window.bench?.error", timeout=PLAY_TIMEOUT
            )
            return page.evaluate("window.bench")
        finally:
            context.close()

    return await thread.run(run)


async def measure(runs: int, seconds: float, size: str) -> tuple[dict, dict]:
    """({mode: [ms to playing]}, {mode: {phase: [ms after play]}}) for modes p2p and http."""
    from torrentm3u8_b.samples import make_sample, make_torrent

    support = _p2p_support()
    browser_support = support.browser_support
    thread = browser_support.BrowserThread()

    def launch() -> tuple[Any, Any]:
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(
            executable_path=browser_support.CHROMIUM, args=browser_support.CHROMIUM_ARGS
        )
        return playwright, browser

    times: dict[str, list[float]] = {"p2p": [], "http": []}
    phases: dict[str, dict[str, list[float]]] = {"p2p": {}, "http": {}}
    with tempfile.TemporaryDirectory(prefix="bench-playback-") as tmp:
        base = Path(tmp)
        folder = base / "content" / "Bench Clip"
        folder.mkdir(parents=True)
        playwright, browser = await thread.run(launch)
        try:
            with trio.fail_after(DEADLINE):
                with trio.fail_after(SETUP_TIMEOUT):
                    await make_sample(folder / "clip.mp4", seconds=seconds, size=size)
                    torrent = await trio.to_thread.run_sync(make_torrent, folder)
                async with support.open_playable(base, torrent, folder.parent) as playable:
                    root = playable.hls_root
                    files = {name: root / name for name in playable.hls_files}
                    files["play.html"] = support.PAGES / "play.html"
                    async with browser_support.open_shim_server(None, root, files) as (http, _):
                        ws = "ws" + playable.url.removeprefix("http") + "/ws"
                        task, index = playable.task["id"], playable.file_index
                        pages = {
                            "p2p": f"{http}/files/play.html?mode=p2p&ws={ws}&task={task}"
                            f"&file={index}",
                            "http": f"{http}/files/play.html?mode=http&src={http}/files/index.m3u8",
                        }
                        for run in range(runs):
                            order = ("p2p", "http") if run % 2 == 0 else ("http", "p2p")
                            for mode in order:
                                result = await play_once(thread, browser, pages[mode])
                                if result.get("error"):
                                    sys.exit(f"{mode} run {run + 1} failed: {result['error']}")
                                times[mode].append(result["elapsed"])
                                for phase, ms in result["marks"].items():
                                    phases[mode].setdefault(phase, []).append(ms)
        finally:
            await thread.run(browser.close)
            await thread.run(playwright.stop)
            thread.shutdown()
    return times, phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help=f"plays each way (>= {MIN_RUNS})")
    parser.add_argument("--seconds", type=float, default=12, help="sample length (default 12)")
    parser.add_argument("--size", default="1280x720", help="sample frame size (1280x720)")
    args = parser.parse_args()
    runs = max(args.runs, MIN_RUNS)
    times, phases = trio.run(partial(measure, runs, args.seconds, args.size))
    medians = {mode: statistics.median(samples) for mode, samples in times.items()}
    print(f"play -> 'playing', H.264/AAC {args.size} {args.seconds:g} s, {runs} runs each way")
    labels = {"p2p": "P2P  (A /ws + data channel)", "http": "HTTP (hls.js, 127.0.0.1)"}
    for mode, samples in times.items():
        listed = " ".join(f"{ms:5.0f}" for ms in samples)
        print(f"  {labels[mode]:28} median {medians[mode]:5.0f} ms   runs: {listed}")
        steps = sorted(phases[mode].items(), key=lambda item: statistics.median(item[1]))
        shown = ", ".join(f"{name} {statistics.median(ms):.0f}" for name, ms in steps)
        print(f"  {'':28} medians after play (ms): {shown}")
    ratio = medians["p2p"] / medians["http"]
    verdict = "within" if ratio <= GOAL else "above"
    print(f"  ratio P2P/HTTP {ratio:.2f} ({verdict} the goal of <= {GOAL:g})")
    print("baseline (RECIPES.md): ~370 ms P2P (trickle ICE) vs ~340 ms HTTP")


if __name__ == "__main__":
    main()
