"""The sans-io core, driven synchronously: every example of the JSON-RPC 2.0 specification."""

import json
from typing import Any

import pytest

import rpc

SYNC_METHODS = {
    "subtract": lambda p: p[0] - p[1] if isinstance(p, list) else p["minuend"] - p["subtrahend"],
    "sum": sum,
    "get_data": lambda p: ["hello", 5],
    "update": lambda p: None,
    "notify_hello": lambda p: None,
    "notify_sum": lambda p: None,
}


def serve(conn: rpc.Connection, data: str | bytes) -> str | None:
    """Answer one message with SYNC_METHODS, the way a server drives the core."""
    received = conn.receive(data)
    texts = [received.reply] if received.reply is not None else []
    for event in received.events:
        assert isinstance(event, rpc.Request | rpc.Notification)
        if isinstance(event, rpc.Request):
            fn = SYNC_METHODS.get(event.method)
            if fn is None:
                text = conn.reply_error(event, rpc.MethodNotFound())
            else:
                text = conn.reply(event, fn(event.params))
            if text is not None:
                texts.append(text)
    assert len(texts) <= 1, "one message in, at most one message out"
    return texts[0] if texts else None


def codes_only(reply: Any) -> Any:
    """A reply with error messages dropped: the spec pins codes, the wording is ours."""
    if isinstance(reply, list):
        return [codes_only(r) for r in reply]
    if isinstance(reply, dict) and "error" in reply:
        return {**reply, "error": {"code": reply["error"]["code"]}}
    return reply


def err(code: int, id: Any) -> dict:
    return {"jsonrpc": "2.0", "error": {"code": code}, "id": id}


def ok(result: Any, id: Any) -> dict:
    return {"jsonrpc": "2.0", "result": result, "id": id}


# (name, request, expected reply with codes only; None = no reply), from section 7 of the spec.
SPEC_EXAMPLES = [
    (
        "positional params",
        '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        ok(19, 1),
    ),
    (
        "positional params reversed",
        '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        ok(-19, 2),
    ),
    (
        "named params",
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42},'
        ' "id": 3}',
        ok(19, 3),
    ),
    (
        "named params in another order",
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23},'
        ' "id": 4}',
        ok(19, 4),
    ),
    (
        "notification",
        '{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}',
        None,
    ),
    ("notification without params", '{"jsonrpc": "2.0", "method": "foobar"}', None),
    (
        "non-existent method",
        '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        err(-32601, "1"),
    ),
    (
        "invalid JSON",
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        err(-32700, None),
    ),
    (
        "invalid Request object",
        '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        err(-32600, None),
    ),
    (
        "batch, invalid JSON",
        '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        '{"jsonrpc": "2.0", "method"]',
        err(-32700, None),
    ),
    ("empty array", "[]", err(-32600, None)),
    ("invalid batch, not empty", "[1]", [err(-32600, None)]),
    ("invalid batch", "[1,2,3]", [err(-32600, None)] * 3),
    (
        "mixed batch",
        """[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
        ]""",
        [ok(7, "1"), ok(19, "2"), err(-32600, None), err(-32601, "5"), ok(["hello", 5], "9")],
    ),
    (
        "batch of notifications",
        '[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},'
        '{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]',
        None,
    ),
]


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [pytest.param(req, exp, id=name) for name, req, exp in SPEC_EXAMPLES],
)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_spec_examples_on_the_core(request_text: str, expected: Any, as_bytes: bool) -> None:
    conn = rpc.Connection(accept_responses=False)
    data = request_text.encode() if as_bytes else request_text
    reply = serve(conn, data)
    assert codes_only(json.loads(reply)) == expected if reply is not None else expected is None


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [pytest.param(req, exp, id=name) for name, req, exp in SPEC_EXAMPLES],
)
async def test_spec_examples_through_dispatch(
    spec_methods: rpc.Methods, request_text: str, expected: Any
) -> None:
    reply = await rpc.dispatch(spec_methods, request_text)
    assert codes_only(json.loads(reply)) == expected if reply is not None else expected is None


def test_the_five_standard_codes_are_pinned() -> None:
    assert rpc.ParseError.code == -32700
    assert rpc.InvalidRequest.code == -32600
    assert rpc.MethodNotFound.code == -32601
    assert rpc.InvalidParams.code == -32602
    assert rpc.InternalError.code == -32603
    for cls in (rpc.ParseError, rpc.InvalidRequest, rpc.MethodNotFound, rpc.InvalidParams):
        assert issubclass(cls, rpc.RPCError)
        assert issubclass(cls, rpc.Error)
    assert rpc.InternalError().to_dict() == {"code": -32603, "message": "internal error"}


