"""Download speed of B's Torrent API next to a bare libtorrent leecher, same torrent, same run.

    python bench/bench_download.py [--size-mb 200] [--rounds 2]

A local seeder (loopback only, TCP) serves one file of random bytes. Each round downloads it
twice into fresh directories: once with a bare libtorrent session in a thread (wait_for_alert
until torrent_finished_alert) and once through open_torrent_session / add_magnet /
select_files / wait_complete (which also flushes to disk and saves resume data). Prints the
times, the rates and the ratio. Never asserts.
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import libtorrent as lt
import trio

from torrentm3u8_b.samples import make_torrent
from torrentm3u8_b.seeder import open_seeder
from torrentm3u8_b.torrents import TorrentSettings, open_torrent_session

CHUNK = 4 * 1024 * 1024  # bytes written at a time
BARE_TIMEOUT = 300.0  # seconds


def write_random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for offset in range(0, size, CHUNK):
            f.write(os.urandom(min(CHUNK, size - offset)))


def bare_download(magnet: str, save: Path) -> float:
    """A plain libtorrent leecher: the baseline. Returns seconds from add to finished."""
    session = lt.session(TorrentSettings(loopback_only=True).settings_pack())
    params = lt.parse_magnet_uri(magnet)
    params.save_path = str(save)
    params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    start = time.perf_counter()
    session.add_torrent(params)
    deadline = start + BARE_TIMEOUT
    while time.perf_counter() < deadline:
        session.wait_for_alert(100)
        if any(isinstance(a, lt.torrent_finished_alert) for a in session.pop_alerts()):
            return time.perf_counter() - start
    raise TimeoutError("the bare leecher did not finish")


async def b_download(magnet: str, save: Path, resume: Path) -> float:
    async with open_torrent_session(TorrentSettings(loopback_only=True), resume) as ts:
        start = time.perf_counter()
        t = await ts.add_magnet("bench", magnet, save)
        await t.wait_metadata()
        t.select_files([f["index"] for f in t.info()["files"]])
        await t.wait_complete()
        return time.perf_counter() - start


async def main(size_mb: int, rounds: int) -> None:
    size = size_mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        root = Path(tmp)
        (root / "seed").mkdir()
        source = root / "seed" / "movie.bin"
        began = time.perf_counter()
        await trio.to_thread.run_sync(write_random_file, source, size)
        torrent = await trio.to_thread.run_sync(make_torrent, source)
        pieces = lt.torrent_info(lt.bdecode(torrent)).num_pieces()
        print(f"{size_mb} MB, {pieces} pieces, made in {time.perf_counter() - began:.1f} s")
        bare, ours = [], []
        async with open_seeder(torrent, source.parent) as seeder:
            magnet = seeder.magnet()
            for n in range(rounds):
                bare_dir, b_dir = root / f"bare{n}", root / f"b{n}"
                bare.append(await trio.to_thread.run_sync(bare_download, magnet, bare_dir))
                ours.append(await b_download(magnet, b_dir, root / f"resume{n}"))
                print(f"round {n + 1}: bare libtorrent {bare[-1]:.2f} s, B {ours[-1]:.2f} s")
                await trio.to_thread.run_sync(shutil.rmtree, bare_dir)
                await trio.to_thread.run_sync(shutil.rmtree, b_dir)
    bare_s, ours_s = statistics.median(bare), statistics.median(ours)
    print(f"median bare libtorrent: {bare_s:.2f} s ({size_mb / bare_s:.0f} MB/s)")
    print(f"median B Torrent API:   {ours_s:.2f} s ({size_mb / ours_s:.0f} MB/s)")
    print(f"ratio B / bare: {ours_s / bare_s:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    trio.run(main, args.size_mb, args.rounds)
