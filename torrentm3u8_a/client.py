"""`torrentm3u8`: the command-line client. It speaks only A's public JSON-RPC API (over the
`/ws` websocket, so `watch` gets live events), exactly as a script of yours would.

    torrentm3u8 add MAGNET     torrentm3u8 list      torrentm3u8 show ID     torrentm3u8 rm ID
    torrentm3u8 watch ID       torrentm3u8 workers   torrentm3u8 demo

Errors are one line on stderr: "cannot reach A at URL: ..." when A is not there, "error: ..."
with A's message when A refused a call (exit status 1). `watch` exits 0 once the task is
playable, 1 if it failed or was removed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import trio
import trio_websocket

import rpc

from .errors import UNAUTHORIZED
from .format import list_rows, show_task, status_line, worker_rows

DEFAULT_SERVER = "http://127.0.0.1:8080"
CALL_TIMEOUT = 30.0  # seconds A has to answer a call
CONNECT_TIMEOUT = 20.0  # seconds for the TCP, TLS and websocket handshakes
FINAL_STATES = ("playable", "failed")


class ClientError(Exception):
    """A failure to show the user as one line (`str(exc)`), then exit with `exit_code`."""

    exit_code = 1


def ws_url(server: str) -> str:
    """A's websocket endpoint for `--server`: http(s)://HOST[:PORT][/PREFIX] -> ws(s)://.../ws."""
    parts = urlsplit(server if "://" in server else "http://" + server)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"--server must be an http(s):// or ws(s):// URL, not {server!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"  # A behind a reverse proxy may live under a prefix: keep it
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def _why(exc: BaseException) -> str:
    """What went wrong while connecting, in words (trio-websocket's errors are often empty)."""
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return f"HTTP {exc.status_code} instead of a websocket: is this the address of A?"
    if isinstance(exc, trio_websocket.ConnectionTimeout):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    cause = exc.__cause__ if isinstance(exc, trio_websocket.HandshakeError) else exc
    if cause is None:
        return type(exc).__name__
    nested = cause.__cause__
    if isinstance(nested, BaseExceptionGroup):
        # trio tried every address: "Connection refused" beats "all attempts ... failed".
        errnos = [getattr(e, "errno", None) for e in nested.exceptions]
        if all(errnos):
            return "; ".join(sorted({os.strerror(n) for n in errnos}))
    return str(cause) or type(cause).__name__


def error_line(exc: rpc.RemoteError) -> str:
    line = f"error: {exc.message}"
    if exc.code == UNAUTHORIZED:
        line += " (give A's API token with --token or TORRENTM3U8_API_TOKEN)"
    return line


@asynccontextmanager
async def open_client(
    server: str, token: str | None, methods: rpc.Methods | None = None
) -> AsyncIterator[rpc.Peer]:
    """A JSON-RPC peer on A's `/ws`, authenticated when a token is given.

    Every failure leaves as a ClientError: cannot connect, A's error answer to a call, no
    answer in time, or the link lost before the block finished.
    """
    url = ws_url(server)
    headers = [(b"Authorization", f"Bearer {token}".encode())] if token else None
    finished = False
    try:
        async with AsyncExitStack() as stack:
            try:
                ws = await stack.enter_async_context(
                    rpc.open_websocket(
                        url,
                        extra_headers=headers,
                        connect_timeout=CONNECT_TIMEOUT,
                    )
                )
            except (OSError, trio_websocket.HandshakeError) as exc:
                raise ClientError(f"cannot reach A at {server}: {_why(exc)}") from None
            peer = await stack.enter_async_context(
                rpc.open_peer(
                    rpc.TrioWebSocketStream(ws),
                    methods or rpc.Methods(),
                    call_timeout=CALL_TIMEOUT,
                    name=f"A at {server}",
                )
            )
            yield peer
            finished = True
    except rpc.RemoteError as exc:
        raise ClientError(error_line(exc)) from None
    except (rpc.LinkClosed, trio_websocket.ConnectionClosed):
        raise ClientError(f"lost the connection to A at {server}") from None
    except rpc.CallTimeout as exc:
        raise ClientError(f"error: {exc}") from None
    except trio_websocket.DisconnectionTimeout:
        if not finished:
            raise ClientError(f"lost the connection to A at {server}") from None
    if not finished:
        # A closed the link: the peer cancelled the block instead of raising.
        raise ClientError(f"lost the connection to A at {server}")


# The commands.

