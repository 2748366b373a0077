"""`torrentm3u8 demo`: the whole system on 127.0.0.1 in one process tree.

Makes a sample video with FFmpeg (once, kept under the data folder), a torrent of it, seeds it
with libtorrent on 127.0.0.1, starts A and a local worker B in loopback-only mode, submits the
sample's magnet and prints the URL to open. Ctrl-C (SIGINT) or SIGTERM stops everything within a
few seconds (a second one stops at once). Other magnets pasted into the page go to the same
worker: they work when their peers are reachable from 127.0.0.1 (B is loopback-only here).

Shutdown order: A first (its shutdown trigger is the stop event; hypercorn closes B's link),
then B (cancelled: with its link already closed nothing waits on A), then the seeder.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from torrentm3u8_b.config import WorkerConfig
from torrentm3u8_b.paths import hls_dir
from torrentm3u8_b.samples import make_sample, make_torrent
from torrentm3u8_b.seeder import open_seeder
from torrentm3u8_b.transcode import TranscodeError, is_complete_rendition
from torrentm3u8_b.worker import run_worker

from .app import ServiceA, serve
from .config import Config
from .magnets import parse_magnet

log = logging.getLogger("torrentm3u8.demo")

SAMPLE_NAME = "TorrentM3U8 sample.mp4"
SAMPLE_SIZE = "1280x720"
WORKER_ID = "demo-worker"
STOP_TIMEOUT = 5.0  # seconds granted to a clean shutdown before everything is cancelled


class DemoError(Exception):
    """Why the demo cannot run, as one line for the user (exit status 1)."""


def sample_folder(data: Path, seconds: int) -> Path:
    """One folder per sample length, so another --seconds never reuses a stale sample."""
    return Path(data) / "sample" / f"{seconds}s"


async def prepare_sample(folder: Path, seconds: int) -> tuple[Path, bytes]:
    """The sample video and its torrent, made once and kept in `folder`."""
    await trio.Path(folder).mkdir(parents=True, exist_ok=True)
    video = folder / SAMPLE_NAME
    torrent_path = folder / "sample.torrent"
    if not await trio.Path(video).exists():
        print(f"making a {seconds} s 720p sample video with FFmpeg (once)...", flush=True)
        partial_video = folder / ("partial-" + SAMPLE_NAME)
        try:
            await make_sample(partial_video, seconds=seconds, size=SAMPLE_SIZE)
        except (TranscodeError, OSError) as exc:
            raise DemoError(f"could not make the sample video with FFmpeg: {exc}") from None
        await trio.Path(partial_video).rename(video)
        await trio.Path(torrent_path).unlink(missing_ok=True)
    if not await trio.Path(torrent_path).exists():
        torrent = await trio.to_thread.run_sync(make_torrent, video)
        partial_torrent = torrent_path.with_name("partial-" + torrent_path.name)
        await trio.Path(partial_torrent).write_bytes(torrent)
        await trio.Path(partial_torrent).rename(torrent_path)
    return video, await trio.Path(torrent_path).read_bytes()


def check_listen(listen: str) -> None:
    """Fail early, in words, when A could not listen on `listen` (HOST:PORT)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise DemoError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as hypercorn does
            probe.bind(address)
    except OSError as exc:
        raise DemoError(
            f"cannot listen on {listen}: {exc.strerror or exc}; pick another with --listen"
        ) from None


def renditions_on_disk(folders: list[Path]) -> bool:
    return bool(folders) and all(is_complete_rendition(folder) for folder in folders)


