"""Property tests: nothing received makes the core raise, and every reply is spec-shaped."""

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import rpc

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=10,
)
# Objects that look like JSON-RPC messages, good or bad, so the interesting paths get visited.
message_like = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2.0]) | json_values,
        "method": st.sampled_from(["sum", "x", ""]) | json_values,
        "params": st.lists(json_values, max_size=3) | json_values,
        "id": st.integers() | st.text(max_size=5) | st.none() | json_values,
        "result": json_values,
        "error": st.fixed_dictionaries({"code": st.integers(), "message": st.text()}) | json_values,
    },
)
messages = message_like | st.lists(message_like | json_values, max_size=6) | json_values


def answer_everything(conn: rpc.Connection, data: bytes | str, spec_shaped) -> str | None:
    """Receive, then answer each request (alternating results and errors)."""
    received = conn.receive(data)
    spec_shaped(received.reply)
    texts = [received.reply] if received.reply is not None else []
    for n, event in enumerate(received.events):
        if isinstance(event, rpc.Request):
            if n % 2:
                text = conn.reply_error(event, rpc.InvalidParams("no"))
            else:
                text = conn.reply(event, event.params)
            if text is not None:
                texts.append(text)
        else:
            assert isinstance(event, rpc.Notification | rpc.Response | rpc.ErrorResponse)
    assert len(texts) <= 1
    return texts[0] if texts else None


@settings(deadline=None)  # a loaded CI machine must not turn into a flaky failure
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(spec_shaped, data: bytes) -> None:
    for conn in (rpc.Connection(accept_responses=False), rpc.Connection(max_message_size=50)):
        spec_shaped(answer_everything(conn, data, spec_shaped))


@settings(deadline=None)  # a loaded CI machine must not turn into a flaky failure
@given(messages)
def test_arbitrary_json_never_raises_and_replies_are_spec_shaped(spec_shaped, message) -> None:
    text = json.dumps(message)
    for conn in (rpc.Connection(accept_responses=False), rpc.Connection(max_message_size=120)):
        conn.call("sum")  # so that some responses (id 1) match a pending call
        spec_shaped(answer_everything(conn, text, spec_shaped))
        spec_shaped(answer_everything(conn, text.encode(), spec_shaped))


@settings(deadline=None)  # a loaded CI machine must not turn into a flaky failure
@given(message_like)
def test_a_single_request_gets_its_own_id_back(message: dict) -> None:
    received = rpc.Connection(accept_responses=False).receive(json.dumps(message))
    requests = [e for e in received.events if isinstance(e, rpc.Request)]
    if requests:
        (request,) = requests
        assert request.id == message["id"]
    elif received.reply is not None:
        reply = json.loads(received.reply)
        assert reply["id"] in (None, message.get("id"))


@settings(deadline=None)  # a loaded CI machine must not turn into a flaky failure
@given(
    st.text(min_size=1, max_size=20),
    st.lists(json_values, max_size=4)
    | st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    json_values,
)
def test_calls_round_trip_between_two_cores(method: str, params: Any, result: Any) -> None:
    caller, callee = rpc.Connection(), rpc.Connection()
    id, text = caller.call(method, params)
    (request,) = callee.receive(text).events
    assert request == rpc.Request(id, method, params)
    (response,) = caller.receive(callee.reply(request, result)).events
    assert response == rpc.Response(id, result)
