"""`kill -9` of B (a real `torrentm3u8-b` process) in the middle of a download: B started again
on the same data directory resumes from what is on disk, the task ends playable, A's rows are
those of one task on one worker, and the seeder did not send the fetched part again."""

from __future__ import annotations

import pytest
from support import http_rpc, run_a, wait_task, worker_command

from torrentm3u8_b.seeder import open_seeder

pytestmark = [pytest.mark.slow, pytest.mark.deadline(120)]

DOWNLOAD_SECONDS = 10  # the seeder's upload limit makes the download last about this long
KILL_AT = (30.0, 60.0)  # percent: B is killed once A has seen progress in this range


async def test_kill_9_of_b_mid_download_resumes(tmp_path, clip_torrent, processes):
    torrent, content, size = clip_torrent
    limit = size // DOWNLOAD_SECONDS
    async with (
        run_a(tmp_path / "a") as (a, url),
        open_seeder(torrent, content, upload_limit=limit) as seeder,
    ):
        task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
        command = worker_command(url, tmp_path / "b", progress_interval=0.3)
        b = await processes.start(command)
        seen = await wait_task(
            a,
            task["id"],
            lambda t: (t["progress"] or {}).get("percent", 0) >= KILL_AT[0],
            what=f"{KILL_AT[0]} % downloaded",
        )
        await processes.kill_9(b)
        assert seen["state"] == "downloading"
        assert seen["progress"]["percent"] <= KILL_AT[1], "the throttle let it run too fast"
        fetched_before = seeder.uploaded_bytes()

        b = await processes.start(command)  # same --data, same worker id
        done = await wait_task(
            a, task["id"], lambda t: t["state"] == "playable", what="playable after restart"
        )
        await processes.kill_9(b)
        uploaded = seeder.uploaded_bytes()
        tasks = (await http_rpc(url, "task.list"))["result"]

    # The seeder sent the file about once: the part fetched before the kill came from disk.
    assert fetched_before > 0.25 * size
    assert uploaded < 1.5 * size, f"sent {uploaded} bytes for a {size}-byte file"
    on_disk = seen["progress"]["downloaded"]  # what B had written when A last heard from it
    sent_again = uploaded - fetched_before
    assert sent_again < size - on_disk / 2, f"after the restart: {sent_again} of {size} bytes"
    assert [t["id"] for t in tasks] == [task["id"]]
    assert done["worker_id"] == "b-proc"
    assert [(f["path"].split("/")[-1], f["size"], f["is_video"]) for f in done["files"]] == [
        ("clip.mp4", size, True)
    ]
    assert done["progress"]["percent"] == 100.0
    assert [(h["file_index"], h["live"]) for h in done["hls"]] == [(0, False)]
    rendition = tmp_path / "b" / "tasks" / task["id"] / "hls" / "0"
    playlist = (rendition / "index.m3u8").read_text()
    assert "#EXT-X-ENDLIST" in playlist
    segments = [line for line in playlist.splitlines() if line.endswith(".ts")]
    assert segments and all((rendition / s).stat().st_size > 0 for s in segments)
