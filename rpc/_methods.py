"""The method registry: names to async handlers, params checked before a handler runs."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, overload

from . import _types
from ._errors import InternalError, InvalidParams, MethodNotFound, RPCError

logger = logging.getLogger("rpc")

Handler = Callable[..., Awaitable[Any]]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_POSITIONAL_ONLY = inspect.Parameter.POSITIONAL_ONLY


@dataclass(frozen=True)
class Method:
    """One registered method: its handler, signature and the docstring's summary."""

    name: str
    fn: Handler
    signature: inspect.Signature
    summary: str
    description: str

    def bind(self, params: list[Any] | dict[str, Any] | None) -> inspect.BoundArguments:
        """Fit JSON-RPC params to the handler's signature, or raise InvalidParams saying why."""
        parameters = self.signature.parameters
        kinds = {p.kind for p in parameters.values()}
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        if isinstance(params, list):
            args = params
            positional = [p for p in parameters.values() if p.kind in _POSITIONAL]
            if len(args) > len(positional) and inspect.Parameter.VAR_POSITIONAL not in kinds:
                raise InvalidParams(
                    f"too many params: {self.name!r} takes at most {len(positional)}, "
                    f"got {len(args)}"
                )
            given = {p.name for p in positional[: len(args)]}
        elif isinstance(params, dict):
            kwargs = params
            if inspect.Parameter.VAR_KEYWORD not in kinds:
                for key in params:
                    param = parameters.get(key)
                    if param is None or param.kind in _VARIADIC or param.kind is _POSITIONAL_ONLY:
                        raise InvalidParams(f"unknown param {key!r}")
            given = set(params)
        elif params is None:
            given = set()
        else:
            raise InvalidParams("params must be an array or an object")
        missing = [
            p.name
            for p in parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind not in _VARIADIC
            and p.name not in given
        ]
        if missing:
            s = "s" if len(missing) > 1 else ""
            raise InvalidParams(f"missing required param{s} " + ", ".join(map(repr, missing)))
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:  # a shape the checks above did not foresee
            raise InvalidParams(f"params do not fit {self.name!r}: {exc}") from None
        for name, value in bound.arguments.items():
            param = parameters[name]
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                first = len(args) - len(value)  # index of the first extra positional param
                checks = [(f"param {first + i}", v) for i, v in enumerate(value)]
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                checks = [(f"param {key!r}", v) for key, v in value.items()]
            else:
                checks = [(f"param {name!r}", value)]
            for where, item in checks:
                found = _types.problem(item, param.annotation, where)
                if found:
                    raise InvalidParams(found)
        return bound


class Methods:
    """A registry of JSON-RPC methods.

    >>> methods = Methods()
    >>> @methods.add(name="task.add")
    ... async def add(magnet: str) -> dict:
    ...     "Add a magnet link."
    """

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    @overload
    def add(self, fn: Handler, *, name: str | None = None) -> Handler: ...
    @overload
    def add(self, fn: None = None, *, name: str | None = None) -> Callable[[Handler], Handler]: ...

    def add(self, fn: Handler | None = None, *, name: str | None = None) -> Any:
        """Register an async handler (as a decorator, with or without `name=`, or a call)."""
        if fn is None:
            return lambda f: self.add(f, name=name)
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"a JSON-RPC handler must be an async function: {fn!r}")
        name = name or fn.__name__
        if name in self._methods:
            raise ValueError(f"method {name!r} is already registered")
        doc = inspect.getdoc(fn) or ""
        summary, _, description = doc.partition("\n")
        self._methods[name] = Method(
            name=name,
            fn=fn,
            signature=inspect.signature(fn, eval_str=True),
            summary=summary.strip(),
            description=description.strip(),
        )
        return fn

    def add_discover(self, title: str, version: str) -> None:
        """Register `rpc.discover`, answering the OpenRPC document of this registry."""
        from .openrpc import document

        async def discover() -> dict:
            """The OpenRPC document describing every method of this service."""
            return document(self, title=title, version=version)

        self.add(discover, name="rpc.discover")

    def names(self) -> list[str]:
        return sorted(self._methods)

    def get(self, name: str) -> Method:
        try:
            return self._methods[name]
        except KeyError:
            raise MethodNotFound(f"method not found: {name!r}") from None

    def merge(self, other: Methods) -> None:
        """Add every method of `other` (a name registered in both is an error)."""
        for method in other:
            if method.name in self._methods:
                raise ValueError(f"method {method.name!r} is already registered")
        self._methods.update(other._methods)

    def copy(self) -> Methods:
        new = Methods()
        new._methods = dict(self._methods)
        return new

    def __iter__(self) -> Iterator[Method]:
        return iter(self._methods[name] for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    def __len__(self) -> int:
        return len(self._methods)

    async def invoke(self, name: str, params: list[Any] | dict[str, Any] | None) -> Any:
        """Run a method. Every failure comes out as an RPCError; Cancelled passes through.

        An unexpected exception is logged with its traceback and becomes -32603
        "internal error", so the caller never sees our internals.
        """
        method = self.get(name)
        bound = method.bind(params)
        try:
            return await method.fn(*bound.args, **bound.kwargs)
        except RPCError:
            raise
        except Exception as exc:
            single = _single_rpc_error(exc)
            if single is not None:
                raise single from None
            logger.exception("method %r failed", name)
            raise InternalError() from None


def _single_rpc_error(exc: Exception) -> RPCError | None:
    """The RPCError inside an ExceptionGroup holding nothing else (a handler's nursery)."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, RPCError) else None
