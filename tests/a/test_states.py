import itertools

import pytest

from torrentm3u8_a import states
from torrentm3u8_a.states import InvalidTransition, check_phase, check_transition

NAMES = ("waiting", "downloading", "completed", "transcoding", "playable", "failed")

# Written out again on purpose: the module's table must match the brief, not itself.
ALLOWED = {
    ("waiting", "downloading"),
    ("waiting", "failed"),
    ("downloading", "completed"),
    ("downloading", "failed"),
    ("downloading", "waiting"),
    ("completed", "transcoding"),
    ("completed", "playable"),
    ("completed", "failed"),
    ("transcoding", "playable"),
    ("transcoding", "failed"),
    ("transcoding", "completed"),
    ("failed", "waiting"),
    ("playable", "playable"),
}


def test_the_six_states():
    assert states.STATES == NAMES
    assert [str(state) for state in states.State] == list(NAMES)
    assert states.PHASES == ("metadata", "data")


@pytest.mark.parametrize(("old", "new"), list(itertools.product(NAMES, NAMES)))
def test_every_pair(old, new):
    if (old, new) in ALLOWED or old == new:
        check_transition(old, new)
        assert states.is_allowed(old, new)
    else:
        with pytest.raises(InvalidTransition, match=f"^cannot go from {old} to {new}$"):
            check_transition(old, new)
        assert not states.is_allowed(old, new)


def test_message_names_both_states():
    with pytest.raises(InvalidTransition) as info:
        check_transition("playable", "downloading")
    assert str(info.value) == "cannot go from playable to downloading"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("old", "new"), [("paused", "waiting"), ("waiting", "Downloading")])
def test_unknown_state_lists_the_valid_ones(old, new):
    with pytest.raises(InvalidTransition, match=r"unknown task state .*waiting, downloading"):
        check_transition(old, new)


@pytest.mark.parametrize(
    ("state", "phase", "expected"),
    [
        ("downloading", "metadata", "metadata"),
        ("downloading", "data", "data"),
        ("downloading", None, None),
        ("playable", None, None),
    ],
)
def test_phase_accepted(state, phase, expected):
    assert check_phase(state, phase) == expected


@pytest.mark.parametrize(
    ("state", "phase", "message"),
    [
        ("downloading", "seeding", "unknown download phase 'seeding'"),
        ("completed", "data", "only a downloading task has a phase"),
        ("waiting", "metadata", "only a downloading task has a phase"),
    ],
)
def test_phase_refused(state, phase, message):
    with pytest.raises(InvalidTransition, match=message):
        check_phase(state, phase)