def test_application_error_codes_are_bounded() -> None:
    error = rpc.ApplicationError(-32001, "unknown task: abc", {"id": "abc"})
    assert error.to_dict() == {
        "code": -32001,
        "message": "unknown task: abc",
        "data": {"id": "abc"},
    }
    with pytest.raises(AssertionError):
        rpc.ApplicationError(-32603, "not an application code")
    with pytest.raises(AssertionError):
        rpc.ApplicationError(-31999, "outside the range")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('{"method": "update", "id": 1}', err(-32600, 1)),  # no jsonrpc member: id echoed
        ('{"jsonrpc": "1.0", "method": "update", "id": "a"}', err(-32600, "a")),
        ('{"jsonrpc": "2.0", "method": "update", "id": true}', err(-32600, None)),
        ('{"jsonrpc": "2.0", "method": "update", "id": [1]}', err(-32600, None)),
        ('{"jsonrpc": "2.0", "method": "update", "params": 3, "id": 7}', err(-32600, 7)),
        ('{"jsonrpc": "2.0", "method": "get_data", "id": null}', ok(["hello", 5], None)),
        ('{"jsonrpc": "2.0", "result": 1, "id": 1}', err(-32600, 1)),  # a server gets no results
        ('"just a string"', err(-32600, None)),
        ("[[]]", [err(-32600, None)]),
        ('{"jsonrpc": "2.0", "method": "sum", "params": [NaN], "id": 1}', err(-32700, None)),
        ('{"jsonrpc": "2.0", "method": "sum", "params": [1e999], "id": 1}', err(-32700, None)),
        ("[" * 100_000, err(-32700, None)),
        ('{"id": ' + "9" * 5000 + "}", err(-32700, None)),
        ("", err(-32700, None)),
    ],
)
def test_malformed_messages_get_spec_errors(message: str, expected: Any) -> None:
    reply = serve(rpc.Connection(accept_responses=False), message)
    assert codes_only(json.loads(reply)) == expected


def test_invalid_utf8_is_a_parse_error() -> None:
    reply = serve(rpc.Connection(), b'{"jsonrpc": "2.0", "method": "\xff", "id": 1}')
    assert codes_only(json.loads(reply)) == err(-32700, None)


def test_calls_are_matched_to_their_responses() -> None:
    conn = rpc.Connection()
    first, text = conn.call("task.start", {"task_id": "t1", "magnet": "magnet:?xt=urn:btih:x"})
    assert json.loads(text) == {
        "jsonrpc": "2.0",
        "method": "task.start",
        "params": {"task_id": "t1", "magnet": "magnet:?xt=urn:btih:x"},
        "id": first,
    }
    second, text = conn.call("worker.ping")
    assert "params" not in json.loads(text)
    assert first != second
    assert conn.pending == {first, second}

    reply = f'[{{"jsonrpc": "2.0", "result": {{"time": 5}}, "id": {second}}},'
    reply += f'{{"jsonrpc": "2.0", "error": {{"code": -32001, "message": "no"}}, "id": {first}}}]'
    received = conn.receive(reply)
    assert received.reply is None
    assert received.events == [
        rpc.Response(second, {"time": 5}),
        rpc.ErrorResponse(first, -32001, "no"),
    ]
    assert conn.pending == set()
    # The same response again matches nothing: dropped, not answered.
    assert conn.receive(f'{{"jsonrpc": "2.0", "result": 1, "id": {second}}}') == rpc.Received([])


def test_a_forgotten_call_ignores_its_late_response() -> None:
    conn = rpc.Connection()
    id, _ = conn.call("task.start")
    conn.forget(id)
    assert conn.receive(json.dumps({"jsonrpc": "2.0", "result": 1, "id": id})).events == []


def test_an_error_with_id_null_is_reported() -> None:
    conn = rpc.Connection()
    received = conn.receive(
        '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "x"}, "id": null}'
    )
    assert received.events == [rpc.ErrorResponse(None, -32700, "x")]


