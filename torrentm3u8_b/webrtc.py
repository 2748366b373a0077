"""WebRTC serving: aiortc in its own asyncio thread, seen from trio as plain trio functions.

The one module of the project that imports asyncio, aiortc or aioice. An asyncio event loop
runs in a daemon thread (`_LoopThread`); trio code awaits coroutines on it through
`_LoopThread.call`, which parks the trio task until the asyncio future completes (a trio-token
wake-up, the trio thread never blocks) and cancels the asyncio side when trio cancels.

    async with open_rtc_server(loopback_only=True) as rtc:
        answer_sdp = await rtc.answer(session_id, offer_sdp, root=hls_dir, ice_servers=[])
        await rtc.add_candidate(session_id, {"candidate": "...", "sdpMid": "0"})
        await rtc.close(session_id)

Each session is one RTCPeerConnection whose data channels speak the file protocol of
datachannel.py over the files under `root`. `rtc_client` is the offer side of the same
protocol in Python (tests, benchmarks); browsers use static/js/p2p.js.

Objects of the loop thread (`_sessions`, peers, channels) are only touched on that thread;
`_stats_lock` guards what trio reads (the session table and the statistics).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aioice.ice
import trio
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from .datachannel import FRAME_HEADER, MAX_CHUNK, FileServer, TransferStats, decode_chunk

T = TypeVar("T")
KiB = 1024
MiB = 1024 * KiB
LOOPBACK = "127.0.0.1"
SHUTDOWN_TIMEOUT = 5.0  # seconds to close the peers, then again to join the loop thread
DEFAULT_MAX_MESSAGE = 65536  # bytes: a peer's message limit when its SDP names none (RFC 8841)

log = logging.getLogger(__name__)


class RtcError(Exception):
    """Root of this module's errors; the message is meant for a person."""


class RtcBusy(RtcError):
    """The worker already serves max_sessions streams."""


class UnknownSession(RtcError):
    """No live session with that id (never opened, closed, or timed out)."""


# --- loopback-only ICE ------------------------------------------------------------------------

_original_host_addresses = aioice.ice.get_host_addresses
_loopback_holders = 0
_loopback_lock = threading.Lock()


def _loopback_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [LOOPBACK] if use_ipv4 else []


@contextlib.contextmanager
def _loopback_ice(enabled: bool) -> Iterator[None]:
    """The one place that restricts ICE host candidates to 127.0.0.1.

    aioice skips 127.0.0.1 and aiortc has no interface filter, but aioice looks its
    `get_host_addresses` up at call time. The replacement is process-wide while any holder
    is active (nested servers and test clients share it).
    """
    global _loopback_holders
    if not enabled:
        yield
        return
    with _loopback_lock:
        _loopback_holders += 1
        aioice.ice.get_host_addresses = _loopback_host_addresses
    try:
        yield
    finally:
        with _loopback_lock:
            _loopback_holders -= 1
            if _loopback_holders == 0:
                aioice.ice.get_host_addresses = _original_host_addresses


def _loopback_only_sdp(sdp: str) -> str:
    """Drop remote candidates that are not on 127.0.0.1 (no traffic, no mDNS lookups)."""
    lines = sdp.splitlines(keepends=True)
    return "".join(
        line
        for line in lines
        if not line.startswith("a=candidate:") or line.split()[4:5] == [LOOPBACK]
    )


def _max_payload(sdp: str, chunk_size: int) -> int:
    """File bytes per binary message so that id + payload fits the peer's message limit."""
    found = re.search(r"^a=max-message-size:(\d+)", sdp, re.MULTILINE)
    limit = int(found.group(1)) if found else DEFAULT_MAX_MESSAGE
    return chunk_size if limit == 0 else min(chunk_size, limit - FRAME_HEADER.size)


