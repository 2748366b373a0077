"""The task service: A's rules for tasks, between the API, the database and the workers.

- `add` validates a magnet, stores a `waiting` task (or returns the one with the same info hash)
  and wakes the dispatcher.
- The dispatcher sends each waiting task to the least loaded connected worker (`task.start`).
  Tasks submitted while no worker is connected wait until one says hello.
- Worker reports (`task.metadata`, `task.progress`, ...) are stored once each (B resends what A
  has not acknowledged after a reconnect; a `report_id` makes the second delivery a no-op) and
  published to `/ws` subscribers as `task.updated`.
- On a worker's hello, its snapshot is reconciled with the database: tasks A forgot are removed
  from B, tasks B lost are queued again.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

import rpc

from . import errors
from .events import EventHub
from .magnets import InvalidMagnet, parse_magnet
from .states import InvalidTransition
from .storage import UnknownTask

log = logging.getLogger("torrentm3u8.a.tasks")

ACTIVE_STATES = ("downloading", "completed", "transcoding")
WORKER_CALL_TIMEOUT = 20.0  # seconds for an order to a worker (task.start, task.remove)


class TaskService:
    def __init__(self, db, registry, hub: EventHub, *, hello_result: dict[str, Any]) -> None:
        self.db = db
        self.registry = registry
        self.hub = hub
        self._hello_result = hello_result
        self._kick = trio.Event()
        self._removals: list[tuple[str, str]] = []  # (worker_id, task_id) B must forget

    # ---- public API ------------------------------------------------------------------

    async def add(self, magnet: str) -> dict[str, Any]:
        try:
            parsed = parse_magnet(magnet)
        except InvalidMagnet as exc:
            raise rpc.InvalidParams(str(exc)) from None
        task, created = await self.db.add_task(parsed)
        if created:
            log.info("task %s added: %s", task["id"], task["name"])
            self._publish(task)
            self.kick()
        return task

    async def get(self, task_id: str) -> dict[str, Any]:
        task = await self.db.get_task(task_id)
        if task is None:
            raise errors.unknown_task(task_id)
        return task

    async def files(self, task_id: str, offset: int, limit: int) -> dict[str, Any]:
        try:
            files, total = await self.db.list_files(task_id, offset, limit)
        except UnknownTask:
            raise errors.unknown_task(task_id) from None
        return {"files": files, "total": total}

    async def list(self) -> list[dict[str, Any]]:
        return await self.db.list_tasks()

    async def remove(self, task_id: str) -> bool:
        task = await self.get(task_id)
        worker_id = task["worker_id"]
        await self.db.remove_task(task_id)
        log.info("task %s removed", task_id)
        self.hub.publish("task.removed", {"id": task_id})
        if worker_id:
            # Best effort now; a worker that is away forgets the task at its next hello.
            await self._order(worker_id, "task.remove", {"task_id": task_id, "delete_files": True})
        return True

    async def retry(self, task_id: str) -> dict[str, Any]:
        task = await self.get(task_id)
        if task["state"] != "failed":
            raise errors.invalid_state(
                f"task {task_id} is {task['state']}; only a failed task can be retried"
            )
        task = await self.db.set_state(task_id, "waiting", error=None, worker_id=None)
        log.info("task %s queued again (retry)", task_id)
        self._publish(task)
        self.kick()
        return task

    # ---- dispatch --------------------------------------------------------------------

    def kick(self) -> None:
        self._kick.set()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Dispatch loop: wakes on new tasks and on worker hellos."""
        task_status.started()
        while True:
            await self._kick.wait()
            self._kick = trio.Event()
            await self._send_removals()
            try:
                await self._dispatch_waiting()
            except UnknownTask as exc:
                # Removed while being dispatched: the next round sees the database as it is.
                log.info("dispatch: %s", exc)
                self.kick()

    def _pick_worker(self, load: dict[str, int]) -> str | None:
        connected = self.registry.connected_ids()
        if not connected:
            return None
        return min(connected, key=lambda w: (load.get(w, 0), w))

    async def _dispatch_waiting(self) -> None:
        waiting = await self.db.tasks_in_states(["waiting"])
        if not waiting:
            return
        load = dict(await self.db.counts_by_worker())
        for task in sorted(waiting, key=lambda t: t["added_at"]):
            worker_id = self._pick_worker(load)
            if worker_id is None:
                log.info("%d task(s) waiting for a worker to connect", len(waiting))
                return
            # Assign first: B may report before the call returns.
            task = await self.db.set_state(
                task["id"], "downloading", phase="metadata", worker_id=worker_id
            )
            ok = await self._order(
                worker_id, "task.start", {"task_id": task["id"], "magnet": task["magnet"]}
            )
            if not ok:
                task = await self.db.set_state(task["id"], "waiting", worker_id=None)
                continue
            load[worker_id] = load.get(worker_id, 0) + 1
            log.info("task %s sent to worker %s", task["id"], worker_id)
            self._publish(task)

    async def _order(self, worker_id: str, method: str, params: dict[str, Any]) -> bool:
        try:
            with trio.fail_after(WORKER_CALL_TIMEOUT):
                await self.registry.call(worker_id, method, params)
        except (rpc.Error, trio.TooSlowError) as exc:
            log.warning("worker %s: %s failed: %s", worker_id, method, exc)
            return False
        return True

    async def _send_removals(self) -> None:
        removals, self._removals = self._removals, []
        for worker_id, task_id in removals:
            await self._order(worker_id, "task.remove", {"task_id": task_id, "delete_files": True})

    # ---- the worker side -------------------------------------------------------------

    async def on_hello(self, worker_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Reconcile a worker's snapshot with the database; returns the hello result."""
        held = {t["task_id"]: t for t in params.get("tasks") or [] if isinstance(t, dict)}
        for task_id in held:
            task = await self.db.get_task(str(task_id))
            if task is None:
                log.info("worker %s holds unknown task %s: asking it to remove", worker_id, task_id)
                self._removals.append((worker_id, str(task_id)))
            elif task["worker_id"] != worker_id and task["state"] != "failed":
                if task["state"] == "waiting":
                    task = await self.db.set_state(
                        task["id"], "downloading", phase="metadata", worker_id=worker_id
                    )
                else:
                    await self.db.assign_worker(task["id"], worker_id)
                log.info("task %s is on worker %s (from its hello)", task["id"], worker_id)
                self._publish(await self.get(task["id"]))
        for task in await self.db.tasks_for_worker(worker_id):
            if task["id"] not in held and task["state"] in ACTIVE_STATES:
                log.info("worker %s lost task %s: queued again", worker_id, task["id"])
                task = await self.db.set_state(task["id"], "waiting", worker_id=None)
                self._publish(task)
        self.kick()
        return dict(self._hello_result)

    def on_worker_change(self, worker: dict[str, Any]) -> None:
        self.hub.publish("worker.updated", {"worker": worker})
        if worker.get("connected"):
            self.kick()

    async def _owned(self, worker_id: str, task_id: str) -> dict[str, Any]:
        task = await self.get(task_id)
        if task["worker_id"] not in (worker_id, None):
            raise errors.no_worker(task_id)
        return task

    async def report_metadata(self, worker_id, task_id, *, report_id, **fields) -> None:
        await self._owned(worker_id, task_id)
        # set_metadata also moves a downloading task to phase "data", and returns the task.
        self._publish(await self.db.set_metadata(task_id, report_id=report_id, **fields))

    async def report_more_files(self, worker_id, task_id, *, report_id, files) -> None:
        await self._owned(worker_id, task_id)
        self._publish(await self.db.add_files(task_id, files, report_id=report_id))

    async def report_progress(self, worker_id, task_id, **fields) -> None:
        await self._owned(worker_id, task_id)
        await self.db.set_progress(task_id, **fields)
        self._publish(await self.get(task_id))

    async def report_state(self, worker_id, task_id, state, error, *, report_id) -> None:
        task = await self._owned(worker_id, task_id)
        if task["state"] == state and state != "failed":
            return
        try:
            task = await self.db.set_state(
                task_id,
                state,
                error=error,
                phase="data" if state == "downloading" else None,
                report_id=report_id,
            )
        except InvalidTransition as exc:
            raise errors.invalid_state(str(exc)) from None
        log.info(
            "task %s is %s%s", task_id, state, f": {error}" if state == "failed" and error else ""
        )
        self._publish(task)

    async def report_transcode(self, worker_id, task_id, file_index, percent) -> None:
        await self._owned(worker_id, task_id)
        await self.db.set_transcode_progress(task_id, file_index, percent)
        self._publish(await self.get(task_id))

    async def report_hls(self, worker_id, task_id, *, report_id, **fields) -> None:
        """Store a rendition. A `live` one (still growing, the download may still run) leaves
        the state alone and never replaces a final one; a final one makes the task playable,
        which only a downloaded task may become (B reports `completed` first)."""
        task = await self._owned(worker_id, task_id)
        file_index = fields.get("file_index")
        if fields.get("live"):
            if any(h["file_index"] == file_index and not h["live"] for h in task["hls"]):
                log.info("task %s: late live report for file %s ignored", task_id, file_index)
                return
        elif task["state"] not in ("completed", "transcoding", "playable"):
            raise errors.invalid_state(
                f"task {task_id} is {task['state']}: a final rendition needs the download "
                "complete first"
            )
        await self.db.set_hls(task_id, report_id=report_id, **fields)
        # Playable means complete HLS: not while another file's rendition is still growing
        # (its final report comes next and makes the task playable then).
        still_live = any(h["live"] for h in task["hls"] if h["file_index"] != file_index)
        if not fields.get("live") and task["state"] != "playable" and not still_live:
            try:
                await self.db.set_state(task_id, "playable")
            except InvalidTransition as exc:
                raise errors.invalid_state(str(exc)) from None
        log.info("task %s: HLS for file %s ready", task_id, fields.get("file_index"))
        self._publish(await self.get(task_id))

    def _publish(self, task: dict[str, Any]) -> None:
        self.hub.publish("task.updated", {"task": task})
