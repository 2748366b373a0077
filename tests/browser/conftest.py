"""Headless Debian Chromium for the browser tests, driven by Playwright from trio tests.

Playwright is asyncio-only, and its sync API binds every object to the thread that made it.
So one dedicated thread (a single-worker executor) owns Playwright, the browser and every page;
trio tests hand it work with `await page.run(lambda p: p.goto(url))`, which waits in a trio
worker thread and never blocks the trio loop. A test that hits its trio deadline moves on;
Playwright's own timeouts (PAGE_TIMEOUT) end whatever the browser thread was doing.

Missing Chromium or static/vendor/hls.min.js fails loudly; set TORRENTM3U8_SKIP_BROWSER=1 to
skip these tests instead (e.g. on a machine without a browser).
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import os
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import hypercorn.config
import hypercorn.trio
import pytest
import trio

from torrentm3u8_b.webrtc import RtcBusy, RtcServer

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "static"
PAGES = Path(__file__).resolve().parent / "pages"
FILE_CHUNK = 1024 * 1024  # bytes per body message when the shim sends a file
CHROMIUM = os.environ.get("TORRENTM3U8_CHROMIUM", "/usr/bin/chromium")
PAGE_TIMEOUT = 20_000  # ms: Playwright's default for every page action and wait
LAUNCH_TIMEOUT = 30_000  # ms

# RECIPES.md: loopback only, no Google lookups at launch, raw IPs instead of mDNS names.
# Playwright passes its own --disable-features list first; this later one takes effect (checked:
# host candidates are IPs, not .local names) and repeats the features of Playwright's list that
# keep Chromium off the network, whether Chromium merges repeated switches or keeps the last.
# No --user-data-dir: Playwright refuses it and gives every launch a fresh temporary profile.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    "--webrtc-ip-handling-policy=default_public_interface_only",
    "--disable-features=WebRtcHideLocalIpsWithMdns,MediaRouter,OptimizationHints,"
    "NetworkTimeServiceQuerying,AimEnabled,PreconnectToSearch,HttpsUpgrades,"
    "HttpsFirstBalancedModeAutoEnable,Translate,LensOverlay",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set TORRENTM3U8_CHROMIUM)"
    if not (STATIC / "vendor" / "hls.min.js").exists():
        return "static/vendor/hls.min.js is missing: run scripts/fetch-hlsjs"
    return None


class BrowserThread:
    """Runs callables on the one thread that owns Playwright."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="playwright")

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """From synchronous code (session fixtures)."""
        return self._executor.submit(fn, *args).result()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """From trio: wait in a worker thread; a trio cancellation stops waiting."""
        future = self._executor.submit(fn, *args)
        return await trio.to_thread.run_sync(future.result, abandon_on_cancel=True)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


class Page:
    """A Playwright page seen from trio: `await page.run(lambda p: p.title())`."""

    def __init__(self, thread: BrowserThread, page: Any) -> None:
        self._thread = thread
        self.page = page
        self.console: list[str] = []  # console messages and page errors, for failure reports

    def _listen(self) -> None:  # on the browser thread
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._thread.run(fn, self.page, *args)

    async def goto(self, url: str) -> None:
        await self.run(lambda p: p.goto(url))

    async def evaluate(self, expression: str, arg: Any = None) -> Any:
        return await self.run(lambda p: p.evaluate(expression, arg))

    async def wait_for_function(self, expression: str, *, within_ms: float = PAGE_TIMEOUT) -> None:
        """Wait until the JS expression is truthy; Playwright fails it after `within_ms`."""
        await self.run(lambda p: p.wait_for_function(expression, timeout=within_ms))


@pytest.fixture(scope="session")
def chromium() -> Iterator[tuple[BrowserThread, Any]]:
    missing = _missing()
    if missing:
        if os.environ.get("TORRENTM3U8_SKIP_BROWSER"):
            pytest.skip(missing)
        pytest.fail(f"{missing}; or set TORRENTM3U8_SKIP_BROWSER=1 to skip browser tests")
    thread = BrowserThread()

    def launch() -> tuple[Any, Any]:
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT
        )
        return playwright, browser

    def stop(playwright: Any, browser: Any) -> None:
        try:
            browser.close()
        finally:
            playwright.stop()

    playwright, browser = thread.call(launch)
    try:
        yield thread, browser
    finally:
        thread.call(stop, playwright, browser)
        thread.shutdown()