def _configuration(ice_servers: list[dict[str, Any]], policy: str) -> RTCConfiguration:
    try:
        servers = [
            RTCIceServer(
                urls=server["urls"],
                username=server.get("username"),
                credential=server.get("credential"),
            )
            for server in ice_servers
        ]
        transport_policy = RTCIceTransportPolicy(policy)
    except (KeyError, TypeError, AttributeError):
        raise RtcError("each ICE server must be a dict with 'urls' (and username/credential)")
    except ValueError:
        raise RtcError(f"ice_transport_policy must be 'all' or 'relay', not {policy!r}")
    # iceServers=[] rather than None: None makes aiortc add a public STUN server.
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=transport_policy)


# --- the asyncio thread -----------------------------------------------------------------------


class _LoopThread:
    """An asyncio event loop in a daemon thread, driven from trio."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            leftovers = asyncio.all_tasks(self.loop)
            for task in leftovers:
                task.cancel()
            if leftovers:
                self.loop.run_until_complete(asyncio.wait(leftovers, timeout=SHUTDOWN_TIMEOUT))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Await fn(*args) on the loop; a trio cancellation cancels the asyncio task."""
        if self._stopping:
            raise RtcError("the WebRTC service has shut down")
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: object) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        future = asyncio.run_coroutine_threadsafe(fn(*args), self.loop)
        future.add_done_callback(wake)
        try:
            await done.wait()
        finally:
            future.cancel()  # a no-op once done
        return future.result()

    def spawn(self, coro: Coroutine[Any, Any, None], owner: set[asyncio.Task[None]]) -> None:
        """Start a task on the loop (from the loop thread); `owner` keeps it referenced."""
        task = self.loop.create_task(coro)
        owner.add(task)
        task.add_done_callback(owner.discard)
        task.add_done_callback(_log_failure)

    async def stop(self) -> None:
        self._stopping = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        await trio.to_thread.run_sync(self._thread.join, SHUTDOWN_TIMEOUT)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("WebRTC task failed", exc_info=task.exception())


# --- B's side: serving sessions ---------------------------------------------------------------


class _Channel:
    def __init__(self, channel: RTCDataChannel, files: FileServer) -> None:
        self.channel = channel
        self.files = files
        self.wake = asyncio.Event()  # a request arrived or the channel closed
        self.drained = asyncio.Event()  # bufferedamountlow or the channel closed


class _Session:
    def __init__(self, session_id: str, pc: RTCPeerConnection, root: Path, payload: int) -> None:
        self.id = session_id
        self.pc = pc
        self.root = root
        self.payload = payload
        self.stats = TransferStats()
        self.channels: list[_Channel] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.described = asyncio.Event()  # the offer is set: candidates may be added
        self.closed = asyncio.Event()
        self.last_request = asyncio.get_running_loop().time()


