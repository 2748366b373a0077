"""Peers over real websockets on 127.0.0.1: trio-websocket both ends, and Quart under hypercorn."""

import gc
from functools import partial

import hypercorn.config
import hypercorn.trio
import pytest
import trio
import trio_websocket
import wsproto
import wsproto.events
from quart import websocket
from quart_trio import QuartTrio

import rpc

DEADLINE = 10  # seconds


def server_methods(seen: list[str]) -> rpc.Methods:
    methods = rpc.Methods()

    @methods.add(name="worker.hello")
    async def hello(worker_id: str) -> dict:
        """Remember who is calling, then ask the caller something back over the same link."""
        peer = rpc.current_peer()
        assert peer is not None
        peer.context["worker_id"] = worker_id
        answer = await peer.call("worker.ping")
        seen.append(f"{worker_id} answered ping at {answer['time']}")
        return {"ice_servers": []}

    return methods


def client_methods() -> rpc.Methods:
    methods = rpc.Methods()

    @methods.add(name="worker.ping")
    async def ping() -> dict:
        return {"time": 42}

    return methods


async def talk_to(url: str) -> None:
    async with (
        rpc.open_websocket(url) as ws,
        rpc.open_peer(rpc.TrioWebSocketStream(ws), client_methods(), name="A") as peer,
    ):
        assert await peer.call("worker.hello", {"worker_id": "w1"}) == {"ice_servers": []}
        with pytest.raises(rpc.RemoteError) as missing:
            await peer.call("task.nope")
        assert missing.value.code == -32601


async def test_trio_websocket_both_ways() -> None:
    seen: list[str] = []
    server_done = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        async with rpc.open_peer(rpc.TrioWebSocketStream(ws), server_methods(seen)) as peer:
            await peer.wait_closed()
        server_done.set()

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, ssl_context=None)
            )
            await talk_to(f"ws://127.0.0.1:{server.port}/")
            await server_done.wait()  # the client's close ended the server's peer cleanly
            nursery.cancel_scope.cancel()
    assert seen == ["w1 answered ping at 42"]


async def test_quart_websocket_under_hypercorn() -> None:
    seen: list[str] = []
    app = QuartTrio(__name__)
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = 1

    @app.websocket("/worker")
    async def worker_link() -> None:
        stream = rpc.QuartWebSocketStream(websocket._get_current_object())
        async with rpc.open_peer(stream, server_methods(seen), name="worker") as peer:
            await peer.wait_closed()

    @app.websocket("/bye")
    async def bye() -> None:
        await websocket.accept()
        stream = rpc.QuartWebSocketStream(websocket._get_current_object())
        try:
            async with rpc.open_peer(stream, rpc.Methods(), name="browser"):
                await websocket.close(4000, "the app closes it itself")
        except Exception as exc:  # recorded: leaving the peer must not fail after an app close
            seen.append(repr(exc))
        else:
            seen.append("closed cleanly")
        bye_done.set()

    bye_done = trio.Event()
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    stop = trio.Event()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(hypercorn.trio.serve, app, config, shutdown_trigger=stop.wait)
            )
            url = "ws" + binds[0].removeprefix("http") + "/worker"
            await talk_to(url)
            async with rpc.open_websocket(url.replace("/worker", "/bye")) as ws:
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    await ws.get_message()
            await bye_done.wait()
            stop.set()
    assert closed.value.reason.code == 4000
    assert seen == ["w1 answered ping at 42", "closed cleanly"]


async def test_open_websocket_closes_its_socket_however_the_link_ends() -> None:
    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        if request.path == "/reject":
            await request.reject(503)
            return
        ws = await request.accept()
        await ws.aclose()  # the server ends the link first

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, ssl_context=None)
            )
            base = f"ws://127.0.0.1:{server.port}"
            with pytest.raises(trio_websocket.ConnectionRejected):
                async with rpc.open_websocket(base + "/reject"):
                    pass
            async with rpc.open_websocket(base + "/close") as ws:
                with pytest.raises(trio_websocket.ConnectionClosed):
                    await ws.get_message()
            with pytest.raises(ValueError, match="not a websocket URL"):
                async with rpc.open_websocket("http://127.0.0.1/worker"):
                    pass
            nursery.cancel_scope.cancel()
    gc.collect()  # an unclosed socket would raise its ResourceWarning (an error here) now


async def _ping_during_close_handshake(stream: trio.SocketStream) -> None:
    """A websocket server (wsproto on raw TCP) that answers a client's Close with a Ping first.

    That is what hypercorn's keep-alive ping does when its timer fires just as the client
    leaves: the Ping reaches a client whose websocket is already LOCAL_CLOSING.
    """
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    async with stream:
        while True:
            data = await stream.receive_some()
            if not data:
                return
            server.receive_data(data)
            for event in server.events():
                if isinstance(event, wsproto.events.Request):
                    await stream.send_all(server.send(wsproto.events.AcceptConnection()))
                elif isinstance(event, wsproto.events.CloseConnection):
                    # wsproto will not send it now either: a Ping frame by hand (FIN, opcode 9).
                    await stream.send_all(b"\x89\x0akeep-alive")
                    await stream.send_all(server.send(event.response()))
                    return


async def test_a_ping_during_the_close_handshake_does_not_fail_the_client() -> None:
    # trio-websocket 0.12 answers that Ping with a Pong wsproto refuses to send in
    # LOCAL_CLOSING, and the LocalProtocolError escaped from the reader task
    # (python-trio/trio-websocket#184). The link was ending anyway: leaving must be clean.
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, _ping_during_close_handshake, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            async with rpc.open_websocket(f"ws://127.0.0.1:{port}/worker") as ws:
                pass
            assert ws.closed is not None
            with pytest.raises(ZeroDivisionError):  # the block's own errors still come out
                async with rpc.open_websocket(f"ws://127.0.0.1:{port}/worker"):
                    1 / 0  # noqa: B018
            nursery.cancel_scope.cancel()