async def submit_sample(a: ServiceA, magnet: str, b_data: Path) -> dict[str, Any]:
    """The sample's task: kept from an earlier run when its HLS is on B's disk; otherwise
    (unfinished, failed, files gone) removed and added again, because its stored magnet points
    at the seeder port of that earlier run. Called before B connects, so no dispatch runs: B
    drops its copy of a removed task when A answers its hello."""
    wanted = parse_magnet(magnet).info_hash
    for task in await a.service.list():
        if parse_magnet(task["magnet"]).info_hash != wanted:
            continue
        renditions = [hls_dir(b_data, task["id"], h["file_index"]) for h in task["hls"]]
        on_disk = await trio.to_thread.run_sync(renditions_on_disk, renditions)
        if task["state"] == "playable" and on_disk:
            return task
        log.info(
            "sample task %s of an earlier run is %s: adding it again", task["id"], task["state"]
        )
        await a.service.remove(task["id"])
    return await a.service.add(magnet)


@asynccontextmanager
async def cancelled_on(stop: trio.Event) -> AsyncIterator[None]:
    """Run the block until it ends or `stop` is set, whichever comes first."""
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            await stop.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        yield
        nursery.cancel_scope.cancel()


async def follow_signals(signals, stop: trio.Event, everything: trio.CancelScope) -> None:
    """First signal: stop cleanly within STOP_TIMEOUT. Second one: stop now."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if stop.is_set():
            print(f"{name} again: stopping now", flush=True)
            everything.cancel()
            return
        print(f"\n{name}: stopping...", flush=True)
        stop.set()
        everything.deadline = min(everything.deadline, trio.current_time() + STOP_TIMEOUT)


async def run_services(args: argparse.Namespace, stop: trio.Event) -> None:
    data = Path(await trio.Path(args.data).resolve())
    await trio.to_thread.run_sync(check_listen, args.listen)
    sample = None
    async with cancelled_on(stop):
        sample = await prepare_sample(sample_folder(data, args.seconds), args.seconds)
    if sample is None:
        return
    video, torrent = sample
    token = secrets.token_urlsafe(24)
    a_config = Config(
        data_dir=data / "a", listen=args.listen, worker_token=token, loopback_only=True
    )
    async with open_seeder(torrent, video.parent) as seeder, trio.open_nursery() as b_side:
        async with trio.open_nursery() as a_side:
            async with cancelled_on(stop):
                a, urls = await a_side.start(partial(serve, a_config, shutdown_trigger=stop.wait))
                url = urls[0]
                task = await submit_sample(a, seeder.magnet(name=video.name), data / "b")
                b_config = WorkerConfig(
                    server="ws" + url.removeprefix("http") + "/worker",
                    data_dir=data / "b",
                    token=token,
                    worker_id=WORKER_ID,
                    loopback_only=True,
                )
                await b_side.start(run_worker, b_config)
                print(
                    f"\nTorrentM3U8 demo is up. Open {url}/ in a browser\n"
                    f"  sample task {task['id']}: {task['name']} ({task['state']})\n"
                    f"  files under {data}\n"
                    "  Other magnets work too when their peers are reachable from 127.0.0.1.\n"
                    "  Ctrl-C stops everything.\n",
                    flush=True,
                )
            await stop.wait()
        b_side.cancel_scope.cancel()


def user_error(group: BaseExceptionGroup) -> DemoError | None:
    """The DemoError nurseries wrapped, when it is the only thing that went wrong."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error if isinstance(error, DemoError) else None


async def run_demo(args: argparse.Namespace) -> int:
    """Run until SIGINT or SIGTERM; 0 once stopped cleanly, 1 (and a line on stderr) when the
    demo cannot run. The errors are printed here rather than raised: `python -m
    torrentm3u8_a.client` runs the client as `__main__`, whose ClientError is another class."""
    try:
        return await _run_demo(args)
    except DemoError as exc:
        print(exc, file=sys.stderr)
        return 1


async def _run_demo(args: argparse.Namespace) -> int:
    if args.seconds < 1:
        raise DemoError("--seconds must be at least 1")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:  # hypercorn prints its own lines too
        handler.addFilter(lambda record: not record.name.startswith("hypercorn."))
    stop = trio.Event()
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow_signals, signals, stop, nursery.cancel_scope)
                await run_services(args, stop)
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        error = user_error(group)
        if error is None:
            raise
        raise error from None
    print("stopped.", flush=True)
    return 0
