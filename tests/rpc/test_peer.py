"""Peers over rpc.memory_stream_pair: calls both ways, concurrency, deadlines, link loss, limits."""

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

import rpc

DEADLINE = 10  # seconds: every test here finishes far sooner unless it hangs


async def run_peer(stream, methods, options, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    async with rpc.open_peer(stream, methods, **options) as peer:
        task_status.started(peer)
        await peer.wait_closed()


@asynccontextmanager
async def open_pair(
    methods_a: rpc.Methods, methods_b: rpc.Methods, a: Any = None, b: Any = None
) -> AsyncIterator[tuple[rpc.Peer, rpc.Peer]]:
    """Two sides A and B, each run by its own task, linked in memory.

    A peer is named after the side it talks to: A's peer is "B".
    """
    left, right = rpc.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        peer_a = await nursery.start(run_peer, left, methods_a, {"name": "B", **(a or {})})
        peer_b = await nursery.start(run_peer, right, methods_b, {"name": "A", **(b or {})})
        yield peer_a, peer_b
        nursery.cancel_scope.cancel()


def table(**handlers: Any) -> rpc.Methods:
    methods = rpc.Methods()
    for name, fn in handlers.items():
        methods.add(fn, name=name.replace("_", "."))
    return methods


async def test_calls_both_ways_at_once_even_from_inside_handlers() -> None:
    async def double(n: int) -> int:
        return 2 * n

    async def relay(n: int) -> int:
        # A handler calling back the peer that called it: the link must keep reading meanwhile.
        peer = rpc.current_peer()
        assert peer is not None and peer.name == "A"
        return await peer.call("double", [n]) + 1

    results: dict[str, Any] = {}
    with trio.fail_after(DEADLINE):
        async with open_pair(table(double=double), table(relay=relay, double=double)) as (a, b):
            async with trio.open_nursery() as nursery:

                async def from_a(n: int) -> None:
                    results[f"a{n}"] = await a.call("relay", {"n": n})

                async def from_b(n: int) -> None:
                    results[f"b{n}"] = await b.call("double", [n])

                for n in range(20):
                    nursery.start_soon(from_a, n)
                    nursery.start_soon(from_b, n)
    assert results == {
        **{f"a{n}": 2 * n + 1 for n in range(20)},
        **{f"b{n}": 2 * n for n in range(20)},
    }


async def test_a_slow_handler_does_not_block_others() -> None:
    release = trio.Event()

    async def slow() -> str:
        await release.wait()
        return "slow"

    async def fast() -> str:
        return "fast"

    order = []
    with trio.fail_after(DEADLINE):
        async with open_pair(rpc.Methods(), table(slow=slow, fast=fast)) as (a, _):
            async with trio.open_nursery() as nursery:

                async def call_slow() -> None:
                    order.append(await a.call("slow"))

                nursery.start_soon(call_slow)
                order.append(await a.call("fast"))
                release.set()
    assert order == ["fast", "slow"]


async def test_call_deadline(autojump_clock) -> None:
    async def hang() -> None:
        await trio.sleep_forever()

    async def ping() -> str:
        return "pong"

    async with open_pair(rpc.Methods(), table(hang=hang, ping=ping), a={"call_timeout": 7}) as (
        a,
        _,
    ):
        start = trio.current_time()
        with pytest.raises(rpc.CallTimeout, match="B did not answer 'hang' within 7 s"):
            await a.call("hang")
        assert trio.current_time() - start == pytest.approx(7)
        assert await a.call("ping") == "pong"  # the link is still fine
        assert not a.closed


async def test_pending_calls_fail_with_link_closed_when_the_link_drops() -> None:
    entered = trio.Event()

    async def hang() -> None:
        entered.set()
        await trio.sleep_forever()

    left, right = rpc.memory_stream_pair()
    errors = []
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_peer, right, table(task_start=hang), {"name": "B"})
            async with rpc.open_peer(left, rpc.Methods(), name="peer") as a:

                async def call() -> None:
                    try:
                        await a.call("task.start", {})
                    except rpc.LinkClosed as exc:
                        errors.append(str(exc))

                async with trio.open_nursery() as calls:
                    calls.start_soon(call)
                    calls.start_soon(call)
                    await entered.wait()
                    await right.aclose()  # B's side of the link goes away
                    await a.wait_closed()
                await trio.sleep_forever()  # cancelled by the link closing: the block exits
            assert a.closed
            with pytest.raises(rpc.LinkClosed, match="link to peer is closed: cannot call"):
                await a.call("task.start")
            with pytest.raises(rpc.LinkClosed):
                await a.notify("task.start")
    assert errors == ["link to peer closed while waiting for 'task.start'"] * 2


