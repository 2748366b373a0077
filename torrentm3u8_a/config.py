"""Service A's settings. Every one has a command-line flag and an environment variable
(`torrentm3u8-a --help` lists both); tests build a `Config` directly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

HEARTBEAT_INTERVAL = 5.0  # seconds between A's pings to a worker
LIVENESS_TIMEOUT = 15.0  # seconds of silence before a worker counts as disconnected
STREAM_SESSION_TTL = 6 * 3600.0  # seconds a stream session may live
STREAM_SETUP_TIMEOUT = 60.0  # seconds between stream.open and the offer
MAX_BODY = 1 << 20  # bytes: the largest JSON-RPC request (HTTP body or websocket message)


@dataclasses.dataclass
class Config:
    data_dir: Path
    listen: str = "127.0.0.1:8080"
    worker_token: str = ""
    api_token: str | None = None
    ice_servers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    loopback_only: bool = False
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    liveness_timeout: float = LIVENESS_TIMEOUT
    stream_ttl: float = STREAM_SESSION_TTL
    stream_setup_timeout: float = STREAM_SETUP_TIMEOUT
    max_body: int = MAX_BODY
    ice_transport_policy: str = "all"  # "relay" forces TURN (tests, strict networks)

    @property
    def db_path(self) -> Path:
        return Path(self.data_dir) / "torrentm3u8.sqlite3"


def parse_ice_server(text: str) -> dict[str, Any]:
    """Parse one `--ice-server` value.

    Accepts a JSON object (`{"urls": "turn:host:3478", "username": "u", "credential": "p"}`)
    or a URL with credentials in it: `turn:user:pass@host:3478?transport=udp`,
    `stun:stun.example.org:3478`.
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            server = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"--ice-server is not valid JSON: {exc}") from None
        if not isinstance(server, dict) or "urls" not in server:
            raise ValueError('--ice-server JSON needs "urls"')
        return server
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in ("stun", "stuns", "turn", "turns"):
        raise ValueError(
            f"--ice-server {text!r}: expected stun:HOST[:PORT] or turn:USER:PASS@HOST[:PORT]"
        )
    server: dict[str, Any] = {}
    if "@" in rest:
        creds, rest = rest.rsplit("@", 1)
        user, _, password = creds.partition(":")
        server["username"] = unquote(user)
        server["credential"] = unquote(password)
    server["urls"] = f"{scheme}:{rest}"
    query = parse_qs(urlsplit(f"x://{rest}").query)
    if "transport" in query and query["transport"][0] not in ("udp", "tcp"):
        raise ValueError(f"--ice-server {text!r}: transport must be udp or tcp")
    return server
