"""B -> Chromium over the WebRTC data channel vs an HTTP fetch of the same file on 127.0.0.1.

    python bench/bench_datachannel.py [--mb 50] [--runs 2]

Serves one random file both ways in the same run: B's RtcServer (aiortc on its asyncio thread,
64 KiB chunks, 1 MiB / 256 KiB backpressure) to static/js/p2p.js in headless Chromium, and the
test web server (tests/browser/conftest.py: hypercorn on 127.0.0.1:0, the same server that
does signaling) to `fetch()` in the same page. Prints MB/s for both and their ratio; it never
asserts a timing. Baseline (RECIPES.md): ~43 MB/s over the channel vs ~320 MB/s over HTTP.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from torrentm3u8_b.webrtc import open_rtc_server

REPO = Path(__file__).resolve().parents[1]
MB = 1_000_000
DEADLINE = 300  # seconds for the whole run

# The page's code: connect once, then time fetches of the same file both ways.
MEASURE = """async ([url, runs]) => {
  const client = p2pTest.client;
  await client.connect();
  const result = { channel: [], http: [] };
  for (let i = 0; i < runs; i++) {
    let start = performance.now();
    const got = await client.fetch('bench.bin');
    result.channel.push([got.data.byteLength, performance.now() - start]);
    start = performance.now();
    const body = await (await fetch(url + '/files/bench.bin', { cache: 'no-store' })).arrayBuffer();
    result.http.push([body.byteLength, performance.now() - start]);
  }
  return result;
}"""


def _browser_support() -> Any:
    """tests/browser/conftest.py: the Chromium flags, the Playwright thread and the web server."""
    path = REPO / "tests" / "browser" / "conftest.py"
    spec = importlib.util.spec_from_file_location("browser_support", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def run(size: int, runs: int) -> dict[str, list[list[float]]]:
    support = _browser_support()
    thread = support.BrowserThread()

    def launch() -> tuple[Any, Any, Any]:
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(
            executable_path=support.CHROMIUM, args=support.CHROMIUM_ARGS
        )
        return playwright, browser, browser.new_page()

    with tempfile.TemporaryDirectory(prefix="bench-datachannel-") as tmp:
        root = Path(tmp)
        (root / "bench.bin").write_bytes(os.urandom(size))
        playwright, browser, page = await thread.run(launch)
        try:
            with trio.fail_after(DEADLINE):
                async with (
                    open_rtc_server(loopback_only=True) as rtc,
                    support.open_shim_server(rtc, root, {"bench.bin": root / "bench.bin"}) as (
                        url,
                        _,
                    ),
                ):
                    await thread.run(page.goto, f"{url}/pages/p2p.html?play=0")
                    await thread.run(page.wait_for_function, "window.p2pTest?.ready")
                    return await thread.run(page.evaluate, MEASURE, [url, runs])
        finally:
            await thread.run(browser.close)
            await thread.run(playwright.stop)
            thread.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50, help="file size in MB (default 50)")
    parser.add_argument("--runs", type=int, default=2, help="transfers each way (default 2)")
    args = parser.parse_args()
    size = args.mb * MB
    result = trio.run(run, size, args.runs)
    best = {}
    for way, samples in result.items():
        for length, _ in samples:
            if length != size:
                sys.exit(f"{way}: got {length} bytes, expected {size}")
        rates = [size / MB / (ms / 1000) for _, ms in samples]
        best[way] = max(rates)
        print(f"{way:8} {' '.join(f'{r:7.1f}' for r in rates)} MB/s  (best {best[way]:.1f})")
    print(f"channel/http ratio {best['channel'] / best['http']:.2f}  ({args.mb} MB, 64 KiB chunks)")
    print("baseline (RECIPES.md): channel ~43 MB/s, http ~320 MB/s, ratio ~0.13")


if __name__ == "__main__":
    main()
