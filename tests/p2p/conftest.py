"""Fixtures for the P2P tests: a real A, a real B and a real seeder until a task is playable,
a Python viewer that signals through A's `/ws` like the browser does, and a real coturn.

    async def test_x(playable):
        a, url, worker, task = playable
        async with open_viewer(url) as viewer, viewer.stream(task["id"], 0) as (session, client):
            status, header, body = await client.get("index.m3u8")

Conftest modules cannot be imported, so the fixtures `open_playable` and `open_viewer` return
those functions; `coturn` runs `open_coturn`; `chromium` and `page` are tests/browser/conftest.py's
fixtures. bench/bench_playback.py loads this file by path for the same helpers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from support import WORKER_TOKEN, http_rpc, run_a, wait_task, wait_worker, ws_url

import rpc
from torrentm3u8_b.config import WorkerConfig
from torrentm3u8_b.paths import hls_dir
from torrentm3u8_b.samples import make_sample, make_torrent
from torrentm3u8_b.seeder import open_seeder
from torrentm3u8_b.webrtc import RtcClient, rtc_client
from torrentm3u8_b.worker import Worker, run_worker

HERE = Path(__file__).resolve().parent
PAGES = HERE / "pages"
BROWSER_CONFTEST = HERE.parent / "browser" / "conftest.py"

SAMPLE_SECONDS = 6  # two HLS segments of at most 4 s
SAMPLE_SIZE = "320x240"
B_WORKER_ID = "b-p2p"
PLAYABLE_TIMEOUT = 60.0  # seconds from task.add to playable (download + HLS, busy machine)
TURN_START_TIMEOUT = 10.0  # seconds for coturn to answer a STUN binding request
TURN_PROBE_INTERVAL = 0.2  # seconds between STUN binding probes while coturn starts
TURN_USER = "viewer"
TURN_REALM = "torrentm3u8.test"


# --- a playable task: A + seeder + B -----------------------------------------------------------


@pytest.fixture(scope="session")
def sample_torrent(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    """(torrent, content dir) of 'P2P Clip/': a 6 s 320x240 H.264/AAC clip and a text file.
    Made once per run; seeders read it, nobody writes it."""
    content = tmp_path_factory.mktemp("p2p-content")
    folder = content / "P2P Clip"
    folder.mkdir()
    trio.run(partial(make_sample, folder / "clip.mp4", seconds=SAMPLE_SECONDS, size=SAMPLE_SIZE))
    (folder / "notes.txt").write_text("not a video\n")
    return make_torrent(folder), content


@dataclass
class Playable:
    """A playable task on a real A with a real in-process B. Unpacks as (a, url, worker, task)."""

    a: Any  # torrentm3u8_a.app.ServiceA
    url: str
    worker: Worker
    task: dict[str, Any]
    b_config: WorkerConfig
    _nursery: trio.Nursery
    _b_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    _b_done: trio.Event = field(default_factory=trio.Event)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.a, self.url, self.worker, self.task))

    @property
    def file_index(self) -> int:
        """The file that has a rendition (the clip)."""
        return self.task["hls"][0]["file_index"]

    @property
    def hls_root(self) -> Path:
        """B's HLS folder of the clip: the stream sessions' root."""
        return hls_dir(self.b_config.data_dir, self.task["id"], self.file_index)

    @property
    def hls_files(self) -> list[str]:
        """The playlist and its segments, in playlist order."""
        lines = (self.hls_root / "index.m3u8").read_text().splitlines()
        return ["index.m3u8", *(line for line in lines if line and not line.startswith("#"))]

    async def start_b(self) -> Worker:
        self._b_scope, self._b_done = trio.CancelScope(), trio.Event()
        self.worker = await self._nursery.start(self._run_b, self._b_scope, self._b_done)
        return self.worker

    async def stop_b(self) -> None:
        """Cancel B (as a crash would end it) and wait until it let go of its files."""
        self._b_scope.cancel()
        await self._b_done.wait()

    async def restart_b(self) -> Worker:
        """Stop B, start it again on the same data dir, wait until A sees it connected."""
        await self.stop_b()
        await wait_worker(self.a, B_WORKER_ID, connected=False)
        worker = await self.start_b()
        await wait_worker(self.a, B_WORKER_ID, connected=True)
        return worker

    async def _run_b(self, scope, done, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            with scope:
                async with trio.open_nursery() as nursery:
                    task_status.started(await nursery.start(run_worker, self.b_config))
        finally:
            done.set()


@contextlib.asynccontextmanager
async def open_playable(
    base: Path, torrent: bytes, content: Path, **a_overrides: Any
) -> AsyncIterator[Playable]:
    """Real A (run_a, with `a_overrides` on its Config), a real seeder and a real B in this
    process; yields once the task is playable."""
    b_config = WorkerConfig(
        server=ws_url("http://placeholder", "/worker"),
        data_dir=base / "b",
        token=WORKER_TOKEN,
        worker_id=B_WORKER_ID,
        loopback_only=True,
    )
    async with (
        run_a(base / "a", **a_overrides) as (a, url),
        open_seeder(torrent, content) as seeder,
        trio.open_nursery() as nursery,
    ):
        b_config.server = ws_url(url, "/worker")
        added = (await http_rpc(url, "task.add", {"magnet": seeder.magnet()}))["result"]
        playable = Playable(a, url, None, added, b_config, nursery)  # type: ignore[arg-type]
        with trio.fail_after(PLAYABLE_TIMEOUT):
            await playable.start_b()
            playable.task = await wait_task(
                a, added["id"], lambda t: t["state"] == "playable", what="a playable rendition"
            )
        yield playable
        nursery.cancel_scope.cancel()


@pytest.fixture(name="open_playable")
def _open_playable_fixture() -> Any:
    return open_playable


@pytest.fixture
async def playable(tmp_path, sample_torrent) -> AsyncIterator[Playable]:
    """A 6 s clip, playable on a real B behind a real A: unpack as (a, url, worker, task)."""
    async with open_playable(tmp_path, *sample_torrent) as ready:
        yield ready


# --- a viewer that signals through A's /ws, as static/js/player.js does ----------------------


class Viewer:
    """One `/ws` connection to A; `stream()` runs webrtc.rtc_client over A's signaling."""

    def __init__(self, peer: rpc.Peer) -> None:
        self.peer = peer
        self.trickled: list[dict[str, Any]] = []  # stream.candidate notifications from B

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self.peer.call(method, params)

    async def error_code(self, method: str, params: dict[str, Any]) -> int:
        """The JSON-RPC error code A answers `method` with (fails the test on success)."""
        with pytest.raises(rpc.RemoteError) as caught:
            await self.peer.call(method, params)
        return caught.value.code

    @contextlib.asynccontextmanager
    async def stream(
        self,
        task_id: str,
        file_index: int,
        *,
        opened: dict[str, Any] | None = None,
        sdps: list[str] | None = None,
        close: bool = True,
    ) -> AsyncIterator[tuple[str, RtcClient]]:
        """stream.open (unless `opened` is its result already), stream.offer, stream.candidate
        (end of candidates: the Python client puts its candidates in the offer), then the open
        data channel; stream.close on a normal exit when `close`. `sdps` gets offer and answer."""
        if opened is None:
            params = {"task_id": task_id, "file_index": file_index}
            opened = await self.call("stream.open", params)
        session_id = opened["session_id"]

        async def signaling(offer: str) -> str:
            answer = await self.call("stream.offer", {"session_id": session_id, "sdp": offer})
            await self.call("stream.candidate", {"session_id": session_id, "candidate": None})
            if sdps is not None:
                sdps.extend([offer, answer["sdp"]])
            return answer["sdp"]

        async with rtc_client(
            signaling,
            loopback_only=True,
            ice_servers=opened["ice_servers"],
            ice_transport_policy=opened["ice_transport_policy"],
        ) as client:
            yield session_id, client
            if close:
                await self.call("stream.close", {"session_id": session_id})


