"""The public API fuzzed over real HTTP (`POST /rpc`) and the real websocket `/ws`.

Whatever a client sends (random JSON, real method names with wrong params, huge numbers, deep
nesting, invalid UTF-8, oversized messages, batches mixing good and bad), A answers with a
JSON-RPC 2.0 result or error object (or nothing for notifications: HTTP 204), never an HTTP
500, never a dropped websocket, never an internal error, and still answers `task.list`.

A runs ONCE for the module, under hypercorn in its own thread with its own trio loop; the
hypothesis tests are plain sync tests that talk to it with a blocking httpx client, and over
websockets opened by trio_websocket on A's loop (`ServerThread.run`). `expected_reply` is the
oracle: from JSON-RPC 2.0 alone it says whether a reply is due and which ids it carries.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio_websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import run_a, ws_url

import rpc

MAX_BODY = 64 * 1024  # bytes: A's request limit here, small so oversized messages are cheap
CALL_DEADLINE = 15.0  # seconds for one exchange with A (a hang fails the example)
START_DEADLINE = 30.0  # seconds for A to start or stop in its thread
HTTP_EXAMPLES = 150  # hypothesis examples of POST /rpc bodies
WS_EXAMPLES = 100  # hypothesis examples of /ws connections (1 to 3 messages each)

PUBLIC = (
    "auth",
    "events.subscribe",
    "rpc.discover",
    "stream.candidate",
    "stream.close",
    "stream.offer",
    "stream.open",
    "task.add",
    "task.get",
    "task.list",
    "task.remove",
    "task.retry",
    "worker.list",
)
# Names a worker (or A) answers on the /worker link: a browser must not reach them.
WORKER_ONLY = (
    "rtc.candidate",
    "rtc.close",
    "rtc.offer",
    "task.cancel",
    "task.hls_ready",
    "task.metadata",
    "task.progress",
    "task.start",
    "task.state",
    "task.transcode_progress",
    "worker.hello",
    "worker.ping",
)
PARAM_NAMES = ("id", "magnet", "token", "task_id", "file_index", "session_id", "sdp", "candidate")
STANDARD_CODES = {-32700, -32600, -32601, -32602}  # -32603 "internal error" would be a bug
APPLICATION_CODES = set(range(-32099, -32000 + 1))
MAGNETS = (
    "magnet:?xt=urn:btih:" + "c0" * 20 + "&dn=fuzz",
    "magnet:?xt=urn:btih:" + "c1" * 20,
)
SENTINEL = json.dumps({"jsonrpc": "2.0", "id": "sentinel", "method": "task.list"})
NO_REPLY = object()  # expected_reply: a notification (or a response) gets no answer

# ---- A in a thread ---------------------------------------------------------------------------


class ServerThread:
    """Service A on 127.0.0.1:0 in a thread of its own; `run` calls into its trio loop."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.url = ""
        self.a: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="service A", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(START_DEADLINE):
            raise RuntimeError(f"A did not start within {START_DEADLINE} s")
        if self._error is not None:
            raise RuntimeError("A failed to start") from self._error

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(START_DEADLINE)
        assert not self._thread.is_alive(), "A did not stop"
        if self._error is not None:
            raise RuntimeError("A failed while serving") from self._error

    def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run `await fn(*args)` on A's loop, with a deadline; returns its result."""

        async def bounded() -> Any:
            with trio.fail_after(CALL_DEADLINE):
                return await fn(*args)

        return trio.from_thread.run(bounded, trio_token=self._token)

    def _serve(self) -> None:
        try:
            trio.run(self._main)
        except Exception as exc:  # reported by start() / stop() in the test's thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        async with run_a(self.data_dir, max_body=MAX_BODY) as (a, url):
            self.a, self.url = a, url
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()