class RtcServer:
    """Answers offers and serves HLS folders over data channels. Use `open_rtc_server`."""

    def __init__(
        self,
        thread: _LoopThread,
        *,
        loopback_only: bool,
        max_sessions: int,
        idle_timeout: float,
        chunk_size: int,
        high_water: int,
        low_water: int,
    ) -> None:
        if not 0 < chunk_size <= MAX_CHUNK:
            raise ValueError(f"chunk_size must be 1..{MAX_CHUNK} bytes")
        if not 0 <= low_water < high_water:
            raise ValueError("low_water must be below high_water")
        self._thread = thread
        self.loopback_only = loopback_only
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.chunk_size = chunk_size
        self.high_water = high_water
        self.low_water = low_water
        self._sessions: dict[str, _Session] = {}
        self._finished = TransferStats()  # what closed sessions served
        self._stats_lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def stats(self) -> dict[str, Any]:
        """{"total": {...}, "sessions": {session_id: {...}}} (TransferStats.snapshot dicts)."""
        with self._stats_lock:
            total = TransferStats()
            total.add(self._finished)
            sessions = {}
            for session_id, session in self._sessions.items():
                total.add(session.stats)
                sessions[session_id] = session.stats.snapshot()
            return {"total": total.snapshot(), "sessions": sessions}

    # trio side

    async def answer(
        self,
        session_id: str,
        offer_sdp: str,
        *,
        root: Path,
        ice_servers: list[dict[str, Any]],
        ice_transport_policy: str = "all",
        on_candidate: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> str:
        """The answer SDP (with B's candidates: aiortc gathers before answering).

        on_candidate is unused for now: B never trickles, its candidates are in the answer.
        """
        config = _configuration(ice_servers, ice_transport_policy)
        if not await trio.Path(root).is_dir():
            raise RtcError("this stream's HLS folder is missing on the worker")
        return await self._thread.call(self._answer, session_id, offer_sdp, Path(root), config)

    async def add_candidate(self, session_id: str, candidate: dict[str, Any] | None) -> None:
        """A browser's trickled RTCIceCandidate JSON; None or an empty candidate ends the list."""
        await self._thread.call(self._add_candidate, session_id, candidate)

    async def close(self, session_id: str) -> None:
        """Close a session's peer; unknown or already closed sessions are fine."""
        await self._thread.call(self._close_by_id, session_id)

    async def wait_closed(self, session_id: str) -> None:
        """Return once the session is closed (at once when it is unknown)."""
        await self._thread.call(self._wait_closed, session_id)

    # loop side

    async def _answer(
        self, session_id: str, offer_sdp: str, root: Path, config: RTCConfiguration
    ) -> str:
        if session_id in self._sessions:
            raise RtcError(f"stream session {session_id!r} already has a peer")
        if len(self._sessions) >= self.max_sessions:
            raise RtcBusy(f"this worker already serves {len(self._sessions)} streams; try later")
        if not re.search(r"^m=application ", offer_sdp, re.MULTILINE):
            raise RtcError("cannot answer this offer: it has no data channel (m=application)")
        if self.loopback_only:
            offer_sdp = _loopback_only_sdp(offer_sdp)
        pc = RTCPeerConnection(config)
        session = _Session(session_id, pc, root, _max_payload(offer_sdp, self.chunk_size))
        with self._stats_lock:
            self._sessions[session_id] = session
        pc.on("datachannel", lambda channel: self._serve_channel(session, channel))
        pc.on("connectionstatechange", lambda: self._on_connection_state(session))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            session.described.set()
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as error:
            await self._close_session(session)
            raise RtcError(f"cannot answer this offer: {error}") from None
        except BaseException:
            await asyncio.shield(self._close_session(session))
            raise
        self._thread.spawn(self._watch_idle(session), session.tasks)
        return pc.localDescription.sdp

    async def _add_candidate(self, session_id: str, candidate: dict[str, Any] | None) -> None:
        session = self._session(session_id)
        candidate = candidate or {}
        text = str(candidate.get("candidate") or "").removeprefix("candidate:")
        await session.described.wait()
        if not text:
            await session.pc.addIceCandidate(None)
            return
        try:
            ice = candidate_from_sdp(text)
        except (AssertionError, ValueError, IndexError):
            raise RtcError(f"not an ICE candidate: {text[:200]!r}")
        if self.loopback_only and ice.ip != LOOPBACK:
            return  # loopback-only: never send to (or mDNS-resolve) another address
        ice.sdpMid = candidate.get("sdpMid")
        ice.sdpMLineIndex = candidate.get("sdpMLineIndex")
        if ice.sdpMid is None and ice.sdpMLineIndex is None:
            ice.sdpMLineIndex = 0
        await session.pc.addIceCandidate(ice)

    async def _close_by_id(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            await self._close_session(session)

    async def _wait_closed(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            await session.closed.wait()

    async def _shutdown(self) -> None:
        await asyncio.gather(*(self._close_session(s) for s in list(self._sessions.values())))
        await asyncio.gather(*self._tasks)  # closes started by events: let them finish

    def _session(self, session_id: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise UnknownSession(f"no stream session {session_id!r} on this worker")
        return session

    def _serve_channel(self, session: _Session, channel: RTCDataChannel) -> None:
        files = FileServer(session.root, chunk_size=session.payload, stats=session.stats)
        served = _Channel(channel, files)
        session.channels.append(served)
        channel.bufferedAmountLowThreshold = self.low_water
        channel.on("message", lambda message: self._on_message(session, served, message))
        channel.on("bufferedamountlow", served.drained.set)
        channel.on("close", lambda: self._on_channel_close(session, served))
        self._thread.spawn(self._pump(session, served), session.tasks)

    def _on_message(self, session: _Session, served: _Channel, message: str | bytes) -> None:
        session.last_request = asyncio.get_running_loop().time()
        with self._stats_lock:
            replies = served.files.receive(message)
        for reply in replies:
            if served.channel.readyState == "open":
                served.channel.send(reply)
        served.wake.set()

    def _on_channel_close(self, session: _Session, served: _Channel) -> None:
        with self._stats_lock:
            served.files.close()
        served.wake.set()
        served.drained.set()
        if all(c.channel.readyState == "closed" for c in session.channels):
            self._thread.spawn(self._close_session(session), self._tasks)

    def _on_connection_state(self, session: _Session) -> None:
        if session.pc.connectionState in ("failed", "closed"):
            self._thread.spawn(self._close_session(session), self._tasks)

    async def _pump(self, session: _Session, served: _Channel) -> None:
        """Send the channel's chunks in turn while the send buffer stays below high_water."""
        channel = served.channel
        while channel.readyState == "open":
            with self._stats_lock:
                message = served.files.next_message()
            if message is None:
                served.wake.clear()
                await served.wake.wait()
                continue
            channel.send(message)
            session.stats.peak_buffered = max(session.stats.peak_buffered, channel.bufferedAmount)
            while channel.bufferedAmount > self.high_water and channel.readyState == "open":
                served.drained.clear()
                if channel.bufferedAmount <= self.low_water:
                    break  # drained before we cleared the event: no crossing will be reported
                await served.drained.wait()

    async def _watch_idle(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        while True:
            left = session.last_request + self.idle_timeout - loop.time()
            if left > 0:
                await asyncio.sleep(left)
            elif any(served.files.pending for served in session.channels):
                session.last_request = loop.time()  # a long transfer is not idleness
            else:
                await self._close_session(session)
                return

    async def _close_session(self, session: _Session) -> None:
        with self._stats_lock:
            if self._sessions.get(session.id) is not session:
                return
            del self._sessions[session.id]
            for served in session.channels:
                served.files.close()
            self._finished.add(session.stats)
        current = asyncio.current_task()
        for task in list(session.tasks):
            if task is not current:
                task.cancel()
        try:
            await session.pc.close()
        finally:
            session.closed.set()


@contextlib.asynccontextmanager
async def open_rtc_server(
    *,
    loopback_only: bool,
    max_sessions: int = 8,
    idle_timeout: float = 60.0,  # seconds without a request before a peer is closed
    chunk_size: int = MAX_CHUNK,  # bytes of file per binary message
    high_water: int = 1 * MiB,  # bytes buffered in the channel before sending pauses
    low_water: int = 256 * KiB,  # bytes buffered at which sending resumes
) -> AsyncIterator[RtcServer]:
    """Run aiortc on its own asyncio thread; on exit close every peer and join the thread."""
    with _loopback_ice(loopback_only):
        thread = _LoopThread("torrentm3u8-rtc")
        try:
            server = RtcServer(
                thread,
                loopback_only=loopback_only,
                max_sessions=max_sessions,
                idle_timeout=idle_timeout,
                chunk_size=chunk_size,
                high_water=high_water,
                low_water=low_water,
            )
        except ValueError:
            thread.loop.close()  # never started
            raise
        thread.start()
        try:
            yield server
        finally:
            await _shut_down(thread, server._shutdown)


async def _shut_down(thread: _LoopThread, close: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Bounded and shielded: close the peers, stop the loop, join its thread."""
    with trio.CancelScope(shield=True):
        with trio.move_on_after(SHUTDOWN_TIMEOUT):
            await thread.call(close)
        await thread.stop()


# --- the offer side in Python (tests, benchmarks) ---------------------------------------------


class _Reply:
    def __init__(self, cancel_after: int | None) -> None:
        self.cancel_after = cancel_after
        self.header: dict[str, Any] = {}
        self.body = bytearray()
        self.done: asyncio.Future[tuple[int, dict[str, Any], bytes]] = (
            asyncio.get_running_loop().create_future()
        )

    def finish(self, status: int, header: dict[str, Any]) -> None:
        if not self.done.done():
            self.done.set_result((status, header, bytes(self.body)))


class RtcClient:
    """What static/js/p2p.js does in a browser, in Python: one ordered channel, many requests."""

    def __init__(self, thread: _LoopThread) -> None:
        self._thread = thread
        self._replies: dict[int, _Reply] = {}
        self._next_id = 1
        self._opened: asyncio.Event | None = None
        self.pc: RTCPeerConnection | None = None
        self.channel: RTCDataChannel | None = None

    async def get(
        self, path: str, *, cancel_after: int | None = None
    ) -> tuple[int, dict[str, Any], bytes]:
        """(status, B's header or error message, body). With cancel_after, send a cancel once
        that many bytes arrived (B answers 499). A trio cancellation sends a cancel too."""
        return await self._thread.call(self._get, path, cancel_after)

    async def _offer(self, config: RTCConfiguration) -> str:
        self._opened = asyncio.Event()
        self.pc = RTCPeerConnection(config)
        self.channel = self.pc.createDataChannel("files", ordered=True)
        self.channel.on("open", self._opened.set)
        self.channel.on("message", self._on_message)
        self.channel.on("close", self._fail_all)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def _connect(self, answer_sdp: str) -> None:
        assert self.pc is not None and self._opened is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        await self._opened.wait()

    async def _get(self, path: str, cancel_after: int | None) -> tuple[int, dict[str, Any], bytes]:
        assert self.channel is not None
        if self.channel.readyState != "open":
            raise RtcError("the data channel is closed")
        request_id, self._next_id = self._next_id, self._next_id + 1
        reply = self._replies[request_id] = _Reply(cancel_after)
        try:
            self.channel.send(json.dumps({"op": "get", "id": request_id, "path": path}))
            return await reply.done
        except asyncio.CancelledError:
            self._send_cancel(request_id)
            raise
        finally:
            del self._replies[request_id]

    def _send_cancel(self, request_id: int) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps({"op": "cancel", "id": request_id}))

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            request_id, payload = decode_chunk(message)
            reply = self._replies.get(request_id)
            if reply is None or reply.done.done():
                return  # a late chunk of a cancelled request
            reply.body += payload
            if reply.cancel_after is not None and len(reply.body) >= reply.cancel_after:
                reply.cancel_after = None
                self._send_cancel(request_id)
            return
        answer = json.loads(message)
        reply = self._replies.get(answer.get("id"))
        if reply is None:
            return
        if answer.get("op") == "end":
            reply.finish(200, reply.header)
        elif answer.get("status") == 200:
            reply.header = answer
        else:
            reply.finish(int(answer["status"]), answer)

    def _fail_all(self) -> None:
        for reply in self._replies.values():
            if not reply.done.done():
                reply.done.set_exception(RtcError("the data channel closed"))

    async def _close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        self._fail_all()


@contextlib.asynccontextmanager
async def rtc_client(
    signaling: Callable[[str], Awaitable[str]],
    *,
    loopback_only: bool = True,
    ice_servers: list[dict[str, Any]] | None = None,
    ice_transport_policy: str = "all",
) -> AsyncIterator[RtcClient]:
    """Connect to a server: `signaling(offer_sdp) -> answer_sdp` is a trio function (e.g.
    `partial(rtc.answer, session_id, root=..., ice_servers=[])`). The offer carries the
    client's candidates. Yields once the data channel is open; the caller sets the deadline."""
    config = _configuration(ice_servers or [], ice_transport_policy)
    with _loopback_ice(loopback_only):
        thread = _LoopThread("torrentm3u8-rtc-client")
        client = RtcClient(thread)
        thread.start()
        try:
            offer = await thread.call(client._offer, config)
            answer = await signaling(offer)
            await thread.call(client._connect, answer)
            yield client
        finally:
            await _shut_down(thread, client._close)
