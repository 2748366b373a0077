"""The task state machine: six states, the moves between them, and the download phase.

The main path is waiting -> downloading -> completed -> transcoding -> playable. Besides it:
`downloading -> waiting` requeues a task whose worker was lost, `transcoding -> completed`
requeues a transcode, `completed -> playable` skips transcoding when the torrent already holds
HLS, `playable -> playable` adds another video's rendition, waiting/downloading/completed/
transcoding may fail, and `failed -> waiting` is a retry. Setting a task to the state it is in
is always allowed (a no-op for the state itself). `TRANSITIONS` is the whole list.
"""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    WAITING = "waiting"
    DOWNLOADING = "downloading"
    COMPLETED = "completed"
    TRANSCODING = "transcoding"
    PLAYABLE = "playable"
    FAILED = "failed"


class Phase(enum.StrEnum):
    """What a `downloading` task is fetching: the torrent's metadata, then the data."""

    METADATA = "metadata"
    DATA = "data"


STATES = tuple(State)
PHASES = tuple(Phase)

# States in which a task takes one of its worker's slots.
ACTIVE_STATES = (State.DOWNLOADING, State.COMPLETED, State.TRANSCODING)

TRANSITIONS: frozenset[tuple[State, State]] = frozenset(
    {
        (State.WAITING, State.DOWNLOADING),
        (State.WAITING, State.FAILED),
        (State.DOWNLOADING, State.COMPLETED),
        (State.DOWNLOADING, State.FAILED),
        (State.DOWNLOADING, State.WAITING),
        (State.COMPLETED, State.TRANSCODING),
        (State.COMPLETED, State.PLAYABLE),
        (State.COMPLETED, State.FAILED),
        (State.TRANSCODING, State.PLAYABLE),
        (State.TRANSCODING, State.FAILED),
        (State.TRANSCODING, State.COMPLETED),
        (State.FAILED, State.WAITING),
        (State.PLAYABLE, State.PLAYABLE),
    }
)


class InvalidTransition(ValueError):
    """A task cannot move between these two states (or a state or phase name is unknown)."""


def to_state(name: str) -> State:
    """`State(name)`, with an error message that lists the valid names."""
    try:
        return State(name)
    except ValueError:
        raise InvalidTransition(
            f"unknown task state {name!r}: expected one of {', '.join(STATES)}"
        ) from None


def is_allowed(old: str, new: str) -> bool:
    old_state, new_state = to_state(old), to_state(new)
    return old_state == new_state or (old_state, new_state) in TRANSITIONS


def check_transition(old: str, new: str) -> None:
    """Raise `InvalidTransition` unless a task in state `old` may move to state `new`."""
    if not is_allowed(old, new):
        raise InvalidTransition(f"cannot go from {old} to {new}")


def check_phase(state: str, phase: str | None) -> Phase | None:
    """Return `phase` as a `Phase`; only `downloading` has one."""
    if phase is None:
        return None
    if to_state(state) != State.DOWNLOADING:
        raise InvalidTransition(f"only a downloading task has a phase, not a {state} one")
    try:
        return Phase(phase)
    except ValueError:
        raise InvalidTransition(
            f"unknown download phase {phase!r}: expected one of {', '.join(PHASES)}"
        ) from None
