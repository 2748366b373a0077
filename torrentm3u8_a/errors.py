"""The application errors A returns over JSON-RPC (codes in -32000..-32099).

    rpc.RPCError
     └── rpc.ApplicationError
          ├── -32001 unknown task              no task with that id
          ├── -32002 no worker                 the task is not held by a connected worker
          ├── -32003 not playable              no HLS rendition for that file (yet)
          ├── -32004 unauthorized              API or worker token missing or wrong
          ├── -32005 unknown stream session    expired, closed, or another client's
          ├── -32006 worker busy               the worker serves its maximum of streams
          ├── -32007 invalid state             e.g. retry of a task that has not failed
          ├── -32010 worker gone               the worker's link dropped during the call
          └── -32011 stream failed             the worker could not set up WebRTC

The messages are meant for people: they say what is wrong and, where it helps, what to do.
"""

from __future__ import annotations

import rpc

UNKNOWN_TASK = -32001
NO_WORKER = -32002
NOT_PLAYABLE = -32003
UNAUTHORIZED = -32004
UNKNOWN_SESSION = -32005
WORKER_BUSY = -32006
INVALID_STATE = -32007
WORKER_GONE = -32010
STREAM_FAILED = -32011


def unknown_task(task_id: object) -> rpc.ApplicationError:
    return rpc.ApplicationError(UNKNOWN_TASK, f"no task with id {task_id!r}")


def no_worker(task_id: str) -> rpc.ApplicationError:
    return rpc.ApplicationError(
        NO_WORKER, f"task {task_id} is not held by a connected worker; try again when it is back"
    )


def not_playable(task_id: str, file_index: int) -> rpc.ApplicationError:
    return rpc.ApplicationError(
        NOT_PLAYABLE, f"file {file_index} of task {task_id} has no playable HLS rendition yet"
    )


def unauthorized(what: str = "API token") -> rpc.ApplicationError:
    return rpc.ApplicationError(UNAUTHORIZED, f"{what} missing or wrong")


def unknown_session(session_id: object) -> rpc.ApplicationError:
    return rpc.ApplicationError(
        UNKNOWN_SESSION, f"no stream session {session_id!r} (expired or closed): open a new one"
    )


def invalid_state(message: str) -> rpc.ApplicationError:
    return rpc.ApplicationError(INVALID_STATE, message)
