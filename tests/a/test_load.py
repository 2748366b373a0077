"""500 websocket subscribers on A while a worker reports progress: every subscriber gets every
`task.updated`, in order per task. Prints the event delay (worker's report call to arrival at
each subscriber: median, p99) and the process's memory; it asserts no timing
(the figures go to docs/reliability.md; bench/bench_events.py compares them to a baseline)."""

from __future__ import annotations

import json
import resource
import statistics
import time
from collections import defaultdict
from contextlib import AsyncExitStack

import pytest
import trio
from support import http_rpc, run_a, wait_task, ws_url

import rpc

SUBSCRIBERS = 500
TASKS = 4
REPORTS = 20  # progress reports, round robin over the tasks
CONNECTING = 50  # websocket handshakes in flight at once
FD_PER_SUBSCRIBER = 2  # the client's socket and A's, both in this process
FD_SPARE = 256  # sqlite, the worker link, pytest, ...
SUBSCRIBE = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "events.subscribe"})

pytestmark = [pytest.mark.slow, pytest.mark.deadline(180)]


def magnet(n: int) -> str:
    return f"magnet:?xt=urn:btih:{n:040x}&dn=load{n}"


def percent(report: int) -> float:
    """A distinct progress value per report, so each event says which report it carries."""
    return report + 0.5


def raise_fd_limit(needed: int) -> tuple[int, int]:
    """Raise the soft limit on open files to `needed` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return soft, hard


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def test_500_subscribers_get_every_event(tmp_path, fake_worker, capsys, record_property):
    limits = raise_fd_limit(SUBSCRIBERS * FD_PER_SUBSCRIBER + FD_SPARE)
    try:
        async with run_a(tmp_path / "a") as (a, url):
            figures = await measure(a, url, fake_worker)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    for name, value in figures.items():
        record_property(name, value)
    with capsys.disabled():  # the figures are this test's output
        print(
            f"\n{SUBSCRIBERS} subscribers x {REPORTS} reports: event delay median "
            f"{figures['delay_median_ms']:.1f} ms, p99 {figures['delay_p99_ms']:.1f} ms, "
            f"max {figures['delay_max_ms']:.1f} ms; maxrss {figures['maxrss_before_mib']:.0f}"
            f" -> {figures['maxrss_after_mib']:.0f} MiB (A and the {SUBSCRIBERS} clients)"
        )


async def measure(a, url: str, fake_worker) -> dict[str, float]:
    task_ids = [
        (await http_rpc(url, "task.add", {"magnet": magnet(n)}))["result"]["id"]
        for n in range(TASKS)
    ]
    sent_at: list[float] = []
    # arrivals[subscriber] = [(task_id, percent, perf_counter at arrival), ...] in arrival order
    arrivals: list[list[tuple[str, float, float]]] = [[] for _ in range(SUBSCRIBERS)]
    reports = {percent(r) for r in range(REPORTS)}
    connecting = trio.CapacityLimiter(CONNECTING)
    ready = trio.Semaphore(0)
    rss_before = maxrss_mib()

    async def subscriber(n: int) -> None:
        async with AsyncExitStack() as stack:
            async with connecting:  # only the handshakes are limited
                ws = await stack.enter_async_context(rpc.open_websocket(ws_url(url, "/ws")))
                await ws.send_message(SUBSCRIBE)
                while json.loads(await ws.get_message()).get("id") != 0:
                    pass  # an event sent before the reply: not one of the reports
            ready.release()
            mine = arrivals[n]
            while len(mine) < REPORTS:
                text = await ws.get_message()
                now = time.perf_counter()
                message = json.loads(text)
                if message.get("method") != "task.updated":
                    continue
                task = message["params"]["task"]
                if task["progress"]["percent"] in reports:
                    mine.append((task["id"], task["progress"]["percent"], now))

    async with fake_worker.connect(url) as link:
        for task_id in task_ids:  # dispatched (their events are not reports: percent 0)
            await wait_task(a, task_id, lambda t: t["worker_id"] == "fake-1", what="dispatch")
        async with trio.open_nursery() as nursery:
            for n in range(SUBSCRIBERS):
                nursery.start_soon(subscriber, n)
            for _ in range(SUBSCRIBERS):
                await ready.acquire()
            assert a.hub.subscriber_count == SUBSCRIBERS
            for r in range(REPORTS):
                sent_at.append(time.perf_counter())
                await link.call(
                    "task.progress",
                    {"task_id": task_ids[r % TASKS], "percent": percent(r), "total": 100},
                )
    rss_after = maxrss_mib()

    expected = defaultdict(list)
    for r in range(REPORTS):
        expected[task_ids[r % TASKS]].append(percent(r))
    delays = []
    for got in arrivals:
        per_task = defaultdict(list)
        for task_id, value, arrived in got:
            per_task[task_id].append(value)
            delays.append(arrived - sent_at[int(value)])
        assert per_task == expected  # every event, once, in order per task
    delays_ms = [d * 1000 for d in delays]
    return {
        "delay_median_ms": statistics.median(delays_ms),
        "delay_p99_ms": percentile(delays_ms, 0.99),
        "delay_max_ms": max(delays_ms),
        "maxrss_before_mib": rss_before,
        "maxrss_after_mib": rss_after,
    }