async def test_leaving_the_block_closes_the_stream_and_errors_are_not_wrapped() -> None:
    left, right = rpc.memory_stream_pair()
    with trio.fail_after(DEADLINE):
        with pytest.raises(KeyError):
            async with rpc.open_peer(left, rpc.Methods()):
                raise KeyError("mine")
        with pytest.raises(rpc.LinkClosed):
            await right.receive_message()


async def test_size_limit_both_ways() -> None:
    async def echo(text: str) -> str:
        return text

    async def grow(text: str) -> str:
        return text * 2

    big = "x" * 2000
    methods = table(echo=echo, grow=grow)
    with trio.fail_after(DEADLINE):
        async with open_pair(methods, methods, a={"max_message_size": 1000}) as (a, b):
            with pytest.raises(rpc.MessageTooLarge, match=r"'echo' message is 2\d+ bytes"):
                await a.call("echo", [big])
            # B may send more, but A refuses it and says why; the link stays up.
            with pytest.raises(rpc.RemoteError) as refused:
                await b.call("echo", [big])
            assert refused.value.code == -32600
            assert "message too large" in refused.value.message
            # A's own result above its limit becomes an error rather than a dropped link.
            with pytest.raises(rpc.RemoteError, match="result too large") as too_big:
                await b.call("grow", ["y" * 600])
            assert too_big.value.code == -32603
            # An oversized answer to A's call fails that call at once (no wait for a timeout).
            with pytest.raises(rpc.RemoteError, match="response too large"):
                await a.call("grow", ["z" * 600])
            assert await a.call("echo", ["small"]) == "small"
            assert await b.call("echo", ["small"]) == "small"


async def test_internal_errors_hide_the_traceback(caplog) -> None:
    async def broken() -> None:
        raise RuntimeError("password=hunter2")

    with trio.fail_after(DEADLINE), caplog.at_level(logging.ERROR, logger="rpc"):
        async with open_pair(rpc.Methods(), table(broken=broken)) as (a, _):
            with pytest.raises(rpc.RemoteError) as caught:
                await a.call("broken")
    assert caught.value.code == -32603
    assert caught.value.message == "internal error"
    assert caught.value.data is None
    assert any(r.exc_info and "hunter2" in str(r.exc_info[1]) for r in caplog.records)


async def test_remote_errors_carry_code_message_and_data() -> None:
    async def get(id: str) -> None:
        raise rpc.ApplicationError(-32001, f"unknown task: {id}", {"id": id})

    with trio.fail_after(DEADLINE):
        async with open_pair(rpc.Methods(), table(task_get=get)) as (a, _):
            with pytest.raises(rpc.RemoteError) as caught:
                await a.call("task.get", {"id": "t1"})
            with pytest.raises(rpc.RemoteError) as missing:
                await a.call("task.nope")
            with pytest.raises(rpc.RemoteError) as bad:
                await a.call("task.get", {"id": 5})
    assert (caught.value.code, caught.value.message) == (-32001, "unknown task: t1")
    assert caught.value.data == {"id": "t1"}
    assert isinstance(caught.value, rpc.RPCError)
    assert missing.value.code == -32601
    assert (bad.value.code, bad.value.message) == (-32602, "param 'id' must be a string")


