"""Headless Chromium plays HLS from B over a WebRTC data channel (static/js/p2p.js + hls-loader.js).

The page is tests/browser/pages/p2p.html; SignalingShim (conftest.py) serves it with static/
and stands in for A's signaling. The HLS folder is never served over HTTP: the shim records
every request, and none may ask for a playlist or a segment.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from torrentm3u8_b.samples import make_sample
from torrentm3u8_b.transcode import make_hls
from torrentm3u8_b.webrtc import open_rtc_server

STATIC = Path(__file__).resolve().parents[2] / "static"

pytestmark = pytest.mark.browser

MEDIA_SECONDS = 12


@pytest.fixture(scope="module")
def hls_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s of H.264/AAC test pattern made into HLS (4 s segments) by B's own FFmpeg step."""
    base = tmp_path_factory.mktemp("p2p")

    async def make() -> None:
        clip = await make_sample(base / "clip.mp4", seconds=MEDIA_SECONDS, size="320x240")
        await make_hls(str(clip), base / "hls")

    trio.run(make)
    return base / "hls"


def _segments(folder: Path) -> list[str]:
    lines = (folder / "index.m3u8").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


async def test_hls_plays_over_the_data_channel_and_never_over_http(
    page, hls_folder, open_shim_server
):
    with trio.fail_after(60):
        async with (
            open_rtc_server(loopback_only=True) as rtc,
            open_shim_server(rtc, hls_folder) as (url, shim),
        ):
            await page.goto(f"{url}/pages/p2p.html")
            await page.wait_for_function(
                "window.p2pTest?.playing && document.getElementById('video').currentTime > 5",
                within_ms=40_000,
            )
            states = await page.evaluate("p2pTest.states.map((s) => s.state)")
            errors = await page.evaluate("p2pTest.errors")
            stats = rtc.stats["total"]

    assert states[:2] == ["connecting", "connected"], page.console
    # hls.js reports small timestamp gaps at the start as non-fatal and jumps them.
    assert [e for e in errors if e.endswith("/true")] == [], (errors, page.console)
    assert stats["paths"]["index.m3u8"] == 1
    fetched = [name for name in _segments(hls_folder) if name in stats["paths"]]
    # 5 s of playback needs the first two 4 s segments; hls.js buffers ahead, in order.
    assert len(fetched) >= 2
    assert fetched == _segments(hls_folder)[: len(fetched)]
    assert stats["bytes_sent"] >= sum((hls_folder / n).stat().st_size for n in fetched)
    media_over_http = [path for _, path in shim.requests if path.endswith((".m3u8", ".ts"))]
    assert media_over_http == []
    assert ("POST", "/signal/offer") in shim.requests


async def test_p2p_client_fetch_abort_errors_and_close(page, hls_folder, open_shim_server):
    playlist = (hls_folder / "index.m3u8").read_text()
    with trio.fail_after(60):
        async with (
            open_rtc_server(loopback_only=True) as rtc,
            open_shim_server(rtc, hls_folder) as (url, shim),
        ):
            await page.goto(f"{url}/pages/p2p.html?play=0")
            await page.wait_for_function("window.p2pTest?.ready")
            result = await page.evaluate(
                """async (segments) => {
                  const client = p2pTest.client;
                  const text = (r) => new TextDecoder().decode(r.data);
                  const playlist = await client.fetch('index.m3u8');
                  const missing = await client.fetch('nope.ts');
                  const escape = await client.fetch('../index.m3u8');
                  const many = await Promise.all(segments.map((s) => client.fetch(s)));
                  const controller = new AbortController();
                  const aborted = client.fetch(segments[0], { signal: controller.signal });
                  controller.abort();
                  let abortName = null;
                  try { await aborted; } catch (e) { abortName = e.name; }
                  const after = await client.fetch('index.m3u8');
                  return {
                    playlist: text(playlist), type: playlist.type,
                    missing: [missing.status, missing.error],
                    escape: escape.status,
                    sizes: many.map((r) => r.data.byteLength),
                    abortName, after: after.status, state: client.state,
                  };
                }""",
                _segments(hls_folder),
            )
            session_id = shim.sessions[0]
            served = rtc.stats["sessions"][session_id]
            await page.evaluate("p2pTest.client.close()")
            await rtc.wait_closed(session_id)
            count_after_close = rtc.session_count
            # The client tears its connection down first and tells signaling afterwards, so
            # B can see the session end before the close request reaches the shim.
            await shim.wait_request("POST", "/signal/close")

    assert result["playlist"] == playlist
    assert result["type"] == "application/vnd.apple.mpegurl"
    assert result["missing"][0] == 404
    assert "nope.ts" in result["missing"][1]
    assert result["escape"] == 403
    assert result["sizes"] == [(hls_folder / n).stat().st_size for n in _segments(hls_folder)]
    assert result["abortName"] == "AbortError"
    assert result["after"] == 200
    assert result["state"] == "connected"
    assert served["failed"] == 2
    assert count_after_close == 0