class ErrorLog(logging.Handler):
    """Collects ERROR records from every thread: a crash in A logs one (Quart, hypercorn, rpc)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        taken, self.records = self.records, []
        return [f"{r.name}: {r.getMessage()}" for r in taken]


@pytest.fixture(scope="module")
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


@pytest.fixture(scope="module")
def server(tmp_path_factory, error_log) -> Iterator[ServerThread]:
    thread = ServerThread(tmp_path_factory.mktemp("fuzz") / "a")
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=CALL_DEADLINE) as client:
        yield client


@pytest.fixture(scope="module")
def task_ids(http) -> tuple[str, ...]:
    """Two real tasks, so fuzzed ids sometimes hit one."""
    return tuple(post(http, request("task.add", {"magnet": m}))[1]["result"]["id"] for m in MAGNETS)


@pytest.fixture(autouse=True)
def no_errors_logged(error_log) -> Iterator[None]:
    error_log.take()
    yield
    assert error_log.take() == []


# ---- talking to A ----------------------------------------------------------------------------


def request(method: str, params: Any = None, id: Any = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message, ensure_ascii=False).encode()


def post(http: httpx.Client, body: bytes) -> tuple[int, Any]:
    """POST /rpc; (status, parsed JSON body or None when empty)."""
    response = http.post("/rpc", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code != 500, response.text
    assert len(response.content) <= MAX_BODY, "a reply above the message size limit"
    return response.status_code, (json.loads(response.content) if response.content else None)


def frame(body: bytes, binary: bool = False) -> str | bytes:
    """A websocket frame for `body`: text when it is UTF-8 (and not asked binary), else binary."""
    if not binary:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return body


async def next_reply(ws: trio_websocket.WebSocketConnection) -> Any:
    """The next message that is not a notification (events a fuzzed subscribe turned on)."""
    while True:
        try:
            text = await ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise AssertionError(f"A dropped the websocket: {exc.reason}") from None
        assert len(text) <= MAX_BODY, "a reply above the message size limit"
        message = json.loads(text)
        if not (isinstance(message, dict) and "method" in message and "id" not in message):
            return message


async def ws_exchange(url: str, frames: list[tuple[str | bytes, bool]]) -> list[Any]:
    """On one fresh /ws connection: send each frame, read its reply when one is due
    (`NO_REPLY` otherwise), then the reply to a `task.list` sentinel (last in the list)."""
    replies: list[Any] = []
    async with rpc.open_websocket(ws_url(url, "/ws")) as ws:
        for data, reply_due in frames:
            await ws.send_message(data)
            replies.append(await next_reply(ws) if reply_due else NO_REPLY)
        await ws.send_message(SENTINEL)
        replies.append(await next_reply(ws))
    return replies


def ws_send(server: ServerThread, *bodies: bytes, binary: bool = False) -> list[Any]:
    """Send bodies over one fresh /ws connection, check each reply against the oracle (and
    that no unasked reply came before the sentinel's); the replies."""
    frames = []
    for body in bodies:
        frames.append((frame(body, binary), expected_reply(body, ws=True) is not NO_REPLY))
    replies = server.run(ws_exchange, server.url, frames)
    *answers, sentinel = replies
    assert_sentinel(sentinel)
    for body, reply in zip(bodies, answers, strict=True):
        check_reply(body, reply, ws=True)
    return answers


def assert_sentinel(reply: Any) -> None:
    assert reply.get("id") == "sentinel", f"a reply nobody asked for: {reply}"
    assert isinstance(reply.get("result"), list), reply


# ---- the oracle ------------------------------------------------------------------------------


def strict_loads(body: bytes) -> Any:
    """JSON as JSON-RPC over UTF-8 means it: no NaN/Infinity, finite numbers, Unicode text."""

    def finite(text: str) -> float:
        if not math.isfinite(number := float(text)):
            raise ValueError(text)
        return number

    def constant(name: str) -> Any:
        raise ValueError(name)

    value = json.loads(body.decode("utf-8"), parse_float=finite, parse_constant=constant)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # lone surrogates raise here
    return value


def valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def expect_element(obj: Any, *, ws: bool) -> Any:
    """One message or batch element: NO_REPLY, ("request", id, method) or ("invalid", ids)."""
    if not isinstance(obj, dict):
        return ("invalid", (None,))
    id = obj.get("id")
    echo = (None, id) if valid_id(id) else (None,)  # the spec says null; echoing is tolerated
    if "method" in obj:
        valid = (
            obj.get("jsonrpc") == "2.0"
            and isinstance(obj["method"], str)
            and isinstance(obj.get("params", []), list | dict)
            and valid_id(id)
        )
        if not valid:
            return ("invalid", echo)
        return ("request", id, obj["method"]) if "id" in obj else NO_REPLY
    if ws and "id" in obj and ("result" in obj or "error" in obj):
        return NO_REPLY  # a peer reads responses (to calls it made): never answered
    return ("invalid", echo)


def expected_reply(body: bytes, *, ws: bool) -> Any:
    """NO_REPLY, ("parse",), ("single", element) or ("batch", [elements])."""
    try:
        message = strict_loads(body)
    except (ValueError, RecursionError):
        return ("parse",)
    if isinstance(message, list):
        if not message:
            return ("single", ("invalid", (None,)))
        elements = [expect_element(e, ws=ws) for e in message]
        elements = [e for e in elements if e is not NO_REPLY]
        return ("batch", elements) if elements else NO_REPLY
    element = expect_element(message, ws=ws)
    return NO_REPLY if element is NO_REPLY else ("single", element)


def assert_response_object(obj: Any) -> None:
    assert isinstance(obj, dict), obj
    assert set(obj) <= {"jsonrpc", "id", "result", "error"}, obj
    assert obj.get("jsonrpc") == "2.0", obj
    assert "id" in obj and valid_id(obj["id"]), obj
    assert ("result" in obj) != ("error" in obj), obj
    if "error" in obj:
        error = obj["error"]
        assert isinstance(error, dict) and set(error) <= {"code", "message", "data"}, obj
        assert isinstance(error["message"], str) and error["message"], obj
        assert error["code"] in STANDARD_CODES | APPLICATION_CODES, obj


def same_id(a: Any, b: Any) -> bool:
    return a == b and type(a) is type(b)


def check_element(expect: Any, reply: Any) -> None:
    assert_response_object(reply)
    if expect[0] == "invalid":
        assert reply.get("error", {}).get("code") == -32600, reply
        assert any(same_id(reply["id"], id) for id in expect[1]), reply
        return
    _, id, method = expect
    assert same_id(reply["id"], id), (reply, id)
    code = reply.get("error", {}).get("code")
    if method not in PUBLIC:
        assert code == -32601, (method, reply)
    else:
        assert code != -32601, (method, reply)


def pick(element: Any, replies: list[dict]) -> dict | None:
    """The reply of a batch that answers `element` (requests are matched first)."""

    def invalid(r: dict) -> bool:
        return r.get("error", {}).get("code") == -32600

    if element[0] == "request":
        same = [r for r in replies if same_id(r["id"], element[1])]
        # An invalid element echoing the same id gets -32600: prefer the request's own answer.
        return next((r for r in same if not invalid(r)), same[0] if same else None)
    echoed = element[1]
    return next(
        (r for r in replies if invalid(r) and any(same_id(r["id"], i) for i in echoed)), None
    )


def check_reply(body: bytes, reply: Any, *, ws: bool) -> None:
    """`reply` (parsed, or NO_REPLY) is what JSON-RPC 2.0 asks for in answer to `body`."""
    expect = expected_reply(body, ws=ws)
    if expect is NO_REPLY:
        assert reply is NO_REPLY, reply
        return
    assert reply is not NO_REPLY
    if expect[0] == "parse":
        assert_response_object(reply)
        assert reply["id"] is None and reply["error"]["code"] == -32700, reply
    elif expect[0] == "single":
        check_element(expect[1], reply)
    else:
        assert isinstance(reply, list) and len(reply) == len(expect[1]), (expect, reply)
        for obj in reply:
            assert_response_object(obj)
        unmatched = list(reply)
        for element in sorted(expect[1], key=lambda e: e[0] != "request"):
            match = pick(element, unmatched)
            assert match is not None, (element, reply)
            check_element(element, match)
            unmatched.remove(match)


def check_http(http: httpx.Client, body: bytes) -> Any:
    status, reply = post(http, body)
    expect = expected_reply(body, ws=False)
    if expect is NO_REPLY:
        assert (status, reply) == (204, None)
        return None
    assert status == 200, (status, reply)
    check_reply(body, reply, ws=False)
    return reply


# ---- strategies ------------------------------------------------------------------------------

BIG_NUMBERS = st.sampled_from([2**70, -(2**70), 2**63, 2**53 + 1, -0.0, 1e308, 5e-324, 0.1])
# Some strings hold lone surrogates: escaped in ASCII bodies, CESU-8 bytes in UTF-8 ones.
# (st.text drops surrogates whatever its alphabet: join the characters by hand.)
strings = st.text(max_size=16) | st.lists(
    st.characters(categories=["Cs"]) | st.characters(), min_size=1, max_size=4
).map("".join)
HEX40 = st.text("0123456789abcdef", min_size=40, max_size=40)
ids = st.integers() | BIG_NUMBERS | strings | st.none() | st.floats(-1e9, 1e9)
methods = st.sampled_from(PUBLIC + WORKER_ONLY) | st.sampled_from(PUBLIC) | st.text(max_size=12)


def json_values(task_ids: tuple[str, ...]) -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | BIG_NUMBERS
        | st.floats(allow_nan=False, allow_infinity=False)
        | strings
        | st.sampled_from(task_ids + MAGNETS)
        | st.builds("magnet:?xt=urn:btih:{}{}".format, HEX40, st.sampled_from(["", "&dn=a"]))
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(PARAM_NAMES) | strings, inner, max_size=4)
        ),
        max_leaves=10,
    )