async def test_notifications_run_the_handler_without_reply(caplog) -> None:
    got = trio.Event()
    seen = []

    async def updated(task: dict) -> None:
        seen.append(task)
        got.set()

    with trio.fail_after(DEADLINE), caplog.at_level(logging.WARNING, logger="rpc"):
        async with open_pair(rpc.Methods(), table(task_updated=updated)) as (a, _):
            await a.notify("nobody.listens", {})
            await a.notify("task.updated", {"task": {"id": "t1"}})
            await got.wait()
    assert seen == [{"id": "t1"}]
    assert any("nobody.listens" in r.getMessage() for r in caplog.records)


async def test_too_many_concurrent_requests_get_busy() -> None:
    release = trio.Event()
    running = 0
    two_running = trio.Event()

    async def hold() -> str:
        nonlocal running
        running += 1
        if running == 2:
            two_running.set()
        await release.wait()
        return "done"

    with trio.fail_after(DEADLINE):
        async with open_pair(rpc.Methods(), table(hold=hold), b={"max_concurrent_handlers": 2}) as (
            a,
            _,
        ):
            async with trio.open_nursery() as nursery:
                results = []

                async def call() -> None:
                    results.append(await a.call("hold"))

                nursery.start_soon(call)
                nursery.start_soon(call)
                await two_running.wait()
                with pytest.raises(rpc.RemoteError, match="busy") as busy:
                    await a.call("hold")
                assert busy.value.code == -32000
                release.set()
            assert results == ["done", "done"]
            assert await a.call("hold") == "done"  # slots are given back


async def test_handlers_know_their_peer_and_context() -> None:
    async def whoami() -> str:
        peer = rpc.current_peer()
        assert peer is not None
        return peer.context["user"]

    with trio.fail_after(DEADLINE):
        async with open_pair(rpc.Methods(), table(whoami=whoami)) as (a, b):
            b.context["user"] = "alice"
            assert await a.call("whoami") == "alice"
    assert rpc.current_peer() is None


async def test_last_received_tracks_incoming_messages(autojump_clock) -> None:
    async def ping() -> str:
        return "pong"

    async with open_pair(rpc.Methods(), table(ping=ping)) as (a, b):
        await trio.sleep(12)
        before = b.last_received
        await a.call("ping")
        assert b.last_received == trio.current_time() == pytest.approx(before + 12)
        assert a.last_received == trio.current_time()


async def test_close_after_reply_sends_the_answer_then_closes() -> None:
    async def refuse() -> None:
        peer = rpc.current_peer()
        assert peer is not None
        peer.close_after_reply()
        raise rpc.ApplicationError(-32004, "go away")

    left, right = rpc.memory_stream_pair()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_peer, right, table(refuse=refuse), {"name": "B"})
            await left.send_message('{"jsonrpc": "2.0", "method": "refuse", "id": 1}')
            reply = json.loads(await left.receive_message())
            assert reply["error"] == {"code": -32004, "message": "go away"}
            with pytest.raises(rpc.LinkClosed):
                await left.receive_message()


async def test_bad_messages_are_answered_and_the_link_stays_up() -> None:
    left, right = rpc.memory_stream_pair()

    async def ping() -> str:
        return "pong"

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_peer, right, table(ping=ping), {"name": "B"})
            for garbage in ["{not json", b"\xff\xfe", "[]", '{"jsonrpc": "2.0"}']:
                await left.send_message(garbage)
                reply = json.loads(await left.receive_message())
                assert reply["error"]["code"] in (-32700, -32600)
            await left.send_message('{"jsonrpc": "2.0", "method": "ping", "id": "x"}')
            assert json.loads(await left.receive_message())["result"] == "pong"
            nursery.cancel_scope.cancel()
