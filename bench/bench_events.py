"""A's `/ws` event fan-out next to a plain trio-websocket broadcast: same messages, same clients.

    python bench/bench_events.py [--clients 500] [--reports 20] [--tasks 4]

Each server runs in a process of its own, so its memory is its own:

- A: hypercorn, Quart, one JSON-RPC peer and one bounded event queue per `/ws` connection.
  The publisher is a worker (tests/support.py's FakeWorker) calling `task.progress`; A stores
  the report in sqlite and publishes `task.updated` before it answers.
- baseline: a bare trio_websocket server; every message a publisher sends on `/publish` goes
  to each subscriber in turn, then it answers "ok". The publisher sends the very texts the
  subscribers received from A.

This process holds the subscribers and the publisher, and times everything on one clock.
Two modes: burst (reports back to back, each as soon as the last was acknowledged) and paced
(the next report once every subscriber has the last). Prints the delay from the report's send
to its arrival at each subscriber (median, p99, max), the time until the last arrival, and the
server's RSS before the subscribers connect and at its peak (VmRSS, VmHWM). Never asserts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from subprocess import PIPE
from typing import Any

import trio
import trio_websocket

import rpc

REPO = Path(__file__).resolve().parents[1]
CONNECTING = 50  # websocket handshakes in flight at once
DEADLINE = 300  # seconds for one server and mode
SUBSCRIBE = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "events.subscribe"})
SUBSCRIBED = json.dumps({"jsonrpc": "2.0", "result": True, "id": 0})


def _support() -> Any:
    """tests/support.py (run_a, FakeWorker), loaded by path: tests/ is not a package."""
    spec = importlib.util.spec_from_file_location("bench_support", REPO / "tests" / "support.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the servers (each in its own process: `--serve a|baseline`) -----------------------------


async def serve_baseline(task_status=trio.TASK_STATUS_IGNORED) -> None:
    subscribers: set[trio_websocket.WebSocketConnection] = set()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            if request.path == "/publish":
                while True:
                    text = await ws.get_message()
                    for subscriber in list(subscribers):
                        try:
                            await subscriber.send_message(text)
                        except trio_websocket.ConnectionClosed:
                            subscribers.discard(subscriber)
                    await ws.send_message("ok")
            else:
                assert json.loads(await ws.get_message())["method"] == "events.subscribe"
                await ws.send_message(SUBSCRIBED)
                subscribers.add(ws)
                await ws.get_message()  # subscribers send nothing more: this waits for the end
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            subscribers.discard(ws)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
        task_status.started(f"http://127.0.0.1:{server.port}")


async def serve(kind: str) -> None:
    """Print the server's URL, serve until stdin closes."""
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        if kind == "a":
            data = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-events-"))
            _, url = await stack.enter_async_context(_support().run_a(Path(data)))
        else:
            url = await nursery.start(serve_baseline)
        print(url, flush=True)
        await trio.to_thread.run_sync(sys.stdin.buffer.read)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def server_process(kind: str) -> AsyncIterator[tuple[str, int]]:
    """Start `--serve kind` in a child process; yields (url, pid)."""
    command = [sys.executable, __file__, "--serve", kind]
    process = await trio.lowlevel.open_process(command, stdin=PIPE, stdout=PIPE)
    try:
        line = b""
        while not line.endswith(b"\n"):
            chunk = await process.stdout.receive_some(1)
            if not chunk:
                raise RuntimeError(f"the {kind} server exited before printing its URL")
            line += chunk
        yield line.decode().strip(), process.pid
    finally:
        with trio.move_on_after(10) as stopping:
            stopping.shield = True
            await process.stdin.aclose()
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


def memory_mib(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) / 1024
    raise LookupError(f"no {field} in /proc/{pid}/status")


# ---- the measurement -------------------------------------------------------------------------


def report_key(text: str) -> int | None:
    """Which report an event carries (its progress percent is report + 0.5), if any."""
    message = json.loads(text)
    if message.get("method") != "task.updated":
        return None
    percent = message["params"]["task"]["progress"]["percent"]
    return int(percent) if percent % 1 == 0.5 else None