CALLS = {
    "add": lambda args: ("task.add", {"magnet": args.magnet}),
    "list": lambda args: ("task.list", None),
    "show": lambda args: ("task.get", {"id": args.id}),
    "rm": lambda args: ("task.remove", {"id": args.id}),
    "workers": lambda args: ("worker.list", None),
}


async def run_call(args: argparse.Namespace, out: TextIO) -> int:
    method, params = CALLS[args.command](args)
    async with open_client(args.server, args.token) as peer:
        result = await peer.call(method, params)
    if args.json:
        print(json.dumps(result, indent=2), file=out)
    elif args.command in ("add", "show"):
        print(show_task(result), file=out)
    elif args.command == "list":
        print(list_rows(result), file=out)
    elif args.command == "workers":
        print(worker_rows(result), file=out)
    else:
        print(f"removed {args.id}", file=out)
    return 0


class _LivePrinter:
    """Prints each new line; on a terminal the line is rewritten in place instead."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last: str | None = None

    def show(self, line: str) -> None:
        if line != self.last:
            self.out.write(f"\r\x1b[K{line}" if self.tty else line + "\n")
            self.out.flush()
            self.last = line

    def end(self) -> None:
        """Leave the cursor on a new line (once)."""
        if self.tty and self.last is not None:
            self.out.write("\n")
            self.out.flush()
        self.last = None


async def watch(args: argparse.Namespace, out: TextIO) -> int:
    """Follow a task from A's events until it is playable (0) or failed (1)."""
    send, changes = trio.open_memory_channel(math.inf)
    methods = rpc.Methods()

    @methods.add(name="task.updated")
    async def task_updated(task: dict) -> None:
        if task.get("id") == args.id:
            send.send_nowait(task)

    @methods.add(name="task.removed")
    async def task_removed(id: str) -> None:
        if id == args.id:
            send.send_nowait(None)

    @methods.add(name="worker.updated")
    async def worker_updated(worker: dict) -> None:
        """Not followed here."""

    printer = _LivePrinter(out)
    try:
        async with open_client(args.server, args.token, methods) as peer:
            # Subscribe first, then read the task: no change can fall between the two.
            await peer.call("events.subscribe")
            task = await peer.call("task.get", {"id": args.id})
            while True:
                printer.show(json.dumps(task) if args.json else status_line(task))
                if task["state"] in FINAL_STATES:
                    return 0 if task["state"] == "playable" else 1
                change = await changes.receive()
                while change is not None and change["updated_at"] < task["updated_at"]:
                    change = await changes.receive()  # older than what we showed (before get)
                if change is None:
                    raise ClientError(f"error: task {args.id} was removed")
                task = change
    finally:
        printer.end()


async def run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        return await run_demo(args)
    if args.command == "watch":
        return await watch(args, sys.stdout)
    return await run_call(args, sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torrentm3u8",
        description=__doc__.split("\n\n")[0],
        epilog="Errors print one line on stderr and exit with status 1. A task id that starts "
        "with '-' (older A versions made some) goes after '--': torrentm3u8 show -- -Xb3...",
    )
    p.add_argument(
        "--server",
        default=os.environ.get("TORRENTM3U8_SERVER_URL", DEFAULT_SERVER),
        help="A's URL [TORRENTM3U8_SERVER_URL] (default %(default)s)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("TORRENTM3U8_API_TOKEN"),
        help="A's API token, when it has one [TORRENTM3U8_API_TOKEN]",
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("add", help="add a magnet link").add_argument("magnet")
    sub.add_parser("list", help="list tasks")
    sub.add_parser("show", help="one task with its files").add_argument("id")
    sub.add_parser("rm", help="remove a task and its files").add_argument("id")
    sub.add_parser("watch", help="follow a task until playable or failed").add_argument("id")
    sub.add_parser("workers", help="list workers")
    demo = sub.add_parser("demo", help="run A, a local B and a seeded sample video")
    demo.add_argument("--listen", default="127.0.0.1:8080", help="where A listens")
    demo.add_argument("--data", default="./demo-data", help="where the demo keeps its files")
    demo.add_argument("--seconds", type=int, default=60, help="length of the sample video")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "demo":
        try:
            ws_url(args.server)
        except ValueError as exc:
            parser.error(str(exc))
        # The rpc package logs stray notifications; a CLI shows only its own one-line errors.
        logging.basicConfig(level=logging.CRITICAL)
    try:
        return trio.run(run, args)
    except ClientError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `torrentm3u8 list | head -1`: the reader left; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
