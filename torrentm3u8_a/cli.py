"""`torrentm3u8-a`: run service A. Every flag can also be set by an environment variable."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

import trio

from . import __version__
from .app import serve
from .config import HEARTBEAT_INTERVAL, LIVENESS_TIMEOUT, MAX_BODY, Config, parse_ice_server

ENV = "TORRENTM3U8_"


def _env(name: str, default=None):
    return os.environ.get(ENV + name, default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torrentm3u8-a",
        description="TorrentM3U8 service A: web pages, JSON-RPC API, worker links, signaling.",
        epilog="Each flag has an environment variable, shown in brackets.",
    )
    p.add_argument(
        "--listen",
        default=_env("LISTEN", "127.0.0.1:8080"),
        help="HOST:PORT to serve HTTP and websockets on [TORRENTM3U8_LISTEN] (default %(default)s)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=_env("DATA", "./data-a"),
        help="directory for A's database [TORRENTM3U8_DATA] (default %(default)s)",
    )
    p.add_argument(
        "--worker-token",
        default=_env("WORKER_TOKEN"),
        help="shared secret workers must present [TORRENTM3U8_WORKER_TOKEN] (required)",
    )
    p.add_argument(
        "--api-token",
        default=_env("API_TOKEN"),
        help="token the pages and scripts must present; unset = open API [TORRENTM3U8_API_TOKEN]",
    )
    p.add_argument(
        "--ice-server",
        action="append",
        default=None,
        help="STUN/TURN server for browsers and workers, repeatable: stun:HOST:PORT, "
        "turn:USER:PASS@HOST:PORT?transport=udp or a JSON object "
        "[TORRENTM3U8_ICE_SERVERS, space separated]",
    )
    p.add_argument(
        "--ice-transport-policy",
        choices=("all", "relay"),
        default=_env("ICE_TRANSPORT_POLICY", "all"),
        help="'relay' forces every stream through TURN [TORRENTM3U8_ICE_TRANSPORT_POLICY]",
    )
    p.add_argument(
        "--loopback-only",
        action="store_true",
        default=_env("LOOPBACK_ONLY", "") not in ("", "0", "false"),
        help="local setups and tests: no STUN, ICE on 127.0.0.1 [TORRENTM3U8_LOOPBACK_ONLY=1]",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=float,
        default=float(_env("HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL)),
        help="seconds between pings to workers [TORRENTM3U8_HEARTBEAT_INTERVAL]",
    )
    p.add_argument(
        "--liveness-timeout",
        type=float,
        default=float(_env("LIVENESS_TIMEOUT", LIVENESS_TIMEOUT)),
        help="seconds of silence before a worker is disconnected [TORRENTM3U8_LIVENESS_TIMEOUT]",
    )
    p.add_argument(
        "--max-body",
        type=int,
        default=int(_env("MAX_BODY", MAX_BODY)),
        help="largest JSON-RPC request in bytes [TORRENTM3U8_MAX_BODY]",
    )
    p.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "info"),
        choices=("debug", "info", "warning", "error"),
        help="[TORRENTM3U8_LOG_LEVEL] (default %(default)s)",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def config_from_args(args: argparse.Namespace) -> Config:
    raw_ice = args.ice_server
    if raw_ice is None:
        raw_ice = (_env("ICE_SERVERS") or "").split()
    return Config(
        data_dir=args.data,
        listen=args.listen,
        worker_token=args.worker_token or "",
        api_token=args.api_token or None,
        ice_servers=[parse_ice_server(s) for s in raw_ice],
        ice_transport_policy=args.ice_transport_policy,
        loopback_only=args.loopback_only,
        heartbeat_interval=args.heartbeat_interval,
        liveness_timeout=args.liveness_timeout,
        max_body=args.max_body,
    )


async def _run(config: Config) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        stop = trio.Event()

        async def wait_signal() -> None:
            async for signum in signals:
                logging.getLogger("torrentm3u8.a").info(
                    "%s: shutting down", signal.Signals(signum).name
                )
                stop.set()
                return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_signal)
            await serve(config, shutdown_trigger=stop.wait)
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    if not config.worker_token:
        parser.error("a worker token is required: --worker-token or TORRENTM3U8_WORKER_TOKEN")
    trio.run(_run, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
