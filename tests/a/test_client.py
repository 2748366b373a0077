"""The `torrentm3u8` CLI as a real subprocess against a running A (hypercorn on 127.0.0.1:0),
with a fake worker speaking the real link protocol to drive a task through its states."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from functools import partial

import pytest
import trio
from support import http_rpc, run_a

from torrentm3u8_a.format import human_bytes, human_duration, human_eta, human_percent, human_rate

HEX = "f7079c66cca02ab45934b9868572060010dfc97e"
MAGNET = f"magnet:?xt=urn:btih:{HEX}&dn=Big+Buck+Bunny"
FILES = [
    {"index": 0, "path": "movie/a.mkv", "size": 1_000_000, "is_video": True},
    {"index": 1, "path": "movie/readme.txt", "size": 10, "is_video": False},
]

pytestmark = pytest.mark.deadline(60)


def cli_command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "torrentm3u8_a.client", "--server", url, *args]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any TORRENTM3U8_ setting of the machine, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORRENTM3U8_")}
    return env | extra


async def cli(url: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI to its end; A keeps serving meanwhile. Returns (exit code, stdout, stderr)."""
    done = await trio.run_process(
        cli_command(url, *args),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env or clean_env(),
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


class LineReader:
    """Lines of a subprocess pipe, one at a time (None at the end)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> str | None:
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some()
            if not chunk:
                rest, self.buffer = self.buffer, b""
                return rest.decode() or None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    async def rest(self) -> str:
        lines = []
        while (line := await self.next()) is not None:
            lines.append(line)
        return "\n".join(lines)


async def add_task(url: str) -> dict:
    code, out, err = await cli(url, "--json", "add", MAGNET)
    assert (code, err) == (0, "")
    return json.loads(out)


async def test_add_list_show_rm(service_a):
    a, url = service_a
    code, out, err = await cli(url, "list")
    assert (code, out, err) == (0, "no tasks yet: torrentm3u8 add MAGNET\n", "")

    code, out, err = await cli(url, "add", MAGNET)
    assert (code, err) == (0, "")
    [task] = await a.service.list()
    assert out.splitlines()[:2] == [
        f"{task['id']}  Big Buck Bunny",
        "  state      waiting for a worker",
    ]
    assert f"  info hash  {HEX}" in out

    code, out, err = await cli(url, "add", "https://example.org/movie.torrent")
    assert (code, out, err) == (1, "", "error: not a magnet link\n")
    assert len(await a.service.list()) == 1

    code, out, err = await cli(url, "list")
    assert code == 0
    assert out.splitlines() == [
        "ID           STATE          DONE       SIZE  NAME",
        f"{task['id']}  waiting          0%          ?  Big Buck Bunny",
    ]

    await a.db.set_metadata(task["id"], "movie", None, None, FILES)
    code, out, err = await cli(url, "show", task["id"])
    assert code == 0
    assert "  size       1.0 MB" in out.splitlines()
    assert "  [0] video    1.0 MB  movie/a.mkv" in out.splitlines()
    assert "  [1]            10 B  movie/readme.txt" in out.splitlines()
    assert "more files" not in out

    many = [
        {"index": i, "path": f"movie/{i}.txt", "size": 100_000, "is_video": False}
        for i in range(2, 1502)
    ]
    await a.db.add_files(task["id"], many)
    code, out, err = await cli(url, "show", task["id"])
    assert code == 0
    assert out.splitlines()[-1] == "  ... and 502 more files (the API's task.files lists them all)"
    assert "  size       151 MB" in out.splitlines()  # all files, not only those listed

    code, out, err = await cli(url, "show", "nope")
    assert (code, out, err) == (1, "", "error: no task with id 'nope'\n")
    code, out, err = await cli(url, "show", "--", "-nope")  # how an id like an option is given
    assert (code, out, err) == (1, "", "error: no task with id '-nope'\n")

    code, out, err = await cli(url, "rm", task["id"])
    assert (code, out, err) == (0, f"removed {task['id']}\n", "")
    assert await a.service.list() == []


async def test_json_output_parses(service_a):
    _, url = service_a
    added = await add_task(url)
    assert (added["state"], added["info_hash"]) == ("waiting", HEX)
    code, out, err = await cli(url, "--json", "list")
    assert code == 0, err
    assert [t["id"] for t in json.loads(out)] == [added["id"]]
    code, out, err = await cli(url, "--json", "show", added["id"])
    assert code == 0, err
    assert json.loads(out)["magnet"] == MAGNET


async def test_workers(service_a, fake_worker):
    _, url = service_a
    async with fake_worker.connect(url):
        code, out, _ = await cli(url, "workers")
    assert (code, out) == (0, "fake-1  connected     0 tasks  version test\n")
    code, out, _ = await cli(url, "workers")
    assert re.fullmatch(r"fake-1  disconnected  0 tasks  last seen \d+ s ago\n", out)


async def test_watch_follows_a_task_until_playable(service_a, fake_worker):
    _, url = service_a
    task_id = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]["id"]
    async with fake_worker.connect(url) as link, trio.open_nursery() as nursery:
        await fake_worker.wait_order("task.start")
        proc = await nursery.start(
            partial(
                trio.run_process,
                cli_command(url, "watch", task_id),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
                env=clean_env(),
            )
        )
        lines = LineReader(proc.stdout)

        async def report(method: str, **params) -> str | None:
            await link.call(method, {"task_id": task_id, **params})
            return await lines.next()

        # The first line is printed once watch has subscribed and read the task.
        first = await lines.next()
        why = "" if first is not None else await LineReader(proc.stderr).rest()
        assert first == "downloading  fetching metadata  0 peers", why
        assert (
            await report("task.metadata", name="movie", info_hash=HEX, files=FILES)
            == "downloading  0%  0 B of 1.0 MB  0 B/s  0 peers"
        )
        progress = {"downloaded": 500_000, "total": 1_000_010, "upload_rate": 0, "eta": 180}
        assert (
            await report("task.progress", percent=49.99, download_rate=2_500, peers=1, **progress)
            == "downloading  49.9%  500 kB of 1.0 MB  2.5 kB/s  1 peer  3 min left"
        )
        assert await report("task.state", state="completed") == "completed  1.0 MB"
        assert await report("task.state", state="transcoding") == "transcoding  HLS 0%"
        assert (
            await report("task.transcode_progress", file_index=0, percent=40.0)
            == "transcoding  HLS 40%"
        )
        hls = {"file_index": 0, "playlist": "index.m3u8", "duration": 3600.0, "segments": 900}
        assert await report("task.hls_ready", **hls) == "playable  1 file, 1 h of video"
        assert await lines.rest() == ""
        assert await proc.stderr.receive_some() == b""
        await proc.wait()
        assert proc.returncode == 0


async def test_watch_exits_1_when_the_task_fails_or_is_removed(service_a, fake_worker):
    _, url = service_a
    task_id = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]["id"]
    async with fake_worker.connect(url) as link, trio.open_nursery() as nursery:
        await fake_worker.wait_order("task.start")
        watch = partial(
            trio.run_process,
            cli_command(url, "watch", task_id),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False,
            env=clean_env(),
        )
        proc = await nursery.start(watch)
        lines = LineReader(proc.stdout)
        assert await lines.next() == "downloading  fetching metadata  0 peers"
        error = "no playable video in this torrent"
        await link.call("task.state", {"task_id": task_id, "state": "failed", "error": error})
        assert await lines.rest() == f"failed: {error}"
        await proc.wait()
        assert proc.returncode == 1

        # Watching a failed task ends at once; a removed one ends with an error line.
        code, out, err = await cli(url, "watch", task_id)
        assert (code, out, err) == (1, f"failed: {error}\n", "")
        assert (await http_rpc(url, "task.retry", {"id": task_id}))["result"]["state"] == "waiting"
        proc = await nursery.start(watch)
        assert await LineReader(proc.stdout).next()
        assert (await http_rpc(url, "task.remove", {"id": task_id}))["result"] is True
        await proc.wait()
        assert (await LineReader(proc.stderr).rest()) == f"error: task {task_id} was removed"
        assert proc.returncode == 1


async def test_watch_reports_a_lost_connection(tmp_path):
    async with trio.open_nursery() as nursery:
        async with run_a(tmp_path / "a") as (_, url):
            task_id = (await http_rpc(url, "task.add", {"magnet": MAGNET}))["result"]["id"]
            proc = await nursery.start(
                partial(
                    trio.run_process,
                    cli_command(url, "watch", task_id),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    check=False,
                    env=clean_env(),
                )
            )
            assert await LineReader(proc.stdout).next() == "waiting for a worker"
        # A stopped while watch was following the task.
        await proc.wait()
        assert (await LineReader(proc.stderr).rest()) == f"lost the connection to A at {url}"
        assert proc.returncode == 1


async def test_unreachable_server_is_one_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    for command in (["list"], ["watch", "x"]):
        code, out, err = await cli(url, *command)
        assert (code, out, err) == (1, "", f"cannot reach A at {url}: Connection refused\n")


async def test_not_a_server_url(service_a):
    _, url = service_a
    code, _, err = await cli(url + "/healthz", "list")
    assert code == 1
    assert err == (
        f"cannot reach A at {url}/healthz: HTTP 404 instead of a websocket: is this the address"
        " of A?\n"
    )
    code, _, err = await cli("ftp://127.0.0.1", "list")
    assert code == 2
    assert err.splitlines()[-1] == (
        "torrentm3u8: error: --server must be an http(s):// or ws(s):// URL, not 'ftp://127.0.0.1'"
    )


async def test_api_token(tmp_path):
    async with run_a(tmp_path / "a", api_token="s3cret") as (a, url):
        code, out, err = await cli(url, "list")
        assert (code, out) == (1, "")
        assert err == (
            "error: API token missing or wrong"
            " (give A's API token with --token or TORRENTM3U8_API_TOKEN)\n"
        )
        code, out, err = await cli(url, "--token", "wrong", "add", MAGNET)
        assert (code, out) == (1, "")
        assert await a.service.list() == []

        code, out, err = await cli(url, "--token", "s3cret", "add", MAGNET)
        assert (code, err) == (0, "")
        code, out, err = await cli(
            url, "--json", "list", env=clean_env(TORRENTM3U8_API_TOKEN="s3cret")
        )
        assert [t["info_hash"] for t in json.loads(out)] == [HEX]


@pytest.mark.parametrize(
    ("fn", "value", "text"),
    [
        (human_bytes, 0, "0 B"),
        (human_bytes, 999, "999 B"),
        (human_bytes, 1000, "1.0 kB"),
        (human_bytes, 1_234_567, "1.2 MB"),
        (human_bytes, 123_456_789, "123 MB"),
        (human_bytes, 999_960, "1.0 MB"),  # not "1000 kB"
        (human_bytes, 4.2e15, "4.2 PB"),
        (human_bytes, None, "?"),
        (human_bytes, -1, "?"),
        (human_rate, 2_500, "2.5 kB/s"),
        (human_rate, float("nan"), "?"),
        (human_duration, 44.6, "45 s"),
        (human_duration, 180, "3 min"),
        (human_duration, 3599, "1 h"),
        (human_duration, 3600, "1 h"),
        (human_duration, 7500, "2 h 5 min"),
        (human_duration, 3 * 86400 + 4 * 3600, "3 d 4 h"),
        (human_eta, 400 * 86400, "?"),
        (human_eta, -5, "?"),
        (human_eta, 90, "2 min"),
        (human_percent, 99.99, "99.9%"),
        (human_percent, 100, "100%"),
        (human_percent, 7, "7%"),
        (human_percent, 42.35, "42.3%"),
        (human_percent, 120, "100%"),
        (human_percent, None, "?"),
    ],
)
def test_human_units(fn, value, text):
    assert fn(value) == text
