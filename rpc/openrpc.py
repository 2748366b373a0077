"""An OpenRPC 1.2.6 document built from a Methods registry (served as `rpc.discover`)."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from . import _types

if TYPE_CHECKING:
    from ._methods import Method, Methods

OPENRPC_VERSION = "1.2.6"


def document(methods: Methods, *, title: str, version: str) -> dict[str, Any]:
    """The OpenRPC document: every method with its summary, params and result schemas."""
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": version},
        "methods": [describe_method(method) for method in methods],
    }


def describe_method(method: Method) -> dict[str, Any]:
    """One OpenRPC Method Object."""
    params = []
    by_name_only = False
    for param in method.signature.parameters.values():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        by_name_only |= param.kind is inspect.Parameter.KEYWORD_ONLY
        descriptor: dict[str, Any] = {
            "name": param.name,
            "required": param.default is inspect.Parameter.empty,
            "schema": _types.schema(param.annotation),
        }
        if param.default is not inspect.Parameter.empty and _is_json(param.default):
            descriptor["schema"] = {**descriptor["schema"], "default": param.default}
        params.append(descriptor)
    described: dict[str, Any] = {"name": method.name}
    if method.summary:
        described["summary"] = method.summary
    if method.description:
        described["description"] = method.description
    described["params"] = params
    if by_name_only:
        described["paramStructure"] = "by-name"
    described["result"] = {
        "name": "result",
        "schema": _types.schema(method.signature.return_annotation),
    }
    return described


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False
