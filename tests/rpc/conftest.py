import json
from typing import Any

import pytest

import rpc

RESPONSE_KEYS = {"jsonrpc", "id", "result", "error"}


def assert_response_object(obj: Any) -> None:
    """One JSON-RPC 2.0 response object, as the spec shapes it."""
    assert isinstance(obj, dict), obj
    assert set(obj) <= RESPONSE_KEYS, obj
    assert obj["jsonrpc"] == "2.0"
    assert "id" in obj
    assert obj["id"] is None or isinstance(obj["id"], str | int | float)
    assert ("result" in obj) != ("error" in obj), obj
    if "error" in obj:
        error = obj["error"]
        assert set(error) <= {"code", "message", "data"}
        assert isinstance(error["code"], int)
        assert isinstance(error["message"], str)
        assert error["message"]


def assert_spec_shaped(reply: str | None) -> None:
    """None (no reply), a response object, or a non-empty array of response objects."""
    if reply is None:
        return
    parsed = json.loads(reply)
    if isinstance(parsed, list):
        assert parsed, "an empty array is never a reply"
        for obj in parsed:
            assert_response_object(obj)
    else:
        assert_response_object(parsed)


@pytest.fixture(scope="session")
def spec_shaped():
    """assert_spec_shaped(reply): session-scoped, so hypothesis tests can take it."""
    return assert_spec_shaped


@pytest.fixture
def spec_methods() -> rpc.Methods:
    """The methods the JSON-RPC 2.0 specification's examples call."""
    methods = rpc.Methods()

    @methods.add
    async def subtract(minuend: int, subtrahend: int) -> int:
        """Subtract subtrahend from minuend."""
        return minuend - subtrahend

    @methods.add(name="sum")
    async def add_up(*numbers: int) -> int:
        """Add numbers."""
        return sum(numbers)

    @methods.add
    async def get_data() -> list:
        return ["hello", 5]

    @methods.add
    async def update(*values: int) -> None:
        return None

    @methods.add
    async def notify_hello(*values: int) -> None:
        return None

    @methods.add
    async def notify_sum(*values: int) -> None:
        return None

    return methods
