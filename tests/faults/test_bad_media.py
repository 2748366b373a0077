"""Media and disks that fail: FFmpeg dying of SIGSEGV mid-transcode, a corrupt "video", a full
disk. Each failing task ends `failed` with a reason a user can read; the other tasks on the same
B go on to `playable` and B keeps running. B is a real `torrentm3u8-b` process."""

from __future__ import annotations

import os
import random
import shutil
import sys

import pytest
import trio
from support import http_rpc, run_a, wait_task, worker_command

from torrentm3u8_b.ffmpeg import FFMPEG_ENV, ffmpeg_exe
from torrentm3u8_b.samples import make_torrent
from torrentm3u8_b.seeder import open_seeder

pytestmark = [pytest.mark.slow, pytest.mark.deadline(90)]

TMPFS_SIZE = "3m"
TOO_BIG = 6 * 1024 * 1024  # bytes: a file that cannot fit on TMPFS_SIZE
# The corrupt "video": fixed bytes. About 1 in 100 os.urandom() draws of this size is read by
# ffprobe as some format, and the task then fails later with another FFmpeg message.
NOISE = random.Random(0).randbytes(300_000)

# Runs the real FFmpeg; when it makes HLS for a task listed in the file named by argv[1], it is
# slowed to real time (-re) and killed with SIGSEGV after CRASH_AFTER seconds, then the wrapper
# dies of SIGSEGV too (what B sees when FFmpeg crashes).
CRASH_AFTER = 1.0  # seconds into the transcode
WRAPPER = """\
#!{python}
import os, signal, subprocess, sys, time
REAL, CRASH_IDS = {real!r}, {crash_ids!r}
args = sys.argv[1:]
ids = open(CRASH_IDS).read().split()
if "hls" not in args or not any(i in a for i in ids for a in args):
    os.execv(REAL, [REAL, *args])
args.insert(args.index("-i"), "-re")
ffmpeg = subprocess.Popen([REAL, *args])
time.sleep({crash_after})
ffmpeg.send_signal(signal.SIGSEGV)
ffmpeg.wait()
os.kill(os.getpid(), signal.SIGSEGV)
"""


def folder_with(root, name: str, file_name: str, source=None, data: bytes | None = None):
    folder = root / name
    folder.mkdir(parents=True)
    if source is not None:
        shutil.copy(source, folder / file_name)
    else:
        (folder / file_name).write_bytes(data)
    return folder


async def add(url: str, magnet: str) -> str:
    return (await http_rpc(url, "task.add", {"magnet": magnet}))["result"]["id"]


async def test_ffmpeg_crash_and_corrupt_video_fail_alone(tmp_path, clips, processes):
    seed = tmp_path / "seed"
    crash = make_torrent(folder_with(seed, "Crash", "crash.mp4", clips["long"]))
    corrupt = make_torrent(folder_with(seed, "Corrupt", "noise.mp4", data=NOISE))
    good = make_torrent(folder_with(seed, "Good", "good.mp4", clips["short"]))
    later = make_torrent(folder_with(seed, "Later", "later.mp4", clips["short"]))
    crash_ids = tmp_path / "crash-ids"
    crash_ids.write_text("")
    wrapper = tmp_path / "ffmpeg-that-crashes"
    real = await trio.to_thread.run_sync(ffmpeg_exe)
    wrapper.write_text(
        WRAPPER.format(
            python=sys.executable, real=real, crash_ids=str(crash_ids), crash_after=CRASH_AFTER
        )
    )
    wrapper.chmod(0o755)
    async with run_a(tmp_path / "a") as (a, url), open_seeder() as seeder:
        for torrent in (crash, corrupt, good, later):
            await seeder.add(torrent, seed)
        crash_id = await add(url, seeder.magnet(crash))
        crash_ids.write_text(crash_id)
        corrupt_id = await add(url, seeder.magnet(corrupt))
        good_id = await add(url, seeder.magnet(good))
        env = {**os.environ, FFMPEG_ENV: str(wrapper)}
        b = await processes.start(worker_command(url, tmp_path / "b"), env=env)

        crashed = await wait_task(a, crash_id, lambda t: t["state"] == "failed", what="")
        broken = await wait_task(a, corrupt_id, lambda t: t["state"] == "failed", what="")
        await wait_task(a, good_id, lambda t: t["state"] == "playable", what="good playable")
        later_id = await add(url, seeder.magnet(later))  # B still takes and finishes new work
        await wait_task(a, later_id, lambda t: t["state"] == "playable", what="later playable")
        assert b.returncode is None

    assert crashed["error"] == "FFmpeg crashed (SIGSEGV)", crashed["error"]
    assert "Invalid data found when processing input" in broken["error"], broken["error"]
    assert "Traceback" not in broken["error"]


def is_root() -> bool:
    return os.geteuid() == 0


@pytest.mark.skipif(not is_root(), reason="mounting a small tmpfs as B's data dir needs root")
async def test_full_disk_fails_the_task_and_b_goes_on(tmp_path, clips, processes):
    seed = tmp_path / "seed"
    big = make_torrent(
        folder_with(seed, "Big", "big.mp4", data=random.Random(1).randbytes(TOO_BIG))
    )
    small = make_torrent(folder_with(seed, "Small", "small.mp4", clips["short"]))
    data = tmp_path / "b"
    data.mkdir()
    await trio.run_process(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", data])
    try:
        async with run_a(tmp_path / "a") as (a, url), open_seeder() as seeder:
            for torrent in (big, small):
                await seeder.add(torrent, seed)
            b = await processes.start(worker_command(url, data))
            big_id = await add(url, seeder.magnet(big))
            full = await wait_task(a, big_id, lambda t: t["state"] == "failed", what="failure")
            assert a.registry.get("b-proc")["connected"]
            # The failed task keeps its partial files (for a retry): removing it frees the disk,
            # and the same B, still running, takes the next task to the end.
            assert (await http_rpc(url, "task.remove", {"id": big_id}))["result"]
            small_id = await add(url, seeder.magnet(small))
            await wait_task(a, small_id, lambda t: t["state"] == "playable", what="playable")
            assert b.returncode is None
            await processes.kill_9(b)
    finally:
        with trio.CancelScope(shield=True):
            await trio.run_process(["umount", "-l", data], check=False)
    assert "No space left on device" in full["error"], full["error"]
