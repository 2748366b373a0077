"""The registry: registration forms, param checking against signatures, error mapping."""

import json
import logging
from typing import Any, Literal

import pytest
import trio

import rpc


def make_methods() -> rpc.Methods:
    methods = rpc.Methods()

    @methods.add(name="task.add")
    async def add(magnet: str, paused: bool = False, priority: int | None = None) -> dict:
        """Add a magnet link.

        The task starts waiting for a worker.
        """
        return {"magnet": magnet, "paused": paused, "priority": priority}

    @methods.add(name="task.files")
    async def files(paths: list[str], sizes: dict[str, int] | None = None) -> list:
        return [paths, sizes]

    @methods.add(name="math.scale")
    async def scale(value: float, *, mode: Literal["up", "down"] = "up") -> float:
        return value * 2 if mode == "up" else value / 2

    async def anything(x, *rest: int, **extra: str) -> Any:
        return [x, list(rest), extra]

    methods.add(anything, name="any")
    return methods


@pytest.mark.parametrize(
    ("method", "params", "result"),
    [
        ("task.add", {"magnet": "m"}, {"magnet": "m", "paused": False, "priority": None}),
        ("task.add", ["m", True, 3], {"magnet": "m", "paused": True, "priority": 3}),
        (
            "task.add",
            {"magnet": "m", "priority": None},
            {"magnet": "m", "paused": False, "priority": None},
        ),
        ("task.files", {"paths": ["a", "b"], "sizes": {"a": 1}}, [["a", "b"], {"a": 1}]),
        ("math.scale", {"value": 3}, 6),  # an int is a fine float
        ("math.scale", {"value": 3.0, "mode": "down"}, 1.5),
        ("any", [1, 2, 3], [1, [2, 3], {}]),
        ("any", {"x": None, "k": "v"}, [None, [], {"k": "v"}]),
    ],
)
async def test_params_that_fit(method: str, params: Any, result: Any) -> None:
    assert await make_methods().invoke(method, params) == result


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("task.add", None, "missing required param 'magnet'"),
        ("task.add", {}, "missing required param 'magnet'"),
        ("task.add", [], "missing required param 'magnet'"),
        ("task.add", {"magnet": "m", "x": 1}, "unknown param 'x'"),
        ("task.add", ["m", False, 1, 2], "too many params: 'task.add' takes at most 3, got 4"),
        ("task.add", {"magnet": 5}, "param 'magnet' must be a string"),
        ("task.add", {"magnet": "m", "paused": 1}, "param 'paused' must be a boolean"),
        (
            "task.add",
            {"magnet": "m", "priority": True},
            "param 'priority' must be an integer or null",
        ),
        (
            "task.add",
            {"magnet": "m", "priority": 1.5},
            "param 'priority' must be an integer or null",
        ),
        ("task.files", {"paths": "a"}, "param 'paths' must be a list of strings"),
        ("task.files", {"paths": ["a", 2]}, "param 'paths' item 1 must be a string"),
        (
            "task.files",
            {"paths": [], "sizes": {"a": "1"}},
            "param 'sizes' key 'a' must be an integer",
        ),
        ("task.files", {"paths": [], "sizes": []}, "param 'sizes' must be an object or null"),
        ("math.scale", {"value": "3"}, "param 'value' must be a number"),
        ("math.scale", {"value": True}, "param 'value' must be a number"),
        (
            "math.scale",
            {"value": 1, "mode": "sideways"},
            "param 'mode' must be one of 'up', 'down'",
        ),
        ("math.scale", [1, "up"], "too many params: 'math.scale' takes at most 1, got 2"),
        ("any", [1, 2, "x"], "param 2 must be an integer"),
        ("any", {"x": 1, "k": 2}, "param 'k' must be a string"),
    ],
)
async def test_params_that_do_not_fit_are_explained(method: str, params: Any, message: str):
    with pytest.raises(rpc.InvalidParams) as caught:
        await make_methods().invoke(method, params)
    assert caught.value.message == message
    assert caught.value.code == -32602


