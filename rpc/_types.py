"""What a handler's annotations mean on the wire: value checks and JSON schemas.

One reading of the annotations serves both the param check (before a handler runs) and the
OpenRPC document, so the two cannot drift apart. Supported: str, int, float, bool, None, list,
dict, Any/object, `X | None`, `Optional[X]`, unions, `list[X]`, `dict[str, X]`, `Literal[...]`.
Anything else is not checked and gets an empty (accept anything) schema.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

_SCALARS: dict[Any, tuple[str, str]] = {
    # annotation: (JSON schema type, "must be ..." phrase)
    str: ("string", "a string"),
    int: ("integer", "an integer"),
    float: ("number", "a number"),
    bool: ("boolean", "a boolean"),
    type(None): ("null", "null"),
    list: ("array", "a list"),
    dict: ("object", "an object"),
}


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _matches_scalar(value: Any, annotation: Any) -> bool:
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, annotation)


def describe(annotation: Any) -> str | None:
    """The phrase after "must be" for this annotation, or None when it is not checked."""
    if annotation in _SCALARS:
        return _SCALARS[annotation][1]
    if _is_union(annotation):
        parts = [describe(arg) for arg in typing.get_args(annotation)]
        if None in parts:
            return None
        return " or ".join(typing.cast(list[str], parts))
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        inner = describe(item)
        return "a list" if inner is None else f"a list of {_plural(inner)}"
    if origin is dict:
        return "an object"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    return None


def _plural(phrase: str) -> str:
    for article in ("an ", "a "):
        if phrase.startswith(article):
            return phrase[len(article) :] + "s"
    return phrase


def problem(value: Any, annotation: Any, where: str) -> str | None:
    """Why `value` does not fit `annotation` ("param 'id' must be a string"), or None if it does."""
    if annotation is inspect.Parameter.empty or annotation is Any or annotation is object:
        return None
    if annotation in _SCALARS:
        ok = _matches_scalar(value, annotation)
        return None if ok else f"{where} must be {_SCALARS[annotation][1]}"
    if _is_union(annotation):
        args = typing.get_args(annotation)
        problems = [problem(value, arg, where) for arg in args]
        if None in problems:
            return None
        # A value of the right kind with a bad item inside: say which item.
        nested = [p for p in problems if p and not p.startswith(f"{where} must be ")]
        if len(nested) == 1:
            return nested[0]
        return f"{where} must be {describe(annotation)}"  # every member is checked here
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list:
        if not isinstance(value, list):
            return f"{where} must be {describe(annotation)}"
        item_type = args[0] if args else Any
        for index, item in enumerate(value):
            found = problem(item, item_type, f"{where} item {index}")
            if found:
                return found
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return f"{where} must be an object"
        value_type = args[1] if len(args) == 2 else Any
        for key, item in value.items():
            found = problem(item, value_type, f"{where} key {key!r}")
            if found:
                return found
        return None
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if any(value == v and type(value) is type(v) for v in allowed):
            return None
        return f"{where} must be {describe(annotation)}"
    return None  # not an annotation we understand: the handler checks it itself


def schema(annotation: Any) -> dict[str, Any]:
    """A JSON schema for an annotation ({} when anything goes)."""
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation][0]}
    if _is_union(annotation):
        return {"anyOf": [schema(arg) for arg in typing.get_args(annotation)]}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list:
        return {"type": "array", "items": schema(args[0])} if args else {"type": "array"}
    if origin is dict:
        if len(args) == 2:
            return {"type": "object", "additionalProperties": schema(args[1])}
        return {"type": "object"}
    if origin is typing.Literal:
        return {"enum": list(args)}
    return {}
