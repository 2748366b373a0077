"""The player page plays a video while it downloads: headless Chromium, real A, real B, a
throttled libtorrent seeder at about twice the clip's bitrate."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio
from support import http_rpc, run_a

from torrentm3u8_b.samples import make_torrent
from torrentm3u8_b.seeder import open_seeder

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.deadline(180)]

SPEED = 2.0  # the seeder sends at this many times the clip's bitrate
PLAY_BEFORE = 25.0  # percent of the file downloaded, at most, when playback starts
VIDEO = "document.querySelector('video')"


async def test_playback_starts_early_and_plays_to_the_end(
    tmp_path, clips, clip_seconds, start_b, page
):
    clip = clips["faststart_mp4"]
    torrent = await trio.to_thread.run_sync(lambda: make_torrent(clip, piece_size=65_536))
    size = clip.stat().st_size
    async with AsyncExitStack() as stack:
        a, url = await stack.enter_async_context(run_a(tmp_path / "a"))
        seeder = await stack.enter_async_context(
            open_seeder(torrent, clip.parent, upload_limit=int(SPEED * size / clip_seconds))
        )
        task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
        await stack.enter_async_context(start_b(url, tmp_path / "b"))
        # The page opens before anything is playable and starts by itself.
        await page.goto(f"{url}/player.html?id={task['id']}&file=0")
        await page.wait_for_function(f"{VIDEO}.currentTime > 0.5", within_ms=60_000)
        percent = 100 * seeder.uploaded_bytes() / size  # at least what B has
        state = (await a.service.get(task["id"]))["state"]
        first = await page.evaluate(f"{VIDEO}.currentTime")
        await page.wait_for_function(f"{VIDEO}.currentTime > {first + 2}", within_ms=10_000)
        # The rest at twice the speed, to keep the suite short: still behind what downloads.
        await page.evaluate(f"{VIDEO}.playbackRate = 2")
        available = await page.evaluate("document.getElementById('available').textContent")
        await page.wait_for_function(f"{VIDEO}.ended", within_ms=(clip_seconds + 30) * 1000)
        end = await page.evaluate(f"[{VIDEO}.duration, {VIDEO}.currentTime]")
        done = await a.service.get(task["id"])
        await page.run(lambda p: p.context.close())  # before A stops (keep-alive connections)

    assert percent < PLAY_BEFORE, f"playing only at {percent:.0f} % downloaded"
    assert state == "downloading"
    assert "available so far" in available, available  # read while it still downloads
    assert abs(end[0] - clip_seconds) < 1.0, end
    assert abs(end[1] - clip_seconds) < 1.0, end
    assert done["state"] == "playable"
    assert [h["live"] for h in done["hls"]] == [False]
    errors = [line for line in page.console if line.startswith("pageerror")]
    assert errors == [], page.console
