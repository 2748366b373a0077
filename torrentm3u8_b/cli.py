"""`torrentm3u8-b`: run a download worker. Every flag can also be set by an environment
variable."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

import trio

from . import __version__
from .config import (
    MAX_STREAMS,
    METADATA_TIMEOUT,
    PROGRESS_INTERVAL,
    TRANSCODE_CONCURRENCY,
    WorkerConfig,
)
from .worker import run_worker

ENV = "TORRENTM3U8_"


def _env(name: str, default=None):
    return os.environ.get(ENV + name, default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torrentm3u8-b",
        description="TorrentM3U8 worker: downloads torrents, makes HLS, streams it over WebRTC.",
        epilog="Each flag has an environment variable, shown in brackets.",
    )
    p.add_argument(
        "--server",
        default=_env("SERVER", "ws://127.0.0.1:8080/worker"),
        help="A's worker endpoint, ws:// or wss:// [TORRENTM3U8_SERVER] (default %(default)s)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=_env("DATA", "./data-b"),
        help="directory for downloads, HLS and B's records [TORRENTM3U8_DATA]",
    )
    p.add_argument(
        "--token",
        default=_env("WORKER_TOKEN"),
        help="the worker token A expects [TORRENTM3U8_WORKER_TOKEN] (required)",
    )
    p.add_argument(
        "--worker-id",
        default=_env("WORKER_ID"),
        help="this worker's id (default: made once, kept in DATA/worker-id)"
        " [TORRENTM3U8_WORKER_ID]",
    )
    p.add_argument(
        "--loopback-only",
        action="store_true",
        default=_env("LOOPBACK_ONLY", "") not in ("", "0", "false"),
        help="local setups and tests: libtorrent and WebRTC on 127.0.0.1 only, no DHT/LSD/UPnP/"
        "NAT-PMP/uTP [TORRENTM3U8_LOOPBACK_ONLY=1]",
    )
    p.add_argument(
        "--progress-interval",
        type=float,
        default=float(_env("PROGRESS_INTERVAL", PROGRESS_INTERVAL)),
        help="seconds between progress reports [TORRENTM3U8_PROGRESS_INTERVAL] (%(default)s)",
    )
    p.add_argument(
        "--metadata-timeout",
        type=float,
        default=float(_env("METADATA_TIMEOUT", METADATA_TIMEOUT)),
        help="seconds to wait for a torrent's metadata [TORRENTM3U8_METADATA_TIMEOUT] "
        "(%(default)s)",
    )
    p.add_argument(
        "--transcode-concurrency",
        type=int,
        default=int(_env("TRANSCODE_CONCURRENCY", TRANSCODE_CONCURRENCY)),
        help="FFmpeg runs at once [TORRENTM3U8_TRANSCODE_CONCURRENCY] (%(default)s)",
    )
    p.add_argument(
        "--max-streams",
        type=int,
        default=int(_env("MAX_STREAMS", MAX_STREAMS)),
        help="concurrent viewers [TORRENTM3U8_MAX_STREAMS] (%(default)s)",
    )
    p.add_argument(
        "--download-all-files",
        action="store_true",
        default=_env("DOWNLOAD_ALL_FILES", "") not in ("", "0", "false"),
        help="also download a torrent's non-video files [TORRENTM3U8_DOWNLOAD_ALL_FILES=1]",
    )
    p.add_argument(
        "--no-watch-while-downloading",
        dest="watch_while_downloading",
        action="store_false",
        default=_env("WATCH_WHILE_DOWNLOADING", "1") not in ("0", "false", "no"),
        help="make HLS only after the download ends, instead of while it runs"
        " [TORRENTM3U8_WATCH_WHILE_DOWNLOADING=0]",
    )
    p.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "info"),
        choices=("debug", "info", "warning", "error"),
        help="[TORRENTM3U8_LOG_LEVEL] (default %(default)s)",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def config_from_args(args: argparse.Namespace) -> WorkerConfig:
    return WorkerConfig(
        server=args.server,
        data_dir=args.data,
        token=args.token or "",
        worker_id=args.worker_id,
        loopback_only=args.loopback_only,
        progress_interval=args.progress_interval,
        metadata_timeout=args.metadata_timeout,
        transcode_concurrency=args.transcode_concurrency,
        max_streams=args.max_streams,
        download_all_files=args.download_all_files,
        watch_while_downloading=args.watch_while_downloading,
    )


async def run_until_signal(config: WorkerConfig) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_worker, config)
            async for signum in signals:
                logging.getLogger("torrentm3u8.b").info(
                    "%s: shutting down", signal.Signals(signum).name
                )
                nursery.cancel_scope.cancel()
                return


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.token:
        parser.error("a worker token is required: --token or TORRENTM3U8_WORKER_TOKEN")
    trio.run(run_until_signal, config_from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
