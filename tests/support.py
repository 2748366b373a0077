"""Helpers shared by the tests: service A on a real hypercorn server (127.0.0.1, port 0),
a fake worker that speaks the real A<->B link protocol, and a plain HTTP JSON-RPC call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

import rpc
from torrentm3u8_a.app import serve
from torrentm3u8_a.config import Config

WORKER_TOKEN = "test-worker-token"


@asynccontextmanager
async def run_a(data_dir: Path, **overrides: Any) -> AsyncIterator[tuple[Any, str]]:
    """Service A under hypercorn on 127.0.0.1:0; yields (ServiceA, base http URL)."""
    settings = {
        "listen": "127.0.0.1:0",
        "worker_token": WORKER_TOKEN,
        "loopback_only": True,
        **overrides,
    }
    config = Config(data_dir=data_dir, **settings)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        a, urls = await nursery.start(partial(serve, config, shutdown_trigger=stop.wait))
        try:
            yield a, urls[0]
        finally:
            stop.set()


def ws_url(http_url: str, path: str) -> str:
    return "ws" + http_url.removeprefix("http") + path


class FakeWorker:
    """A worker that speaks the real link protocol and records A's orders."""

    def __init__(self) -> None:
        self.orders: list[tuple[str, dict]] = []
        self.order_event = trio.Event()
        self.methods = rpc.Methods()
        self.offer_answer = "v=0 fake answer"

        async def record(name: str, params: dict) -> None:
            self.orders.append((name, params))
            self.order_event.set()
            self.order_event = trio.Event()

        @self.methods.add(name="worker.ping")
        async def ping() -> dict:
            return {"time": trio.current_time()}

        @self.methods.add(name="task.start")
        async def start(task_id: str, magnet: str) -> None:
            await record("task.start", {"task_id": task_id, "magnet": magnet})

        @self.methods.add(name="task.remove")
        async def remove(task_id: str, delete_files: bool = True) -> None:
            await record("task.remove", {"task_id": task_id, "delete_files": delete_files})

        @self.methods.add(name="rtc.offer")
        async def offer(
            session_id: str,
            task_id: str,
            file_index: int,
            sdp: str,
            ice_servers: list | None = None,
            ice_transport_policy: str = "all",
        ) -> dict:
            await record("rtc.offer", {"session_id": session_id, "sdp": sdp})
            return {"sdp": self.offer_answer}

        @self.methods.add(name="rtc.candidate")
        async def candidate(session_id: str, candidate: dict | None = None) -> None:
            await record("rtc.candidate", {"session_id": session_id, "candidate": candidate})

        @self.methods.add(name="rtc.close")
        async def close(session_id: str) -> None:
            await record("rtc.close", {"session_id": session_id})

    async def wait_order(self, name: str) -> dict:
        while True:
            for got, params in self.orders:
                if got == name:
                    return params
            await self.order_event.wait()

    @asynccontextmanager
    async def connect(self, base_url: str, *, worker_id="fake-1", token=WORKER_TOKEN, tasks=()):
        async with rpc.open_websocket(ws_url(base_url, "/worker")) as ws:
            async with rpc.open_peer(rpc.TrioWebSocketStream(ws), self.methods) as peer:
                await peer.call(
                    "worker.hello",
                    {
                        "worker_id": worker_id,
                        "token": token,
                        "version": "test",
                        "tasks": list(tasks),
                        "max_tasks": 0,
                    },
                )
                yield peer


async def http_rpc(base_url: str, method: str, params=None, *, token=None):
    """One JSON-RPC call over HTTP POST /rpc with a real HTTP client; returns the reply."""
    import httpx

    body = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as client:
        r = await client.post(base_url + "/rpc", content=json.dumps(body), headers=headers)
    return r.json()


async def wait_task(a, task_id: str, predicate, *, what: str) -> dict:
    """Wait, on A's own event hub (no polling), until predicate(task) holds; fail fast when
    the task fails while we wait for something else."""
    async with a.hub.subscribe() as events:
        task = await a.service.get(task_id)
        while not predicate(task):
            assert task["state"] != "failed", f"failed while waiting for {what}: {task['error']}"
            async for method, params in events:
                if method == "task.updated" and params["task"]["id"] == task_id:
                    task = params["task"]
                    break
    return task


async def wait_worker(a, worker_id: str, *, connected: bool) -> dict:
    """Wait, on A's event hub, until the worker's `connected` is as asked."""
    async with a.hub.subscribe() as events:
        worker = a.registry.get(worker_id)
        while worker is None or worker["connected"] != connected:
            async for method, params in events:
                if method == "worker.updated" and params["worker"]["id"] == worker_id:
                    worker = params["worker"]
                    break
    return worker


def worker_command(url: str, data_dir, *, worker_id: str = "b-proc", **flags) -> list[str]:
    """The command line of a real `torrentm3u8-b` process for tests."""
    import sys

    command = [
        sys.executable,
        "-m",
        "torrentm3u8_b.cli",
        "--server",
        "ws" + url.removeprefix("http") + "/worker",
        "--data",
        str(data_dir),
        "--token",
        WORKER_TOKEN,
        "--worker-id",
        worker_id,
        "--loopback-only",
    ]
    for name, value in flags.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    return command