@contextlib.asynccontextmanager
async def open_viewer(url: str) -> AsyncIterator[Viewer]:
    methods = rpc.Methods()
    viewer: Viewer | None = None

    @methods.add(name="stream.candidate")
    async def trickled(session_id: str, candidate: dict | None = None) -> None:
        assert viewer is not None
        viewer.trickled.append({"session_id": session_id, "candidate": candidate})

    async with rpc.open_websocket(ws_url(url, "/ws")) as ws:
        async with rpc.open_peer(rpc.TrioWebSocketStream(ws), methods, name="A /ws") as peer:
            viewer = Viewer(peer)
            yield viewer


@pytest.fixture(name="open_viewer")
def _open_viewer_fixture() -> Any:
    return open_viewer


# --- coturn -----------------------------------------------------------------------------------


@dataclass
class Turn:
    port: int
    username: str
    credential: str
    log: list[str]  # coturn's stdout lines so far

    def ice_server(self, transport: str = "udp") -> dict[str, Any]:
        return {
            "urls": f"turn:127.0.0.1:{self.port}?transport={transport}",
            "username": self.username,
            "credential": self.credential,
        }


def _free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (coturn listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


STUN_BINDING_REQUEST = 0x0001
STUN_BINDING_SUCCESS = 0x0101
STUN_MAGIC = 0x2112A442


async def _stun_answers(port: int) -> bool:
    """Whether a STUN binding request to 127.0.0.1:port gets its success response in time."""
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", STUN_BINDING_REQUEST, 0, STUN_MAGIC) + transaction
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.connect(("127.0.0.1", port))
        await sock.send(request)
        with trio.move_on_after(TURN_PROBE_INTERVAL):
            try:
                reply = await sock.recv(2048)
            except ConnectionRefusedError:  # ICMP port unreachable: not listening yet
                await trio.sleep(TURN_PROBE_INTERVAL)
                return False
            return reply[:2] == struct.pack("!H", STUN_BINDING_SUCCESS) and reply[8:20] == (
                transaction
            )
    return False


@pytest.fixture
def turnserver() -> str:
    """coturn's `turnserver`: missing fails the test, or skips it with TORRENTM3U8_SKIP_TURN=1."""
    exe = shutil.which("turnserver")
    if exe is None:
        if os.environ.get("TORRENTM3U8_SKIP_TURN") == "1":
            pytest.skip("no turnserver on PATH (apt-get install coturn); TORRENTM3U8_SKIP_TURN=1")
        pytest.fail(
            "no turnserver on PATH: apt-get install coturn (or set TORRENTM3U8_SKIP_TURN=1 to skip)"
        )
    return exe


@contextlib.asynccontextmanager
async def open_coturn(exe: str, folder: Path) -> AsyncIterator[Turn]:
    """coturn (`exe`) on 127.0.0.1 (UDP and TCP, lt-cred-mech), stopped (SIGTERM, then SIGKILL)
    on exit; only this process, by the handle trio keeps. Yields once it answers STUN."""
    await trio.Path(folder).mkdir(parents=True, exist_ok=True)
    turn = Turn(_free_port(), TURN_USER, secrets.token_hex(8), [])
    settings = [
        "listening-ip=127.0.0.1",
        "relay-ip=127.0.0.1",
        f"listening-port={turn.port}",
        "min-port=49152",
        "max-port=65535",
        "lt-cred-mech",
        f"user={turn.username}:{turn.credential}",
        f"realm={TURN_REALM}",
        "fingerprint",
        "no-tls",
        "no-dtls",
        "no-cli",
        "no-rfc5780",
        "allow-loopback-peers",  # test only: coturn refuses 127.x peers by default
        "no-multicast-peers",
        f"userdb={folder / 'turndb'}",
        f"pidfile={folder / 'turnserver.pid'}",
        "log-file=stdout",
        "simple-log",
        "verbose",  # logs each allocation: the tests check both ends allocated
    ]
    config = folder / "turnserver.conf"
    await trio.Path(config).write_text("\n".join(settings) + "\n")
    command = [exe, "-c", str(config)]
    async with trio.open_nursery() as nursery:
        process = await nursery.start(
            partial(
                trio.run_process,
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=False,
            )
        )
        exited = trio.Event()

        async def read_log() -> None:
            pending = b""
            async for data in process.stdout:
                *lines, pending = (pending + data).split(b"\n")
                turn.log += [line.decode("utf-8", "replace") for line in lines]
            exited.set()

        nursery.start_soon(read_log)
        with trio.fail_after(TURN_START_TIMEOUT):
            while not await _stun_answers(turn.port):
                if exited.is_set():
                    pytest.fail("turnserver exited at start:\n" + "\n".join(turn.log[-20:]))
        try:
            yield turn
        finally:
            nursery.cancel_scope.cancel()  # run_process terminates it (and waits for it)


@pytest.fixture
async def coturn(turnserver, tmp_path) -> AsyncIterator[Turn]:
    async with open_coturn(turnserver, tmp_path / "coturn") as turn:
        yield turn


# --- headless Chromium (tests/browser/conftest.py's fixtures and helpers) --------------------


def load_browser_support() -> Any:
    """tests/browser/conftest.py as a module: Chromium flags, BrowserThread, Page, the shim."""
    spec = importlib.util.spec_from_file_location("p2p_browser_support", BROWSER_CONFTEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


browser_support = load_browser_support()
chromium = browser_support.chromium
page = browser_support.page