@pytest.fixture
async def page(chromium: tuple[BrowserThread, Any]) -> Any:
    """A fresh browser context and page per test (Playwright's profile is a fresh temp dir)."""
    thread, browser = chromium

    def open_page() -> Any:
        context = browser.new_context()
        context.set_default_timeout(PAGE_TIMEOUT)
        return context.new_page()

    trio_page = Page(thread, await thread.run(open_page))
    await thread.run(trio_page._listen)
    try:
        yield trio_page
    finally:
        with trio.CancelScope(shield=True):
            await thread.run(lambda: trio_page.page.context.close())


# --- a minimal web server: static/, the test pages, and signaling for one HLS folder ---------


class SignalingShim:
    """ASGI app standing in for A: GET /static/..., /pages/..., /files/<name> (extra files, for
    HTTP comparisons); POST /signal/{open,offer,candidate,close} drive `rtc` for `hls_root`.
    Every request is recorded in `requests` as (method, path); `wait_request` waits for one."""

    def __init__(self, rtc: RtcServer, hls_root: Path, files: dict[str, Path] | None = None):
        self.rtc = rtc
        self.hls_root = hls_root
        self.files = files or {}
        self.requests: list[tuple[str, str]] = []
        self.sessions: list[str] = []
        self._arrived = trio.Event()

    async def wait_request(self, method: str, path: str) -> None:
        while (method, path) not in self.requests:
            await self._arrived.wait()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        method, path = scope["method"], scope["path"]
        self.requests.append((method, path))
        self._arrived.set()
        self._arrived = trio.Event()
        if method == "POST" and path.startswith("/signal/"):
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            status, result = await self._signal(path.removeprefix("/signal/"), json.loads(body))
            await _respond(send, status, json.dumps(result).encode(), "application/json")
        elif method == "GET":
            await self._get(path, send)
        else:
            await _respond(send, 405, b"method not allowed", "text/plain")

    async def _signal(self, op: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if op == "open":
            session_id = f"s{len(self.sessions) + 1}"
            self.sessions.append(session_id)
            return 200, {"session_id": session_id, "ice_servers": [], "ice_transport_policy": "all"}
        session_id = params["session_id"]
        if op == "offer":
            try:
                sdp = await self.rtc.answer(
                    session_id, params["sdp"], root=self.hls_root, ice_servers=[]
                )
            except RtcBusy as error:
                return 503, {"error": str(error)}
            return 200, {"sdp": sdp}
        if op == "candidate":
            await self.rtc.add_candidate(session_id, params.get("candidate"))
            return 200, {}
        if op == "close":
            await self.rtc.close(session_id)
            return 200, {}
        return 404, {"error": f"no signaling op {op!r}"}

    async def _get(self, path: str, send: Any) -> None:
        if path.startswith("/static/"):
            base, name = STATIC, path.removeprefix("/static/")
        elif path.startswith("/pages/"):
            base, name = PAGES, path.removeprefix("/pages/")
        elif path.startswith("/files/") and path.removeprefix("/files/") in self.files:
            await _send_file(send, self.files[path.removeprefix("/files/")])
            return
        else:
            await _respond(send, 404, b"not found", "text/plain")
            return
        target = (base / name).resolve()
        if not target.is_relative_to(base) or not target.is_file():
            await _respond(send, 404, b"not found", "text/plain")
            return
        await _send_file(send, target)


async def _respond(send: Any, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_file(send: Any, path: Path) -> None:
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix == ".js":
        content_type = "text/javascript"
    async with await trio.open_file(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", b"%d" % size),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        while chunk := await file.read(FILE_CHUNK):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture(name="open_shim_server")
def _open_shim_server_fixture() -> Callable[..., Any]:
    """The `open_shim_server` context manager (conftest modules cannot be imported)."""
    return open_shim_server


@contextlib.asynccontextmanager
async def open_shim_server(
    rtc: RtcServer, hls_root: Path, files: dict[str, Path] | None = None
) -> AsyncIterator[tuple[str, SignalingShim]]:
    """Serve a SignalingShim with hypercorn on 127.0.0.1:0; yields (base URL, shim)."""
    shim = SignalingShim(rtc, hls_root, files)
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(hypercorn.trio.serve, shim, config, shutdown_trigger=stop.wait)
        )
        try:
            yield binds[0], shim
        finally:
            stop.set()
