"""The OpenRPC document built from a registry, and `rpc.discover`."""

import json
from typing import Literal

import rpc
from rpc.openrpc import document


def registry() -> rpc.Methods:
    methods = rpc.Methods()

    @methods.add(name="task.add")
    async def add(magnet: str, priority: int | None = None) -> dict:
        """Add a magnet link.

        A worker picks it up when one is free.
        """
        return {}

    @methods.add(name="task.list")
    async def list_tasks(*, state: Literal["waiting", "playable"] | None = None) -> list[dict]:
        """Every task, newest first."""
        return []

    @methods.add(name="task.raw")
    async def raw(anything, **extra):
        return None

    return methods


def test_document_describes_every_method() -> None:
    doc = document(registry(), title="TorrentM3U8 A", version="0.1.0")
    assert doc["openrpc"] == "1.2.6"
    assert doc["info"] == {"title": "TorrentM3U8 A", "version": "0.1.0"}
    by_name = {m["name"]: m for m in doc["methods"]}
    assert list(by_name) == ["task.add", "task.list", "task.raw"]

    add = by_name["task.add"]
    assert add["summary"] == "Add a magnet link."
    assert add["description"] == "A worker picks it up when one is free."
    assert add["params"] == [
        {"name": "magnet", "required": True, "schema": {"type": "string"}},
        {
            "name": "priority",
            "required": False,
            "schema": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        },
    ]
    assert add["result"] == {"name": "result", "schema": {"type": "object"}}
    assert "paramStructure" not in add  # by-position and by-name both work

    listing = by_name["task.list"]
    assert listing["paramStructure"] == "by-name"
    assert listing["params"][0]["schema"]["anyOf"][0] == {"enum": ["waiting", "playable"]}
    assert listing["result"]["schema"] == {"type": "array", "items": {"type": "object"}}

    raw = by_name["task.raw"]
    assert raw["params"] == [{"name": "anything", "required": True, "schema": {}}]
    assert raw["result"]["schema"] == {}
    assert "summary" not in raw
    json.dumps(doc)  # all of it is JSON


async def test_rpc_discover_answers_the_current_document() -> None:
    methods = registry()
    methods.add_discover("TorrentM3U8 A", "0.1.0")

    @methods.add(name="task.late")
    async def late() -> None:
        """Added after add_discover: still listed."""

    reply = json.loads(
        await rpc.dispatch(methods, '{"jsonrpc":"2.0","method":"rpc.discover","id":1}')
    )
    names = [m["name"] for m in reply["result"]["methods"]]
    assert names == ["rpc.discover", "task.add", "task.late", "task.list", "task.raw"]
