"""Seeking past what is downloaded, in the player page: headless Chromium, real A, real B, a
throttled libtorrent seeder at about twice the clip's bitrate. The viewer moves the seek bar
to 75 % of the video while about a sixth of it has downloaded; B makes a rendition that
starts there and the page plays it, long before the download gets there."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio
from support import http_rpc, run_a, wait_task

from torrentm3u8_b.samples import make_torrent
from torrentm3u8_b.seeder import open_seeder

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.deadline(180)]

SPEED = 2.0  # the seeder sends at this many times the clip's bitrate
SEEK_BEFORE = 25.0  # percent of the file downloaded, at most, when the viewer seeks
TARGET = 0.75  # of the duration
KEYFRAME_SECONDS = 2.0  # the samples' keyframe interval: a rendition starts at one
VIDEO = "document.querySelector('video')"
POSITION = f"(Number({VIDEO}.dataset.start) + {VIDEO}.currentTime)"


def seconds(clock: str) -> int:
    minutes, _, rest = clock.partition(":")
    return 60 * int(minutes) + int(rest)


async def test_a_seek_to_three_quarters_plays_from_there_while_downloading(
    tmp_path, clips, clip_seconds, start_b, page
):
    clip = clips["mkv"]
    torrent = await trio.to_thread.run_sync(lambda: make_torrent(clip, piece_size=65_536))
    size = clip.stat().st_size
    target = TARGET * clip_seconds
    async with AsyncExitStack() as stack:
        a, url = await stack.enter_async_context(run_a(tmp_path / "a"))
        seeder = await stack.enter_async_context(
            open_seeder(torrent, clip.parent, upload_limit=int(SPEED * size / clip_seconds))
        )
        task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
        worker = await stack.enter_async_context(start_b(url, tmp_path / "b"))
        await page.goto(f"{url}/player.html?id={task['id']}&file=0")
        await page.wait_for_function(f"{VIDEO}.currentTime > 0.5", within_ms=60_000)

        # The viewer drags the seek bar to 75 %: the bar spans the whole video already.
        seek_max = await page.evaluate("Number(document.querySelector('[data-testid=seek]').max)")
        seek_percent = 100 * seeder.uploaded_bytes() / size  # at least what B has
        await page.run(lambda p: p.fill("[data-testid=seek]", f"{target:.1f}"))
        await page.wait_for_function(
            f"Number({VIDEO}.dataset.start) > 0 && {VIDEO}.currentTime > 0.5 && !{VIDEO}.paused",
            within_ms=40_000,
        )
        started_at = await page.evaluate(POSITION)
        await page.wait_for_function(f"{POSITION} > {started_at + 2}", within_ms=10_000)
        # The rest at twice the speed, to keep the suite short: still behind what downloads.
        await page.evaluate(f"{VIDEO}.playbackRate = 2")
        playing_percent = 100 * seeder.uploaded_bytes() / size
        clock = await page.evaluate("document.querySelector('[data-testid=clock]').textContent")
        start = await page.evaluate(f"Number({VIDEO}.dataset.start)")
        state = (await a.service.get(task["id"]))["state"]
        served = dict(worker.rtc.stats["total"]["paths"])

        # It plays on to the end of the video, and the task still completes.
        await page.wait_for_function(f"{VIDEO}.ended", within_ms=(clip_seconds + 30) * 1000)
        end = await page.evaluate(POSITION)
        done = await wait_task(a, task["id"], lambda t: t["state"] == "playable", what="playable")
        await page.run(lambda p: p.context.close())  # before A stops (keep-alive connections)

    assert seek_max == pytest.approx(clip_seconds, abs=0.5)  # the bar covered the whole video
    assert seek_percent < SEEK_BEFORE, f"seeked only at {seek_percent:.0f} % downloaded"
    assert target - KEYFRAME_SECONDS - 0.2 <= start <= target, start
    assert started_at >= target - KEYFRAME_SECONDS - 0.2, started_at
    # Playing from 75 % while the download is nowhere near there.
    assert playing_percent < 100 * TARGET - 15, playing_percent
    assert state == "downloading"
    shown, total = (seconds(part) for part in clock.split(" / "))  # the whole video's clock
    assert (shown >= target - KEYFRAME_SECONDS - 0.2, total) == (True, clip_seconds), clock
    seek_segments = [path for path in served if path.startswith("seek-") and path.endswith(".ts")]
    assert seek_segments, served
    assert abs(end - clip_seconds) < 1.0, end
    assert done["state"] == "playable"
    errors = [line for line in page.console if line.startswith("pageerror")]
    assert errors == [], page.console