async def fan_out(
    url: str,
    clients: int,
    reports: int,
    publish: Callable[[int], Awaitable[None]],
    *,
    paced: bool,
    texts: dict[int, str],
) -> dict[str, float]:
    """Connect the subscribers, publish the reports, wait for every arrival; the figures.
    `texts` collects the event text of each report (as the first subscriber got it)."""
    sent_at: list[float] = []
    delays: list[float] = []
    last_arrival = 0.0
    counts = [0] * reports
    everyone_has = [trio.Event() for _ in range(reports)]
    connecting = trio.CapacityLimiter(CONNECTING)
    ready = trio.Semaphore(0)

    async def subscriber(n: int) -> None:
        nonlocal last_arrival
        async with AsyncExitStack() as stack:
            async with connecting:
                ws = await stack.enter_async_context(rpc.open_websocket(ws_base + "/ws"))
                await ws.send_message(SUBSCRIBE)
                while json.loads(await ws.get_message()).get("id") != 0:
                    pass
            ready.release()
            got = 0
            while got < reports:
                text = await ws.get_message()
                arrived = time.perf_counter()
                report = report_key(text)
                if report is None:
                    continue
                got += 1
                delays.append(arrived - sent_at[report])
                last_arrival = max(last_arrival, arrived)
                if n == 0:
                    texts[report] = text
                counts[report] += 1
                if counts[report] == clients:
                    everyone_has[report].set()

    ws_base = "ws" + url.removeprefix("http")
    async with trio.open_nursery() as nursery:
        for n in range(clients):
            nursery.start_soon(subscriber, n)
        for _ in range(clients):
            await ready.acquire()
        for report in range(reports):
            sent_at.append(time.perf_counter())
            await publish(report)
            if paced:
                await everyone_has[report].wait()
    delays_ms = sorted(d * 1000 for d in delays)
    return {
        "median": statistics.median(delays_ms),
        "p99": delays_ms[min(len(delays_ms) - 1, int(0.99 * len(delays_ms)))],
        "max": delays_ms[-1],
        "total": (last_arrival - sent_at[0]) * 1000,
    }


async def run_a_mode(args: argparse.Namespace, paced: bool, texts: dict[int, str]) -> dict:
    support = _support()
    async with server_process("a") as (url, pid):
        idle = memory_mib(pid, "VmRSS")
        task_ids = []
        for n in range(args.tasks):
            magnet = f"magnet:?xt=urn:btih:{n:040x}&dn=bench{n}"
            task_ids.append(
                (await support.http_rpc(url, "task.add", {"magnet": magnet}))["result"]["id"]
            )
        worker = support.FakeWorker()
        async with worker.connect(url) as link:
            for _ in task_ids:
                await worker.wait_order("task.start")
                worker.orders.pop(0)

            async def publish(report: int) -> None:
                params = {"task_id": task_ids[report % len(task_ids)], "percent": report + 0.5}
                await link.call("task.progress", params)

            figures = await fan_out(
                url, args.clients, args.reports, publish, paced=paced, texts=texts
            )
            figures["idle"], figures["peak"] = idle, memory_mib(pid, "VmHWM")
    return figures


async def run_baseline_mode(args: argparse.Namespace, paced: bool, texts: dict[int, str]) -> dict:
    async with server_process("baseline") as (url, pid):
        idle = memory_mib(pid, "VmRSS")
        async with rpc.open_websocket("ws" + url.removeprefix("http") + "/publish") as publisher:

            async def publish(report: int) -> None:
                await publisher.send_message(texts[report])
                await publisher.get_message()

            figures = await fan_out(url, args.clients, args.reports, publish, paced=paced, texts={})
            figures["idle"], figures["peak"] = idle, memory_mib(pid, "VmHWM")
    return figures


async def main(args: argparse.Namespace) -> None:
    texts: dict[int, str] = {}
    rows = []
    for mode in ("burst", "paced"):
        with trio.fail_after(DEADLINE):
            a = await run_a_mode(args, mode == "paced", texts)
        with trio.fail_after(DEADLINE):
            baseline = await run_baseline_mode(args, mode == "paced", texts)
        rows += [("A /ws", mode, a), ("baseline", mode, baseline)]
    size = statistics.mean(len(t.encode()) for t in texts.values())
    print(
        f"{args.clients} subscribers, {args.reports} task.progress reports over {args.tasks} "
        f"tasks, events of {size:.0f} bytes; delay = report sent -> arrival at a subscriber"
    )
    print(
        f"{'server':<10}{'mode':<7}{'median ms':>10}{'p99 ms':>9}{'max ms':>9}"
        f"{'last at ms':>12}{'idle MiB':>10}{'peak MiB':>10}{'KiB/sub':>9}"
    )
    for name, mode, f in rows:
        per_subscriber = (f["peak"] - f["idle"]) * 1024 / args.clients
        print(
            f"{name:<10}{mode:<7}{f['median']:>10.1f}{f['p99']:>9.1f}{f['max']:>9.1f}"
            f"{f['total']:>12.1f}{f['idle']:>10.1f}{f['peak']:>10.1f}{per_subscriber:>9.1f}"
        )
    for mode in ("burst", "paced"):
        a, base = (f for _, m, f in rows if m == mode)
        print(
            f"{mode}: A / baseline = {a['median'] / base['median']:.1f}x median, "
            f"{a['p99'] / base['p99']:.1f}x p99, {a['peak'] - base['peak']:+.1f} MiB peak RSS"
        )


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--reports", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--serve", choices=("a", "baseline"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        trio.run(serve, arguments.serve)
    else:
        raise_fd_limit(arguments.clients + 256)  # the children inherit it
        trio.run(main, arguments)
