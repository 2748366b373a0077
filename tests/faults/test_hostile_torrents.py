"""Torrents made to hurt: file names with `..`, absolute paths, NUL and 255+ byte names, and a
torrent of 10 000 files with one video among them. Through real A and a real B (in process,
downloading every file): B writes nothing outside its task folder, A stores the metadata, and
the video becomes playable. The .torrent files are bencoded by hand (lt.create_torrent refuses
such names), as tests/b/test_torrents.py does."""

from __future__ import annotations

import hashlib
import os
from contextlib import asynccontextmanager
from pathlib import Path

import libtorrent as lt
import pytest
import trio
from support import WORKER_TOKEN, http_rpc, run_a, wait_task

from torrentm3u8_a.storage import FILES_IN_TASK
from torrentm3u8_b.config import WorkerConfig
from torrentm3u8_b.seeder import open_seeder
from torrentm3u8_b.worker import run_worker

pytestmark = [pytest.mark.slow, pytest.mark.deadline(120)]

PIECE_SIZE = 16384  # bytes
MANY_FILES = 10_000


def v1_torrent(name: bytes, files: list[tuple[list[bytes], bytes]]) -> bytes:
    """A v1 .torrent of `files` [(path parts, content)], names taken as they are."""
    data = b"".join(content for _, content in files)
    pieces = b"".join(
        hashlib.sha1(data[i : i + PIECE_SIZE]).digest() for i in range(0, len(data), PIECE_SIZE)
    )
    info = {
        b"name": name,
        b"piece length": PIECE_SIZE,
        b"pieces": pieces,
        b"files": [{b"length": len(content), b"path": path} for path, content in files],
    }
    return lt.bencode({b"info": info})


def lay_out_seed(torrent: bytes, files, seed: Path) -> None:
    """Write each file where the seeder's libtorrent looks for it (its sanitized path)."""
    layout = lt.torrent_info(lt.bdecode(torrent)).layout()
    for index, (_, content) in enumerate(files):
        path = seed / layout.file_path(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


@asynccontextmanager
async def run_b(url: str, data: Path):
    config = WorkerConfig(
        server="ws" + url.removeprefix("http") + "/worker",
        data_dir=data,
        token=WORKER_TOKEN,
        worker_id="b-hostile",
        loopback_only=True,
        download_all_files=True,  # every hostile name gets written (or refused)
    )
    async with trio.open_nursery() as nursery:
        yield await nursery.start(run_worker, config)
        nursery.cancel_scope.cancel()


def files_outside(root: Path, allowed: list[Path]) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if not p.is_dir() and not any(p.is_relative_to(d) for d in allowed)
    ]


async def run_to_playable(tmp_path: Path, torrent: bytes, seed: Path) -> tuple[dict, list]:
    """(the task once playable, all its files as the public API pages through them)."""
    async with run_a(tmp_path / "a") as (a, url), open_seeder(torrent, seed) as seeder:
        task = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
        async with run_b(url, tmp_path / "b"):
            done = await wait_task(
                a, task["id"], lambda t: t["state"] == "playable", what="playable"
            )
        listed: list[dict] = []
        while True:
            reply = await http_rpc(url, "task.files", {"id": task["id"], "offset": len(listed)})
            if not (page := reply["result"]["files"]):
                return done, listed
            listed += page


async def test_hostile_names_stay_in_the_task_folder(tmp_path, clips):
    video = clips["short"].read_bytes()
    files = [
        ([b"..", b"..", b"..", b"escape.txt"], b"dot dot\n" * 100),
        ([b"/etc", b"cron.d", b"evil"], b"absolute\n" * 100),
        ([b"nul\x00byte.txt"], b"nul\n" * 100),
        ([b"x" * 300 + b".txt"], b"long name\n" * 100),
        ([b"sub", b"..", b"..", b"..", b"v" * 260 + b".mp4"], video),  # the video, hostile too
    ]
    torrent = v1_torrent(b"../Hostile", files)
    seed = tmp_path / "seed"
    lay_out_seed(torrent, files, seed)

    done, listed = await run_to_playable(tmp_path, torrent, seed)
    assert listed == done["files"]

    task_folder = tmp_path / "b" / "tasks" / done["id"]
    allowed = [seed, tmp_path / "a", task_folder, tmp_path / "b" / "session"]
    b_records = [n for n in os.listdir(tmp_path / "b") if n.startswith("worker.sqlite3")]
    allowed += [tmp_path / "b" / name for name in b_records]
    assert files_outside(tmp_path, allowed) == []
    assert not (tmp_path.parent / "escape.txt").exists()
    written = {p.name: p for p in (task_folder / "files").rglob("*") if p.is_file()}
    assert len(written) == len(files)  # every file landed, under the task folder
    assert all(len(name.encode()) <= 255 and "\x00" not in name for name in written)
    paths = [f["path"] for f in done["files"]]
    assert len(paths) == len(files)
    assert all(".." not in p.split("/") and not p.startswith("/") for p in paths)
    assert all("\x00" not in p for p in paths)
    assert [f["is_video"] for f in done["files"]] == [False, False, False, False, True]
    assert [(h["file_index"], h["live"]) for h in done["hls"]] == [(4, False)]


NAMES = {  # file name pattern of the text files: the file list is ~0.9 MB / ~1.3 MB of JSON
    "short-names": "part {n:05d}.txt",
    "longer-names": "an ordinary, somewhat longer file name {n:05d}.txt",  # > the 1 MiB limit
}


@pytest.mark.parametrize("pattern", NAMES.values(), ids=NAMES.keys())
async def test_ten_thousand_files_one_video(tmp_path, clips, pattern):
    files = [([b"notes", pattern.format(n=n).encode()], b"%d\n" % n) for n in range(MANY_FILES - 1)]
    files.insert(MANY_FILES // 2, ([b"the video.mp4"], clips["short"].read_bytes()))
    torrent = v1_torrent(b"Ten Thousand", files)
    seed = tmp_path / "seed"
    await trio.to_thread.run_sync(lay_out_seed, torrent, files, seed)

    done, listed = await run_to_playable(tmp_path, torrent, seed)

    assert [f["index"] for f in listed] == list(range(MANY_FILES))
    assert listed[1]["path"] == "Ten Thousand/notes/" + pattern.format(n=1)
    assert done["file_count"] == MANY_FILES
    assert done["total_size"] == sum(len(content) for _, content in files)
    # The task itself lists the first files and the video, not all 10 000.
    assert [f["index"] for f in done["files"]] == [*range(FILES_IN_TASK), MANY_FILES // 2]
    videos = [f for f in listed if f["is_video"]]
    assert [(f["index"], f["path"]) for f in videos] == [
        (MANY_FILES // 2, "Ten Thousand/the video.mp4")
    ]
    assert [(h["file_index"], h["live"]) for h in done["hls"]] == [(MANY_FILES // 2, False)]