async def test_params_are_checked_before_the_handler_runs() -> None:
    methods = rpc.Methods()
    ran = []

    @methods.add
    async def remove(id: str, delete_files: bool) -> None:
        ran.append(id)

    with pytest.raises(rpc.InvalidParams):
        await methods.invoke("remove", {"id": "t1", "delete_files": "yes"})
    assert ran == []


async def test_unknown_method() -> None:
    with pytest.raises(rpc.MethodNotFound, match=r"method not found: 'task\.nope'"):
        await make_methods().invoke("task.nope", None)


def test_registration_forms_and_table_operations() -> None:
    methods = rpc.Methods()

    @methods.add
    async def ping() -> str:
        return "pong"

    async def add(magnet: str) -> None:
        pass

    assert methods.add(add, name="task.add") is add

    @methods.add(name="task.get")
    async def get(id: str) -> None:
        pass

    assert methods.names() == ["ping", "task.add", "task.get"]
    with pytest.raises(ValueError, match="'ping' is already registered"):
        methods.add(ping)
    with pytest.raises(TypeError, match="must be an async function"):
        methods.add(lambda: None, name="sync")

    extra = rpc.Methods()

    @extra.add(name="worker.ping")
    async def worker_ping() -> dict:
        return {}

    copy = methods.copy()
    copy.merge(extra)
    assert "worker.ping" in copy and "worker.ping" not in methods
    with pytest.raises(ValueError, match="already registered"):
        copy.merge(extra)


async def test_rpc_errors_pass_through_and_other_exceptions_are_hidden(caplog) -> None:
    methods = rpc.Methods()

    @methods.add(name="task.get")
    async def get(id: str) -> None:
        raise rpc.ApplicationError(-32001, f"unknown task: {id}", {"id": id})

    @methods.add(name="task.crash")
    async def crash() -> None:
        raise KeyError("secret internals")

    @methods.add(name="task.nursery")
    async def in_a_nursery() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(get, "t9")

    reply = json.loads(
        await rpc.dispatch(
            methods, '{"jsonrpc":"2.0","method":"task.get","params":{"id":"t1"},"id":1}'
        )
    )
    assert reply["error"] == {"code": -32001, "message": "unknown task: t1", "data": {"id": "t1"}}

    with caplog.at_level(logging.ERROR, logger="rpc"):
        text = await rpc.dispatch(methods, '{"jsonrpc":"2.0","method":"task.crash","id":2}')
    assert json.loads(text)["error"] == {"code": -32603, "message": "internal error"}
    assert "secret" not in text
    (record,) = [r for r in caplog.records if r.name == "rpc"]
    assert "task.crash" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is KeyError

    # An RPCError raised inside a handler's own nursery still reaches the caller as itself.
    text = await rpc.dispatch(methods, '{"jsonrpc":"2.0","method":"task.nursery","id":3}')
    assert json.loads(text)["error"]["code"] == -32001


async def test_cancellation_is_never_turned_into_an_error(autojump_clock) -> None:
    methods = rpc.Methods()

    @methods.add
    async def hang() -> None:
        await trio.sleep_forever()

    with trio.move_on_after(1) as scope:
        await rpc.dispatch(methods, '{"jsonrpc":"2.0","method":"hang","id":1}')
    assert scope.cancelled_caught


async def test_batch_requests_run_concurrently() -> None:
    methods = rpc.Methods()
    arrived = 0
    all_there = trio.Event()

    @methods.add
    async def meet(n: int) -> int:
        nonlocal arrived
        arrived += 1
        if arrived == 3:
            all_there.set()
        await all_there.wait()  # only returns if all three run at the same time
        return n

    batch = [{"jsonrpc": "2.0", "method": "meet", "params": [n], "id": n} for n in range(3)]
    with trio.fail_after(5):
        text = await rpc.dispatch(methods, json.dumps(batch))
    assert [r["result"] for r in json.loads(text)] == [0, 1, 2]
