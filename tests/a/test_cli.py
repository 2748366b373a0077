"""`torrentm3u8-a` and `torrentm3u8-b` as real processes: their help, their refusal to start
without a worker token, and A started from flags or environment variables, serving /healthz and
leaving cleanly on SIGTERM or SIGINT."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
import trio
from support import http_rpc

pytestmark = pytest.mark.deadline(60)

STARTUP_TIMEOUT = 30.0  # seconds for A to answer /healthz (imports are slow on a busy machine)
STOP_TIMEOUT = 10.0  # seconds for A to exit after a signal
POLL_INTERVAL = 0.1  # seconds between two /healthz attempts

A_SETTINGS = {
    "--listen": "TORRENTM3U8_LISTEN",
    "--data": "TORRENTM3U8_DATA",
    "--worker-token": "TORRENTM3U8_WORKER_TOKEN",
    "--api-token": "TORRENTM3U8_API_TOKEN",
    "--ice-server": "TORRENTM3U8_ICE_SERVERS",
    "--log-level": "TORRENTM3U8_LOG_LEVEL",
}
B_SETTINGS = {
    "--server": "TORRENTM3U8_SERVER",
    "--data": "TORRENTM3U8_DATA",
    "--token": "TORRENTM3U8_WORKER_TOKEN",
    "--progress-interval": "TORRENTM3U8_PROGRESS_INTERVAL",
    "--metadata-timeout": "TORRENTM3U8_METADATA_TIMEOUT",
    "--transcode-concurrency": "TORRENTM3U8_TRANSCODE_CONCURRENCY",
    "--log-level": "TORRENTM3U8_LOG_LEVEL",
}


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any TORRENTM3U8_ setting of the machine, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORRENTM3U8_")}
    return env | {"COLUMNS": "100"} | extra


async def run_module(module: str, *args: str, results: dict | None = None, **env: str):
    done = await trio.run_process(
        [sys.executable, "-m", module, *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=clean_env(**env),
    )
    result = (done.returncode, done.stdout.decode(), done.stderr.decode())
    if results is not None:
        results[module] = result
    return result


async def run_both(*args: str) -> dict[str, tuple[int, str, str]]:
    """The same command line given to A's and B's CLI, at once (B's imports are slow)."""
    results: dict[str, tuple[int, str, str]] = {}
    async with trio.open_nursery() as nursery:
        for module in ("torrentm3u8_a.cli", "torrentm3u8_b.cli"):
            nursery.start_soon(lambda m=module: run_module(m, *args, results=results))
    return results


def option_blocks(help_text: str) -> dict[str, str]:
    """{"--flag": its help text joined on one line} from argparse's --help output."""
    options = help_text.split("\noptions:\n", 1)[1]
    blocks: dict[str, str] = {}
    flag = None
    for line in options.splitlines():
        start = re.match(r"  (?:-\w, )?(--[\w-]+)", line)
        if start:
            flag = start.group(1)
            blocks[flag] = line
        elif flag and line.startswith("      "):
            blocks[flag] += " " + line.strip()
        else:
            flag = None
    return blocks


async def test_help_lists_every_setting_with_its_env_var():
    results = await run_both("--help")
    for module, settings in (("torrentm3u8_a.cli", A_SETTINGS), ("torrentm3u8_b.cli", B_SETTINGS)):
        code, out, err = results[module]
        assert (code, err) == (0, "")
        blocks = option_blocks(out)
        for flag, env in settings.items():
            assert f"[{env}" in blocks[flag], (module, flag)
        # Every other setting has its variable too (only --help and --version have none).
        without = [f for f, text in blocks.items() if "[TORRENTM3U8_" not in text]
        assert sorted(without) == ["--help", "--version"], module


async def test_missing_worker_token_is_a_usage_error(tmp_path):
    results = await run_both("--data", str(tmp_path / "data"))
    code, out, err = results["torrentm3u8_a.cli"]
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == (
        "torrentm3u8-a: error: a worker token is required:"
        " --worker-token or TORRENTM3U8_WORKER_TOKEN"
    )
    code, out, err = results["torrentm3u8_b.cli"]
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == (
        "torrentm3u8-b: error: a worker token is required: --token or TORRENTM3U8_WORKER_TOKEN"
    )
    assert not (tmp_path / "data").exists()


def free_port() -> int:
    """A port nobody listened on a moment ago (bound to 127.0.0.1:0, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_healthy(url: str, proc: trio.Process, log: Path) -> dict:
    """GET /healthz until A answers; fails at once if A exited."""
    with trio.fail_after(STARTUP_TIMEOUT):
        async with httpx.AsyncClient() as client:
            while True:
                if proc.returncode is not None:
                    raise AssertionError(f"A exited: {await trio.Path(log).read_text()}")
                try:
                    response = await client.get(url + "/healthz")
                except httpx.TransportError:
                    await trio.sleep(POLL_INTERVAL)
                    continue
                assert response.status_code == 200
                return response.json()


async def stop(proc: trio.Process, signum: int) -> int:
    proc.send_signal(signum)
    with trio.fail_after(STOP_TIMEOUT):
        return await proc.wait()


async def test_a_serves_from_flags_and_stops_on_sigterm(tmp_path):
    port = free_port()
    log = tmp_path / "a.log"
    data = tmp_path / "data"
    command = [
        sys.executable,
        "-m",
        "torrentm3u8_a.cli",
        "--listen",
        f"127.0.0.1:{port}",
        "--data",
        str(data),
        "--worker-token",
        "w-secret",
        "--loopback-only",
    ]
    with log.open("wb") as stderr:
        proc = await trio.lowlevel.open_process(command, stderr=stderr, env=clean_env())
    try:
        health = await wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        assert (health["ok"], health["workers_connected"]) == (True, 0)
        assert (data / "torrentm3u8.sqlite3").is_file()
        assert await stop(proc, signal.SIGTERM) == 0
    finally:
        proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
    assert "SIGTERM: shutting down" in log.read_text()


async def test_a_takes_its_settings_from_env_vars(tmp_path):
    port = free_port()
    log = tmp_path / "a.log"
    data = tmp_path / "env-data"
    env = clean_env(
        TORRENTM3U8_LISTEN=f"127.0.0.1:{port}",
        TORRENTM3U8_DATA=str(data),
        TORRENTM3U8_WORKER_TOKEN="w-secret",
        TORRENTM3U8_API_TOKEN="api-secret",
        TORRENTM3U8_LOOPBACK_ONLY="1",
        TORRENTM3U8_LOG_LEVEL="warning",
    )
    with log.open("wb") as stderr:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "torrentm3u8_a.cli"], stderr=stderr, env=env
        )
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(url, proc, log)
        assert (data / "torrentm3u8.sqlite3").is_file()
        assert (await http_rpc(url, "task.list"))["error"]["code"] == -32004
        assert (await http_rpc(url, "task.list", token="api-secret"))["result"] == []
        assert await stop(proc, signal.SIGINT) == 0
    finally:
        proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
    # At log level warning A's INFO lines (startup, shutdown) are gone.
    assert "INFO torrentm3u8" not in log.read_text()
