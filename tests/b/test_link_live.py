"""The A<->B link with real sockets: A under hypercorn on 127.0.0.1, B as a real
`torrentm3u8-b` process. Restarts, refusals and dead links as a user would meet them."""

from __future__ import annotations

import signal
import socket
import subprocess
from functools import partial

import pytest
import trio
from support import run_a, wait_worker, worker_command

pytestmark = pytest.mark.deadline(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_b_survives_a_restart_and_a_sees_b_die(tmp_path):
    port = free_port()
    listen = f"127.0.0.1:{port}"
    async with trio.open_nursery() as nursery:
        async with run_a(tmp_path / "a", listen=listen, liveness_timeout=2.0) as (a, url):
            b = await nursery.start(
                partial(trio.run_process, worker_command(url, tmp_path / "b"), check=False)
            )
            worker = await wait_worker(a, "b-proc", connected=True)
            assert worker["version"]
        # A is gone; B keeps trying. A comes back on the same address: B is back by itself.
        async with run_a(tmp_path / "a", listen=listen, liveness_timeout=2.0) as (a, url):
            await wait_worker(a, "b-proc", connected=True)
            # A frozen B sends nothing: the heartbeat finds it dead within the liveness timeout.
            b.send_signal(signal.SIGSTOP)
            start = trio.current_time()
            await wait_worker(a, "b-proc", connected=False)
            assert trio.current_time() - start < 2.0 + 5.0 + 1.0  # timeout + one ping interval
            b.kill()
            b.send_signal(signal.SIGCONT)


async def test_wrong_token_is_refused_and_logged(tmp_path, caplog):
    async with run_a(tmp_path / "a") as (a, url):
        command = worker_command(url, tmp_path / "b")
        command[command.index("--token") + 1] = "not-the-token"
        proc = await trio.lowlevel.open_process(command, stderr=subprocess.PIPE)
        try:
            said = b""
            while b"check --token" not in said:
                chunk = await proc.stderr.receive_some()
                assert chunk, said.decode()
                said += chunk
        finally:
            proc.kill()
            await proc.wait()
            await proc.stderr.aclose()
        assert "refused: wrong or missing token" in caplog.text
        assert a.registry.connected_ids() == []