@functools.cache  # building these strategies costs more than drawing from them
def messages(task_ids: tuple[str, ...]) -> st.SearchStrategy[Any]:
    values = json_values(task_ids)
    params = (
        st.none()
        | st.lists(values, max_size=3)
        | st.dictionaries(st.sampled_from(PARAM_NAMES) | strings, values, max_size=3)
    )
    requests = st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0"), "method": methods},
        optional={"params": params, "id": ids},
    )
    anything = st.fixed_dictionaries(
        {},
        optional={
            "jsonrpc": st.just("2.0") | values,
            "method": methods | values,
            "params": params | values,
            "id": ids | values,
            "result": values,
            "error": st.fixed_dictionaries({"code": st.integers(), "message": strings}) | values,
        },
    )
    return (
        requests
        | anything
        | st.lists(requests | anything | values, min_size=0, max_size=8)
        | values
    )


@st.composite
def bodies(draw: st.DrawFn, task_ids: tuple[str, ...]) -> bytes:
    """Random JSON-RPC-like bodies; some escaped ASCII, some raw UTF-8 (lone surrogates as
    CESU-8 bytes: invalid UTF-8), some cut short or with bytes spliced in."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64))
    message = draw(messages(task_ids))
    ascii_only = draw(st.booleans())
    body = json.dumps(message, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    mutation = draw(st.sampled_from(["none", "none", "none", "cut", "splice"]))
    if mutation != "none" and body:
        at = draw(st.integers(0, len(body) - 1))
        insert = draw(st.binary(min_size=1, max_size=3)) if mutation == "splice" else b""
        body = body[:at] + insert + (body[at:] if mutation == "splice" else b"")
    return body


FUZZ = settings(
    deadline=None,  # a loaded CI machine must not turn into a flaky failure
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---- fuzzing ---------------------------------------------------------------------------------


@settings(FUZZ, max_examples=HTTP_EXAMPLES)
@given(data=st.data())
def test_fuzzed_http_bodies_get_a_json_rpc_answer(http, task_ids, data) -> None:
    body = data.draw(bodies(task_ids), label="body")
    check_http(http, body)


@settings(FUZZ, max_examples=WS_EXAMPLES)
@given(data=st.data())
def test_fuzzed_websocket_messages_get_a_json_rpc_answer(server, task_ids, data) -> None:
    sent = data.draw(st.lists(bodies(task_ids), min_size=1, max_size=3), label="messages")
    ws_send(server, *sent, binary=data.draw(st.booleans(), label="binary frames"))


def deep(depth: int, leaf: str = "1") -> bytes:
    return ("[" * depth + leaf + "]" * depth).encode()


def params_of(method: str, params: str) -> bytes:
    return f'{{"jsonrpc":"2.0","id":7,"method":"{method}","params":{params}}}'.encode()


# (name, body, expected error code or "result"); None: only the oracle's checks.
NASTY = [
    ("number overflowing to inf", params_of("task.get", '{"id":1e400}'), -32700),
    ("2**70 as id", request("task.list", id=2**70), "result"),
    ("2**70 as a param", request("task.get", {"id": 2**70}), -32602),
    ("-0.0 as id", b'{"jsonrpc":"2.0","id":-0.0,"method":"task.list"}', "result"),
    ("NaN", params_of("task.get", '{"id":NaN}'), -32700),
    ("Infinity", params_of("task.get", "[Infinity]"), -32700),
    ("-Infinity id", b'{"jsonrpc":"2.0","id":-Infinity,"method":"task.list"}', -32700),
    ("10 000 deep list", deep(10_000), -32700),
    ("10 000 deep object", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, -32700),
    ("10 000 deep params", params_of("task.get", deep(10_000).decode()), -32700),
    ("200 deep param", params_of("task.get", '{"id":' + deep(200).decode() + "}"), -32602),
    (
        "200 deep candidate",
        params_of("stream.candidate", '["s",' + '{"a":' * 200 + "1" + "}" * 200 + "]"),
        -32005,
    ),
    ("5000-digit integer", params_of("task.get", "[" + "9" * 5000 + "]"), -32700),
    ("invalid UTF-8", b"\xff\xfe\x80{", -32700),
    (
        "invalid UTF-8 in a string",
        b'{"jsonrpc":"2.0","id":1,"method":"task.get","params":["\xc3("]}',
        -32700,
    ),
    (
        "CESU-8 surrogate",
        b'{"jsonrpc":"2.0","id":1,"method":"task.get","params":["\xed\xa0\x80"]}',
        -32700,
    ),
    (
        "lone surrogate escape in id",
        b'{"jsonrpc":"2.0","id":"\\ud800","method":"task.list"}',
        -32700,
    ),
    ("lone surrogate escape in a param", params_of("task.get", '["\\udfff"]'), -32700),
    ("surrogate pair escape", params_of("task.get", '["\\ud83d\\ude00"]'), -32001),
    ("NUL in a string", params_of("task.get", '["a\\u0000b"]'), -32001),
    ("UTF-8 BOM", b"\xef\xbb\xbf" + request("task.list"), None),
    ("UTF-16", request("task.list").decode().encode("utf-16"), -32700),
    ("empty", b"", -32700),
    ("empty batch", b"[]", -32600),
    ("a worker method", request("task.progress", {"task_id": "x", "percent": 1}), -32601),
    ("wrong type: task.get id", request("task.get", {"id": 5}), -32602),
    ("wrong type: task.add magnet", request("task.add", {"magnet": ["magnet:?"]}), -32602),
    (
        "wrong type: stream.open index",
        request("stream.open", {"task_id": "t", "file_index": "0"}),
        -32602,
    ),
    (
        "wrong type: stream.open float",
        request("stream.open", {"task_id": "t", "file_index": 0.5}),
        -32602,
    ),
    ("wrong type: stream.open bool", request("stream.open", ["t", True]), -32602),
    ("wrong type: auth null", request("auth", {"token": None}), -32602),
    (
        "wrong type: candidate",
        request("stream.candidate", {"session_id": "s", "candidate": "c"}),
        -32602,
    ),
    ("unknown param", request("task.list", {"x": 1}), -32602),
    ("too many params", request("task.get", ["a", "b"]), -32602),
    ("params not a container", b'{"jsonrpc":"2.0","id":1,"method":"task.list","params":3}', -32600),
    ("jsonrpc 1.0", b'{"jsonrpc":"1.0","id":1,"method":"task.list"}', -32600),
    ("method not a string", b'{"jsonrpc":"2.0","id":1,"method":5}', -32600),
    ("huge method name", request("\u0085" * 20_000), -32601),
    (
        "batch mixing good and bad",
        json.dumps(
            [
                {"jsonrpc": "2.0", "id": 1, "method": "task.list"},
                1,
                {"jsonrpc": "2.0", "method": "task.list"},
                {"jsonrpc": "2.0", "id": 2, "method": "nope"},
                {"jsonrpc": "2.0", "id": 3, "method": "task.get", "params": {"id": 5}},
                {"jsonrpc": "1.0", "id": 4, "method": "task.list"},
                {"jsonrpc": "2.0", "id": 5, "method": "worker.hello", "params": {}},
                {"jsonrpc": "2.0", "id": 2**70, "method": "rpc.discover"},
            ]
        ).encode(),
        None,
    ),
    (
        "notification-only batch",
        json.dumps([{"jsonrpc": "2.0", "method": "task.list"}] * 50).encode(),
        None,
    ),
]


@pytest.mark.parametrize(("name", "body", "expected"), NASTY, ids=[n for n, _, _ in NASTY])
def test_nasty_bodies(http, server, name: str, body: bytes, expected: Any) -> None:
    """Each over HTTP, and over /ws both as a text frame (when UTF-8) and a binary frame."""
    replies = [check_http(http, body)]
    replies += ws_send(server, body)
    replies += ws_send(server, body, binary=True)
    for reply in replies:
        if expected == "result":
            assert "result" in reply, reply
        elif expected is not None:
            assert reply["error"]["code"] == expected, reply


def test_oversized_requests(http, server) -> None:
    pad = "x" * MAX_BODY
    call = request("task.get", {"id": pad}, id="big")
    notification = json.dumps({"jsonrpc": "2.0", "method": "task.get", "params": [pad]}).encode()
    for body in (call, notification):
        response = http.post("/rpc", content=body)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == -32600
        assert str(MAX_BODY) in response.json()["error"]["message"]
        # A answers before reading the body: it must close the connection, or a client that
        # reuses it may hang (it did, about one time in eight).
        assert response.headers["connection"] == "close"
    # Without a Content-Length (chunked), the limit holds all the same.
    response = http.post("/rpc", content=iter([call[:1000], call[1000:]]))
    assert response.status_code == 413
    for _ in range(8):  # the same keep-alive client goes on working
        assert http.post("/rpc", content=call).status_code == 413
        assert post(http, request("task.list"))[0] == 200
    # Over the websocket: the same error for the call, nothing for the notification.
    frames = [(call.decode(), True), (notification.decode(), False)]
    big, quiet, sentinel = server.run(ws_exchange, server.url, frames)
    assert_sentinel(sentinel)
    assert big["id"] == "big" and big["error"]["code"] == -32600
    assert quiet is NO_REPLY


def test_websocket_message_above_the_frame_limit_closes_cleanly(http, server) -> None:
    """Past twice the limit hypercorn refuses the frame itself: close 1009, A serves on."""

    async def send_huge() -> int | None:
        async with rpc.open_websocket(
            ws_url(server.url, "/ws"), max_message_size=8 * MAX_BODY
        ) as ws:
            await ws.send_message(request("task.get", {"id": "x" * (3 * MAX_BODY)}).decode())
            try:
                await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                return exc.reason.code
        return None

    assert server.run(send_huge) == 1009  # MESSAGE_TOO_BIG
    assert post(http, request("task.list"))[1]["result"] is not None


def test_other_http_requests_are_not_server_errors(http) -> None:
    assert http.get("/rpc").status_code in (404, 405)
    for _ in range(12):
        # A body A never reads: the connection is closed after the answer, else hypercorn
        # stalled the next request on it about one time in twelve.
        response = http.put("/rpc", content=b"{}")
        assert response.status_code == 405
        assert response.headers["connection"] == "close"
        assert http.request("GET", "/healthz", content=b"{}").status_code == 200
    status, reply = post(http, request("task.list"))
    assert status == 200 and isinstance(reply["result"], list)
    response = http.post("/rpc", content=request("task.list"), headers={"Content-Type": "x/y"})
    assert response.status_code == 200 and "result" in response.json()


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("task.metadata", {"task_id": "t", "name": "n", "info_hash": "0" * 40, "files": []}),
        (
            "task.hls_ready",
            {"task_id": "t", "file_index": 0, "playlist": "p", "duration": 1.0, "segments": 1},
        ),
        (
            "worker.hello",
            {"worker_id": "w", "token": "t", "version": "1", "tasks": [], "max_tasks": 1},
        ),
        (
            "rtc.offer",
            {"session_id": "s", "task_id": "t", "file_index": 0, "sdp": "v=0", "ice_servers": []},
        ),
        ("task.progress", {"task_id": "t", "percent": 1.0}),
        ("task.state", {"task_id": "t", "state": "playable"}),
        ("rtc.candidate", {"session_id": "s", "candidate": None}),
    ],
)
def test_browser_cannot_call_worker_methods(http, server, method: str, params: dict) -> None:
    body = request(method, params)
    (reply,) = ws_send(server, body)
    assert reply["error"]["code"] == -32601
    assert check_http(http, body)["error"]["code"] == -32601


def test_a_still_serves_after_the_fuzzing(http, server, task_ids) -> None:
    status, reply = post(http, request("task.list"))
    assert status == 200 and isinstance(reply["result"], list)
    (listed,) = ws_send(server, request("task.list"))
    assert isinstance(listed["result"], list)
    assert http.get("/healthz").json()["ok"] is True
