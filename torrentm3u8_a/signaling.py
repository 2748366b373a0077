"""WebRTC signaling relay: A pairs a browser with the worker that holds a rendition.

A stream session is created by `stream.open {task_id, file_index}` for a playable file. It is
bound to that task, that file, the worker holding the task and, over `/ws`, to the connection
that opened it: offers and candidates for a session are accepted only from its owner, and are
relayed only to its worker (`rtc.offer`, `rtc.candidate`). B's trickled candidates come back to
the owner as `stream.candidate` notifications. Sessions expire when no offer arrives within the
set-up timeout, after their lifetime, when their owner disconnects and when the worker leaves.
Media never passes through A.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

import rpc

from . import errors

log = logging.getLogger("torrentm3u8.a.signaling")

SWEEP_INTERVAL = 5.0  # seconds between expiry sweeps
OFFER_TIMEOUT = 30.0  # seconds a worker may take to answer an offer

Notify = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass
class StreamSession:
    id: str
    task_id: str
    file_index: int
    worker_id: str
    owner: object | None
    notify: Notify | None
    created: float
    expires: float
    answered: bool = False
    candidates: int = field(default=0)


class StreamSessions:
    def __init__(
        self,
        db,
        registry,
        *,
        ice_servers: list[dict[str, Any]],
        ice_transport_policy: str = "all",
        ttl: float,
        setup_timeout: float,
    ) -> None:
        self.db = db
        self.registry = registry
        self.ice_servers = ice_servers
        self.ice_transport_policy = ice_transport_policy
        self.ttl = ttl
        self.setup_timeout = setup_timeout
        self._sessions: dict[str, StreamSession] = {}
        self.relayed = {"offer": 0, "answer": 0, "candidate_in": 0, "candidate_out": 0}

    def __len__(self) -> int:
        return len(self._sessions)

    async def open(
        self, task_id: str, file_index: int, *, owner=None, notify: Notify | None = None
    ) -> dict[str, Any]:
        task = await self.db.get_task(task_id)
        if task is None:
            raise errors.unknown_task(task_id)
        if not any(h["file_index"] == file_index for h in task["hls"]):
            raise errors.not_playable(task_id, file_index)
        worker_id = task["worker_id"]
        if not worker_id or worker_id not in self.registry.connected_ids():
            raise errors.no_worker(task_id)
        now = trio.current_time()
        session = StreamSession(
            id=secrets.token_urlsafe(16),
            task_id=task_id,
            file_index=file_index,
            worker_id=worker_id,
            owner=owner,
            notify=notify,
            created=now,
            expires=now + self.setup_timeout,
        )
        self._sessions[session.id] = session
        log.info("stream %s opened: task %s file %d", session.id, task_id, file_index)
        return {
            "session_id": session.id,
            "ice_servers": self.ice_servers,
            "ice_transport_policy": self.ice_transport_policy,
        }

    def _get(self, session_id: str, owner) -> StreamSession:
        session = self._sessions.get(session_id)
        # Another connection's session looks exactly like a missing one.
        if session is None or session.owner is not owner:
            raise errors.unknown_session(session_id)
        return session

    async def offer(self, session_id: str, sdp: str, *, owner=None) -> dict[str, Any]:
        session = self._get(session_id, owner)
        self.relayed["offer"] += 1
        try:
            with trio.fail_after(OFFER_TIMEOUT):
                answer = await self.registry.call(
                    session.worker_id,
                    "rtc.offer",
                    {
                        "session_id": session.id,
                        "task_id": session.task_id,
                        "file_index": session.file_index,
                        "sdp": sdp,
                        "ice_servers": self.ice_servers,
                        "ice_transport_policy": self.ice_transport_policy,
                    },
                )
        except rpc.RemoteError as exc:
            self._sessions.pop(session.id, None)
            raise rpc.ApplicationError(
                exc.code if -32099 <= exc.code <= -32000 else errors.WORKER_GONE, exc.message
            ) from None
        except trio.TooSlowError:
            self._sessions.pop(session.id, None)
            raise rpc.ApplicationError(
                errors.WORKER_GONE, "the worker did not answer the offer in time; try again"
            ) from None
        session.answered = True
        session.expires = session.created + self.ttl
        self.relayed["answer"] += 1
        return {"sdp": answer["sdp"]}

    async def seek(self, session_id: str, position: float, *, owner=None) -> dict[str, Any]:
        """Ask the session's worker for a rendition that plays from `position` (seconds): the
        one growing from 0 if it reaches there, else one B starts at that point. Returns
        `{playlist, start}`: a path under the session root and the media time of its time 0."""
        session = self._get(session_id, owner)
        params = {
            "task_id": session.task_id,
            "file_index": session.file_index,
            "position": position,
        }
        try:
            # B answers within its own seek timeout, shorter than the link's call timeout.
            answer = await self.registry.call(session.worker_id, "task.seek", params)
        except rpc.RemoteError as exc:
            if exc.code == rpc.InvalidParams.code:
                raise rpc.InvalidParams(exc.message) from None
            raise rpc.ApplicationError(
                exc.code if -32099 <= exc.code <= -32000 else errors.STREAM_FAILED, exc.message
            ) from None
        except rpc.CallTimeout:
            raise rpc.ApplicationError(
                errors.STREAM_FAILED,
                f"the worker did not reach {position:.0f} s in time; try again or seek to a "
                "part that has downloaded",
            ) from None
        try:
            playlist, start = answer["playlist"], float(answer["start"])
            if not isinstance(playlist, str) or not playlist or not math.isfinite(start):
                raise ValueError(playlist)
        except (TypeError, KeyError, ValueError):
            log.warning("worker %s answered task.seek with %.200r", session.worker_id, answer)
            raise rpc.ApplicationError(
                errors.STREAM_FAILED, "the worker gave no usable rendition for that position"
            ) from None
        return {"playlist": playlist, "start": start}

    async def candidate(self, session_id: str, candidate: dict[str, Any] | None, *, owner=None):
        session = self._get(session_id, owner)
        self.relayed["candidate_in"] += 1
        await self.registry.call(
            session.worker_id,
            "rtc.candidate",
            {"session_id": session.id, "candidate": candidate},
        )

    async def close(self, session_id: str, *, owner=None) -> None:
        session = self._get(session_id, owner)
        await self._drop(session, "closed by the viewer")

    async def from_worker(self, worker_id: str, session_id: str, candidate) -> None:
        """B trickled a candidate: pass it to the session's owner."""
        session = self._sessions.get(session_id)
        if session is None or session.worker_id != worker_id:
            raise errors.unknown_session(session_id)
        if session.notify is not None:
            self.relayed["candidate_out"] += 1
            await session.notify(
                "stream.candidate", {"session_id": session_id, "candidate": candidate}
            )

    async def owner_gone(self, owner) -> None:
        for session in [s for s in self._sessions.values() if s.owner is owner]:
            await self._drop(session, "viewer disconnected")

    def worker_gone(self, worker_id: str) -> None:
        for session in [s for s in self._sessions.values() if s.worker_id == worker_id]:
            self._sessions.pop(session.id, None)
            log.info("stream %s ended: worker %s left", session.id, worker_id)

    async def _drop(self, session: StreamSession, why: str) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        log.info("stream %s ended: %s", session.id, why)
        if session.answered and session.worker_id in self.registry.connected_ids():
            with trio.move_on_after(5):
                try:
                    await self.registry.call(
                        session.worker_id, "rtc.close", {"session_id": session.id}
                    )
                except rpc.Error as exc:
                    log.debug("rtc.close for %s: %s", session.id, exc)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Expire sessions: never answered within the set-up timeout, or past their lifetime."""
        task_status.started()
        while True:
            await trio.sleep(SWEEP_INTERVAL)
            now = trio.current_time()
            for session in [s for s in self._sessions.values() if s.expires <= now]:
                await self._drop(session, "expired")
