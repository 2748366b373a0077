"""Service A's web app: pages, `POST /rpc`, websockets `/ws` and `/worker`, `GET /healthz`.

`open_service(config)` owns everything with a lifetime (the database, the dispatcher, the
session sweeper) and yields a `ServiceA` whose `.app` is the Quart-Trio application;
`serve(config)` puts hypercorn in front of it. Tests use both with `listen="127.0.0.1:0"`.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import hypercorn.config
import hypercorn.trio
import trio
from quart import Response, request, send_from_directory, websocket
from quart_trio import QuartTrio

import rpc

from . import __version__, errors
from .api import Connection, public_methods, worker_methods
from .config import Config
from .events import EventHub
from .service import TaskService
from .signaling import StreamSessions
from .storage import open_storage
from .workers import WorkerRegistry

log = logging.getLogger("torrentm3u8.a")

PAGES = ("index.html", "task.html", "player.html")
JSON = "application/json"


def static_dir() -> Path:
    """The pages: inside the installed package, or `static/` of a source checkout."""
    installed = Path(__file__).parent / "static"
    if (installed / "index.html").is_file():
        return installed
    return Path(__file__).resolve().parent.parent / "static"


@dataclass
class ServiceA:
    config: Config
    db: object
    hub: EventHub
    registry: WorkerRegistry
    service: TaskService
    sessions: StreamSessions
    app: QuartTrio = None  # type: ignore[assignment]


@asynccontextmanager
async def open_service(config: Config) -> AsyncIterator[ServiceA]:
    await trio.Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    if config.api_token is None:
        log.warning("no --api-token: the public API is open to anyone who can reach A")
    if not config.worker_token:
        raise ValueError("A needs a worker token (--worker-token or TORRENTM3U8_WORKER_TOKEN)")
    async with open_storage(config.db_path) as db, trio.open_nursery() as nursery:
        hub = EventHub()
        hello_result = {
            "ice_servers": config.ice_servers,
            "ice_transport_policy": config.ice_transport_policy,
            "loopback_only": config.loopback_only,
        }
        service: TaskService
        registry = WorkerRegistry(
            token=config.worker_token,
            heartbeat_interval=config.heartbeat_interval,
            liveness_timeout=config.liveness_timeout,
            on_change=lambda worker: on_worker_change(worker),
            hello_hook=lambda worker_id, params: service.on_hello(worker_id, params),
        )
        service = TaskService(db, registry, hub, hello_result=hello_result)
        sessions = StreamSessions(
            db,
            registry,
            ice_servers=config.ice_servers,
            ice_transport_policy=config.ice_transport_policy,
            ttl=config.stream_ttl,
            setup_timeout=config.stream_setup_timeout,
        )

        def on_worker_change(worker: dict) -> None:
            service.on_worker_change(worker)
            if not worker["connected"]:
                sessions.worker_gone(worker["id"])

        a = ServiceA(config, db, hub, registry, service, sessions)
        a.app = create_app(a)
        await nursery.start(service.run)
        await nursery.start(sessions.run)
        service.kick()
        yield a
        nursery.cancel_scope.cancel()


def create_app(a: ServiceA) -> QuartTrio:
    config = a.config
    app = QuartTrio(__name__, static_folder=None)
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = 1
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    pages = static_dir()

    def bearer_ok(header: str | None) -> bool:
        if config.api_token is None:
            return True
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), config.api_token.encode()
        )

    @app.get("/")
    async def index():
        return await send_from_directory(pages, "index.html")

    @app.get("/<page>")
    async def page(page: str):
        if page not in PAGES:
            return Response("not found\n", 404, mimetype="text/plain")
        return await send_from_directory(pages, page)

    @app.get("/static/<path:path>")
    async def static_file(path: str):
        return await send_from_directory(pages, path)

    @app.after_request
    async def close_after_unread_body(response: Response) -> Response:
        # hypercorn 0.18 may stall (about 1 time in 12) the next request on a keep-alive
        # connection whose request body the app never read (a PUT answered 405): close it.
        unread = request.endpoint != "rpc_http" and (
            request.content_length or "transfer-encoding" in request.headers
        )
        if unread:
            response.headers["Connection"] = "close"
        return response

    @app.get("/healthz")
    async def healthz():
        body = {
            "ok": True,
            "version": __version__,
            "workers_connected": len(a.registry.connected_ids()),
        }
        return Response(json.dumps(body), 200, mimetype=JSON)

    @app.post("/rpc")
    async def rpc_http():
        if request.content_length is not None and request.content_length > config.max_body:
            return too_large()
        try:
            body = await request.get_data(cache=False)
        except Exception:  # werkzeug's RequestEntityTooLarge and friends: never a 500
            return too_large()
        conn = Connection(authorized=bearer_ok(request.headers.get("Authorization")))
        methods = public_methods(
            a.service, a.sessions, a.registry, conn, api_token=config.api_token
        )
        reply = await rpc.dispatch(methods, body, max_size=config.max_body)
        if reply is None:
            return Response("", 204)
        return Response(reply, 200, mimetype=JSON)

    def too_large() -> Response:
        body = {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": rpc.InvalidRequest.code,
                "message": f"request body larger than {config.max_body} bytes",
            },
        }
        # The body is left unread: a client reusing the connection would hang on it.
        return Response(json.dumps(body), 413, mimetype=JSON, headers={"Connection": "close"})

    @app.websocket("/ws")
    async def ws_public():
        conn = Connection(authorized=bearer_ok(websocket.headers.get("Authorization")))
        methods = public_methods(
            a.service, a.sessions, a.registry, conn, api_token=config.api_token
        )
        stream = rpc.QuartWebSocketStream(websocket._get_current_object())
        try:
            async with rpc.open_peer(
                stream, methods, max_message_size=config.max_body, name="ws"
            ) as peer:
                conn.peer = peer
                async with a.hub.subscribe() as sub, trio.open_nursery() as nursery:

                    async def forward_events() -> None:
                        async for method, params in sub:
                            if not conn.subscribed:
                                continue
                            try:
                                await peer.notify(method, params)
                            # Not expected (a task lists 1000 files at most); never fatal.
                            except rpc.MessageTooLarge as exc:
                                log.warning("event not sent to a /ws subscriber: %s", exc)
                            except rpc.LinkClosed:
                                return  # the client left; the handler is ending
                        # The hub dropped us for being slow: the page reconnects and re-lists.
                        await websocket.close(1013, "too slow to follow events; reconnect")
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(forward_events)
                    await peer.wait_closed()
                    nursery.cancel_scope.cancel()
        finally:
            with trio.move_on_after(5) as cleanup:
                cleanup.shield = True
                await a.sessions.owner_gone(conn.key)

    @app.websocket("/worker")
    async def ws_worker():
        stream = rpc.QuartWebSocketStream(websocket._get_current_object())
        await a.registry.serve_worker(
            stream,
            lambda worker_id: worker_methods(a.service, a.sessions, worker_id),
        )

    return app


async def serve(
    config: Config,
    *,
    shutdown_trigger=None,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Run A until `shutdown_trigger` returns (or forever); reports `(service, urls)`."""
    hc = hypercorn.config.Config()
    hc.bind = [config.listen]
    hc.websocket_max_message_size = config.max_body * 2
    hc.graceful_timeout = 1  # seconds; idle browser keep-alives would hold A that long
    hc.keep_alive_timeout = 5
    hc.websocket_ping_interval = 20  # seconds: keeps /ws and /worker open through proxies
    hc.accesslog = None
    async with open_service(config) as a, trio.open_nursery() as nursery:
        urls = await nursery.start(
            partial(hypercorn.trio.serve, a.app, hc, shutdown_trigger=shutdown_trigger)
        )
        log.info("A listening on %s", ", ".join(urls))
        task_status.started((a, urls))


__all__ = ["ServiceA", "create_app", "errors", "open_service", "serve", "static_dir"]
