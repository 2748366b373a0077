"""`torrentm3u8 demo` as a user runs it: a real subprocess (`python -m torrentm3u8_a.client
demo`), read through its stdout, A's HTTP API and websocket, then stopped with a signal.

Each run gets its own session (process group), so "nothing left running" is checked as "the
group is empty" after the demo exits: FFmpeg or any other child would still be in it.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import math
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from support import http_rpc

import rpc
from torrentm3u8_a.client import build_parser, open_client
from torrentm3u8_a.config import Config
from torrentm3u8_a.demo import SAMPLE_NAME, sample_folder
from torrentm3u8_a.magnets import parse_magnet
from torrentm3u8_a.storage import open_storage
from torrentm3u8_b.samples import magnet_for, make_sample, make_torrent
from torrentm3u8_b.seeder import open_seeder

pytestmark = pytest.mark.deadline(180)

REPO = Path(__file__).resolve().parents[2]
DEMO_SECONDS = 8  # the demo's sample length in the main test (60 s by default)
UP_DEADLINE = 120.0  # seconds until the URL line: the 720p sample is made on a busy machine
PLAYABLE_DEADLINE = 60.0  # seconds from the URL line to a playable task
STOP_DEADLINE = 10.0  # seconds for a signalled demo to exit (its own stop timeout is 5 s)
URL_LINE = re.compile(r"Open (http://\S+?)/? in a browser")
TASK_LINE = re.compile(r"sample task (\S+): (.+) \((\w+)\)")
DEAD_PORT = 9  # discard: nothing listens there
RUNS = itertools.count(1)  # numbers the stderr files of the runs


class Demo:
    """A running `torrentm3u8 demo` process: its stdout read line by line."""

    def __init__(self, process: trio.Process, stderr_path: Path) -> None:
        self.process = process
        self.stderr_path = stderr_path
        self.lines: list[str] = []
        self._buffer = b""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    async def next_line(self) -> str | None:
        """The next stdout line, or None at the end of the output."""
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some()
            if not chunk:
                if not self._buffer:
                    return None
                break
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        self.lines.append(line.decode())
        return self.lines[-1]

    async def wait_line(self, pattern: re.Pattern[str]) -> re.Match[str]:
        while (line := await self.next_line()) is not None:
            if match := pattern.search(line):
                return match
        raise AssertionError(f"the demo ended without {pattern.pattern!r}:\n{self.stderr()}")

    async def wait_up(self) -> tuple[str, str, str]:
        """(A's URL, sample task id, its state) from the lines printed once all is up."""
        with trio.fail_after(UP_DEADLINE):
            url = (await self.wait_line(URL_LINE))[1]
            task = await self.wait_line(TASK_LINE)
        return url, task[1], task[3]

    async def stop(self, signum: signal.Signals) -> int:
        """Send `signum`; the exit status, once stdout is closed and the process gone."""
        self.process.send_signal(signum)
        with trio.fail_after(STOP_DEADLINE):
            while await self.next_line() is not None:
                pass
            return await self.process.wait()


@asynccontextmanager
async def open_demo(data: Path, *args: str) -> AsyncIterator[Demo]:
    """`torrentm3u8 demo --data DATA ARGS...` in its own session; killed if still running."""
    command = [sys.executable, "-m", "torrentm3u8_a.client", "demo", "--data", str(data), *args]
    stderr_path = data.parent / f"demo-stderr-{next(RUNS)}.txt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    stderr = await trio.to_thread.run_sync(stderr_path.open, "wb")
    with stderr:  # the child has its own copy
        process = await trio.lowlevel.open_process(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
            env=env,
            cwd=data.parent,
        )
    demo = Demo(process, stderr_path)
    try:
        yield demo
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            await process.stdout.aclose()


def group_alive(pgid: int) -> bool:
    """True while any process is left in the process group (signal 0 checks, sends nothing)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_port_free(port: int) -> None:
    with socket.socket() as client, pytest.raises(ConnectionRefusedError):
        client.connect(("127.0.0.1", port))
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as hypercorn does
        server.bind(("127.0.0.1", port))
        server.listen()


async def assert_stops_cleanly(demo: Demo, signum: signal.Signals, port: int) -> None:
    assert await demo.stop(signum) == 0, demo.stderr()
    assert demo.lines[-1] == "stopped.", demo.lines
    assert not group_alive(demo.process.pid), "a process of the demo is still running"
    assert_port_free(port)


async def wait_task(url: str, task_id: str, predicate: Callable[[dict], Any]) -> dict:
    """Follow A's events over /ws (as the page does) until predicate(task) holds."""
    send, updates = trio.open_memory_channel[dict](math.inf)
    methods = rpc.Methods()

    @methods.add(name="task.updated")
    async def task_updated(task: dict) -> None:
        if task["id"] == task_id:
            send.send_nowait(task)

    @methods.add(name="task.removed")
    async def task_removed(id: str) -> None:
        """Not followed here."""

    @methods.add(name="worker.updated")
    async def worker_updated(worker: dict) -> None:
        """Not followed here."""

    with trio.fail_after(PLAYABLE_DEADLINE):
        async with open_client(url, None, methods) as peer:
            await peer.call("events.subscribe")
            task = await peer.call("task.get", {"id": task_id})
            while not predicate(task):
                assert task["state"] != "failed", task["error"]
                task = await updates.receive()
    return task


def playable(task: dict) -> bool:
    return task["state"] == "playable"


@pytest.mark.slow
async def test_demo_plays_its_sample_and_others_then_stops_on_sigint(tmp_path, free_port):
    data = tmp_path / "demo"
    listen = f"127.0.0.1:{free_port}"
    async with open_demo(data, "--listen", listen, "--seconds", str(DEMO_SECONDS)) as demo:
        url, task_id, _ = await demo.wait_up()
        assert url == f"http://{listen}"
        async with httpx.AsyncClient() as client:
            health = (await client.get(url + "/healthz")).json()
        assert health["ok"] is True

        sample = await wait_task(url, task_id, playable)
        assert sample["name"] == SAMPLE_NAME
        assert sample["worker_id"] == "demo-worker"
        assert [h["file_index"] for h in sample["hls"]] == [0]
        assert abs(sample["hls"][0]["duration"] - DEMO_SECONDS) < 1
        listed = (await http_rpc(url, "task.list"))["result"]
        assert [(t["id"], t["state"]) for t in listed] == [(task_id, "playable")]

        # Another magnet goes to the same local worker when its peer is reachable.
        content = tmp_path / "other"
        content.mkdir()
        clip = await make_sample(content / "other.mp4", seconds=2, size="320x240")
        torrent = await trio.to_thread.run_sync(make_torrent, clip)
        async with open_seeder(torrent, content) as seeder:
            added = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
            other = await wait_task(url, added["id"], playable)
        assert other["name"] == "other.mp4"
        async with httpx.AsyncClient() as client:
            health = (await client.get(url + "/healthz")).json()
        assert health["workers_connected"] == 1

        await assert_stops_cleanly(demo, signal.SIGINT, free_port)
    assert (sample_folder(data, DEMO_SECONDS) / SAMPLE_NAME).is_file()


@pytest.mark.slow
async def test_demo_reuses_its_sample_and_task_and_stops_on_sigterm(tmp_path, free_port):
    data = tmp_path / "demo"
    video = sample_folder(data, 2) / SAMPLE_NAME
    video.parent.mkdir(parents=True)
    await make_sample(video, seconds=2, size="320x240")  # as if made by an earlier run
    made = video.stat().st_mtime_ns
    # An earlier run stopped before the download ended: its task's magnet names a seeder port
    # that is gone. The demo must not leave the sample stuck on it.
    torrent = await trio.to_thread.run_sync(make_torrent, video)
    stale_magnet = magnet_for(torrent, peers=[("127.0.0.1", DEAD_PORT)])
    (data / "a").mkdir()
    async with open_storage(Config(data_dir=data / "a").db_path) as db:
        stale, _ = await db.add_task(parse_magnet(stale_magnet))
    listen = f"127.0.0.1:{free_port}"

    async with open_demo(data, "--listen", listen, "--seconds", "2") as demo:
        url, task_id, _ = await demo.wait_up()
        assert not any(line.startswith("making") for line in demo.lines), demo.lines
        assert task_id != stale["id"]
        task = await wait_task(url, task_id, playable)
        assert task["files"][0]["size"] == video.stat().st_size
        listed = (await http_rpc(url, "task.list"))["result"]
        assert [t["id"] for t in listed] == [task_id]
        await assert_stops_cleanly(demo, signal.SIGTERM, free_port)

    # Again on the same data: the same task, playable at once (B kept its HLS).
    async with open_demo(data, "--listen", listen, "--seconds", "2") as demo:
        url, again_id, state = await demo.wait_up()
        assert (again_id, state) == (task_id, "playable")
        await assert_stops_cleanly(demo, signal.SIGTERM, free_port)
    assert video.stat().st_mtime_ns == made


async def test_sigint_while_making_the_sample_stops_ffmpeg_too(tmp_path, free_port):
    data = tmp_path / "demo"
    async with open_demo(data, "--listen", f"127.0.0.1:{free_port}", "--seconds", "60") as demo:
        with trio.fail_after(UP_DEADLINE):
            await demo.wait_line(re.compile("making a 60 s 720p sample"))
        assert await demo.stop(signal.SIGINT) == 0, demo.stderr()
        assert not group_alive(demo.process.pid), "FFmpeg (or another child) is still running"
    assert not (sample_folder(data, 60) / SAMPLE_NAME).exists()


async def test_a_busy_port_is_a_one_line_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        async with open_demo(tmp_path / "demo", "--listen", listen) as demo:
            with trio.fail_after(STOP_DEADLINE * 3):
                assert await demo.process.wait() == 1
    assert demo.stderr().strip().splitlines() == [
        f"cannot listen on {listen}: Address already in use; pick another with --listen"
    ]
    assert not (tmp_path / "demo" / "sample").exists()


def test_scripts_demo_runs_the_installed_demo_command():
    script = (REPO / "scripts" / "demo").read_text()
    commands = [line.strip() for line in script.splitlines() if not line.startswith("#")]
    run = 'exec .venv/bin/torrentm3u8 demo "$@"'
    assert commands.index("scripts/setup") < commands.index(run)
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="torrentm3u8")
    assert entry.value == "torrentm3u8_a.client:main"
    args = build_parser().parse_args(["demo"])
    assert (args.command, args.listen, args.seconds) == ("demo", "127.0.0.1:8080", 60)