@pytest.mark.parametrize(
    "response",
    [
        '{"jsonrpc": "2.0", "result": 1, "error": {"code": 1, "message": "x"}, "id": 1}',
        '{"jsonrpc": "2.0", "error": {"code": "1", "message": "x"}, "id": 1}',
        '{"jsonrpc": "2.0", "error": "bad", "id": 1}',
        '{"result": 1, "id": 1}',
    ],
)
def test_malformed_responses_are_dropped_without_reply(response: str) -> None:
    conn = rpc.Connection()
    conn.call("worker.ping")
    assert conn.receive(response) == rpc.Received([])
    assert conn.pending == {1}


def test_results_that_are_not_json_become_internal_errors() -> None:
    conn = rpc.Connection()
    (request,) = conn.receive('{"jsonrpc": "2.0", "method": "x", "id": 1}').events
    assert isinstance(request, rpc.Request)
    reply = json.loads(conn.reply(request, {1, 2}))
    assert reply["error"] == {"code": -32603, "message": "internal error"}


def test_size_limit_on_outgoing_messages() -> None:
    conn = rpc.Connection(max_message_size=100)
    with pytest.raises(rpc.MessageTooLarge, match=r"'task\.metadata' message is 1\d+ bytes"):
        conn.call("task.metadata", {"name": "x" * 1000})
    assert conn.pending == set()
    conn = rpc.Connection(max_message_size=200)
    with pytest.raises(rpc.MessageTooLarge):
        conn.notify("task.progress", ["é" * 80])  # 136 characters, but 216 bytes in UTF-8
    conn.notify("task.progress", ["é" * 60])


def test_size_limit_on_results() -> None:
    conn = rpc.Connection(max_message_size=100)
    (request,) = conn.receive('{"jsonrpc": "2.0", "method": "x", "id": 1}').events
    assert isinstance(request, rpc.Request)
    reply = json.loads(conn.reply(request, "x" * 200))
    assert reply["id"] == 1
    assert reply["error"]["code"] == -32603
    assert "too large" in reply["error"]["message"]


def test_size_limit_on_incoming_messages() -> None:
    conn = rpc.Connection(max_message_size=100)
    big = "x" * 200
    reply = conn.receive(json.dumps({"jsonrpc": "2.0", "method": "a", "params": [big], "id": 9}))
    assert reply.events == []
    assert json.loads(reply.reply)["id"] == 9
    assert json.loads(reply.reply)["error"]["code"] == -32600
    assert "message too large: 2" in json.loads(reply.reply)["error"]["message"]
    # An oversized notification has nobody to answer: dropped.
    assert conn.receive(json.dumps({"jsonrpc": "2.0", "method": "a", "params": [big]})) == (
        rpc.Received([])
    )
    # An oversized response to one of our calls fails that call instead of leaving it hanging.
    id, _ = conn.call("x")
    received = conn.receive(json.dumps({"jsonrpc": "2.0", "result": big, "id": id}))
    (event,) = received.events
    assert isinstance(event, rpc.ErrorResponse)
    assert (event.id, event.code) == (id, -32600)
    assert conn.pending == set()


def test_batch_replies_wait_for_every_request_and_keep_order() -> None:
    conn = rpc.Connection()
    received = conn.receive(
        '[{"jsonrpc": "2.0", "method": "a", "id": 1}, {"jsonrpc": "2.0", "method": "b", "id": 2},'
        ' {"jsonrpc": "2.0", "method": "c"}, 5]'
    )
    assert received.reply is None
    first, second, note = received.events
    assert isinstance(first, rpc.Request) and isinstance(second, rpc.Request)
    assert note == rpc.Notification("c", None)
    assert conn.reply_error(second, rpc.InvalidParams("param 'x' must be a string")) is None
    reply = json.loads(conn.reply(first, "A"))
    assert codes_only(reply) == [ok("A", 1), err(-32602, 2), err(-32600, None)]
    assert reply[1]["error"]["message"] == "param 'x' must be a string"


def test_encoded_size_counts_what_the_message_limit_counts():
    # Compact separators, UTF-8 bytes (not \u escapes): what max_message_size measures.
    assert rpc.encoded_size({"path": "é/a b", "n": [1, 2]}) == len(
        '{"path":"é/a b","n":[1,2]}'.encode()
    )
    conn = rpc.Connection(
        max_message_size=rpc.encoded_size({"jsonrpc": "2.0", "method": "m", "params": ["é"]})
    )
    conn.notify("m", ["é"])  # exactly at the limit: allowed
    with pytest.raises(rpc.MessageTooLarge):
        conn.notify("m", ["éé"])