async def test_loader_refuses_http_urls_and_reports_errors_to_hls_js(
    page, hls_folder, open_shim_server
):
    first = _segments(hls_folder)[0]
    with trio.fail_after(60):
        async with (
            open_rtc_server(loopback_only=True) as rtc,
            open_shim_server(rtc, hls_folder) as (url, shim),
        ):
            await page.goto(f"{url}/pages/p2p.html?play=0")
            await page.wait_for_function("window.p2pTest?.ready")
            result = await page.evaluate(
                """async ([base, segment]) => {
                  const { makeP2PLoader } = await import('/static/js/hls-loader.js');
                  const Loader = makeP2PLoader(p2pTest.client);
                  const policy = {
                    maxTimeToFirstByteMs: 8000, maxLoadTimeMs: 20000,
                    timeoutRetry: null, errorRetry: null,
                  };
                  const load = (url, responseType) => new Promise((resolve) => {
                    const loader = new Loader({});
                    const stats = loader.stats;
                    loader.load({ url, responseType }, { loadPolicy: policy }, {
                      onSuccess: (r, s) => resolve({ ok: r.code, kind: typeof r.data,
                        sameStats: s === stats, loaded: s.loaded }),
                      onError: (e) => resolve({ error: e.code, text: e.text }),
                      onTimeout: () => resolve({ timeout: true }),
                    });
                  });
                  return {
                    http: await load(base + '/pages/' + segment, 'arraybuffer'),
                    missing: await load('p2p://stream/none.ts', 'arraybuffer'),
                    playlist: await load('p2p://stream/index.m3u8', 'text'),
                    segment: await load(`p2p://stream/${segment}?x=1`, 'arraybuffer'),
                  };
                }""",
                [url, first],
            )

    assert result["http"]["error"] == 0
    assert "never over HTTP" in result["http"]["text"]
    assert ("GET", f"/pages/{first}") not in shim.requests
    assert result["missing"]["error"] == 404
    assert result["playlist"] == {
        "ok": 200,
        "kind": "string",
        "sameStats": True,
        "loaded": (hls_folder / "index.m3u8").stat().st_size,
    }
    assert result["segment"]["kind"] == "object"
    assert result["segment"]["loaded"] == (hls_folder / first).stat().st_size


async def test_loader_timeouts_retries_and_abort_follow_the_load_policy(page, open_shim_server):
    """Against a scripted stand-in for P2PClient (its fetch interface only), in the browser."""
    with trio.fail_after(60):
        async with (
            open_rtc_server(loopback_only=True) as rtc,
            open_shim_server(rtc, STATIC) as (url, _),
        ):
            await page.goto(f"{url}/pages/p2p.html?play=0")
            await page.wait_for_function("window.p2pTest?.ready")
            result = await page.evaluate(
                """async () => {
                  const { makeP2PLoader } = await import('/static/js/hls-loader.js');
                  const calls = [];
                  const client = {  // answers each path with a scripted list of outcomes
                    script: {
                      'slow.ts': ['hang', 'hang'], 'flaky.ts': [500, 200], 'gone.ts': [404],
                    },
                    fetch(path, { signal }) {
                      calls.push(path);
                      const next = this.script[path].shift();
                      return new Promise((resolve, reject) => {
                        signal.addEventListener('abort', () => {
                          calls.push('abort ' + path);
                          reject(new DOMException('aborted', 'AbortError'));
                        });
                        if (next === 'hang') return;
                        resolve({ status: next, size: 3, data: new Uint8Array([1, 2, 3]).buffer });
                      });
                    },
                  };
                  const Loader = makeP2PLoader(client);
                  const retry = { maxNumRetry: 1, retryDelayMs: 10, maxRetryDelayMs: 10 };
                  const policy = {
                    maxTimeToFirstByteMs: 150, maxLoadTimeMs: 300,
                    timeoutRetry: retry, errorRetry: retry,
                  };
                  const load = (name) => new Promise((resolve) => {
                    const loader = new Loader({});
                    loader.load(
                      { url: 'p2p://stream/' + name, responseType: 'arraybuffer' },
                      { loadPolicy: policy },
                      {
                        onSuccess: (r, s) => resolve(['success', r.code, s.retry]),
                        onError: (e, c, n, s) => resolve(['error', e.code, s.retry]),
                        onTimeout: (s) => resolve(['timeout', s.retry, s.aborted]),
                      },
                    );
                  });
                  const out = {
                    slow: await load('slow.ts'),
                    flaky: await load('flaky.ts'),
                    gone: await load('gone.ts'),
                  };
                  client.script['hung.ts'] = ['hang'];
                  const loader = new Loader({});
                  let aborted = null;
                  loader.load(
                    { url: 'p2p://stream/hung.ts', responseType: 'arraybuffer' },
                    { loadPolicy: policy },
                    {
                      onSuccess() {}, onError() {}, onTimeout() {},
                      onAbort: (s) => { aborted = s.aborted; },
                    },
                  );
                  loader.abort();
                  out.abort = aborted;
                  out.calls = calls;
                  return out;
                }"""
            )

    assert result["slow"] == ["timeout", 1, True]  # retried once, then hls.js's onTimeout
    assert result["flaky"] == ["success", 200, 1]  # a 500 is retried
    assert result["gone"] == ["error", 404, 0]  # a 404 is not
    assert result["abort"] is True
    assert result["calls"] == [
        "slow.ts",
        "abort slow.ts",
        "slow.ts",
        "abort slow.ts",
        "flaky.ts",
        "flaky.ts",
        "gone.ts",
        "hung.ts",
        "abort hung.ts",
    ]
