"""JSON-RPC 2.0 without I/O: text in, events out; calls and replies in, text out.

`Connection.receive(data)` turns one received message into `Request`, `Notification`,
`Response` and `ErrorResponse` events, plus the text of any error the core answers by itself
(parse errors, invalid requests, oversized requests). The caller runs each `Request` however it
likes, then hands the outcome to `Connection.reply()` / `reply_error()`, which return the text to
send (for a batch: once its last request is answered). Nothing here raises on what it receives.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ._errors import InternalError, InvalidRequest, MessageTooLarge, ParseError, RPCError

logger = logging.getLogger("rpc")

Id = str | int | float | None
Params = list[Any] | dict[str, Any] | None


@dataclass(eq=False)
class _Batch:
    """Replies of one incoming batch, in element order; None marks a request still running."""

    slots: list[str | None]
    waiting: int = 0


@dataclass(frozen=True)
class Request:
    """A call from the other side: answer it with `Connection.reply` or `reply_error`."""

    id: Id
    method: str
    params: Params
    batch: _Batch | None = field(default=None, repr=False, compare=False)
    slot: int = field(default=0, repr=False, compare=False)


@dataclass(frozen=True)
class Notification:
    """A call from the other side that wants no answer."""

    method: str
    params: Params


@dataclass(frozen=True)
class Response:
    """The result of one of our calls."""

    id: Id
    result: Any


@dataclass(frozen=True)
class ErrorResponse:
    """The other side's error for one of our calls (id None: it could not read a message)."""

    id: Id
    code: int
    message: str
    data: Any = None


Event = Request | Notification | Response | ErrorResponse


@dataclass(frozen=True)
class Received:
    """What one received message means: events to act on, and an answer to send right away."""

    events: list[Event]
    reply: str | None = None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number out of range: {text[:20]}")
    return number


_SURROGATE = re.compile("[\ud800-\udfff]")
ERROR_MESSAGE_CUT = 200  # characters of an error message kept when its reply is too large


def _has_surrogate(value: Any) -> bool:
    """True if a string anywhere in `value` holds a lone surrogate (a `\\ud800` escape)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
    return False


def _loads(data: bytes | str) -> Any:
    """Parse strict JSON: UTF-8 only, no NaN/Infinity, no numbers that overflow to inf, no
    lone surrogate escapes (they cannot be encoded back to UTF-8: sqlite and every reply
    echoing them would fail)."""
    if not isinstance(data, str):
        data = bytes(data).decode("utf-8")
    message = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    if ("\\u" in data or not data.isascii()) and _has_surrogate(message):
        raise ValueError("a \\ud800-\\udfff escape without its pair is not Unicode text")
    return message


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def encoded_size(value: Any) -> int:
    """Bytes `value` takes inside a message, as this package encodes it: what counts against
    `max_message_size`."""
    return _size(_dumps(value))


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def _error_text(error: RPCError, id: Id) -> str:
    return _dumps({"jsonrpc": "2.0", "error": error.to_dict(), "id": id})


class Connection:
    """One side of a JSON-RPC 2.0 conversation.

    `accept_responses=False` is for servers that only answer (HTTP POST): a response object
    received there is an invalid request. `max_message_size` (bytes, UTF-8) applies both ways.
    """

    def __init__(self, *, max_message_size: int | None = None, accept_responses: bool = True):
        self.max_message_size = max_message_size
        self.accept_responses = accept_responses
        self._ids = itertools.count(1)
        self._pending: set[Id] = set()

    # -- what we send ------------------------------------------------------------------------

    def call(self, method: str, params: Params = None) -> tuple[int, str]:
        """Start a call: returns its id (to match the response) and the text to send."""
        id = next(self._ids)
        text = self._encode_outgoing(method, params, id)
        self._pending.add(id)
        return id, text

    def notify(self, method: str, params: Params = None) -> str:
        """The text of a notification."""
        return self._encode_outgoing(method, params, None)

    def forget(self, id: Id) -> None:
        """Stop waiting for a call's response (timed out or abandoned): a late one is dropped."""
        self._pending.discard(id)

    @property
    def pending(self) -> frozenset[Id]:
        return frozenset(self._pending)

    def _encode_outgoing(self, method: str, params: Params, id: int | None) -> str:
        if not isinstance(params, list | dict | type(None)):
            raise TypeError(f"params must be a list, a dict or None, not {type(params).__name__}")
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if id is not None:
            message["id"] = id
        text = _dumps(message)
        if self.max_message_size is not None and (size := _size(text)) > self.max_message_size:
            raise MessageTooLarge(
                f"{method!r} message is {size} bytes, above the limit of "
                f"{self.max_message_size} bytes"
            )
        return text

    # -- answering requests ------------------------------------------------------------------

    def reply(self, request: Request, result: Any) -> str | None:
        """Answer a request with a result; returns the text to send now, if any."""
        try:
            text = _dumps({"jsonrpc": "2.0", "result": result, "id": request.id})
        except (TypeError, ValueError, RecursionError):
            logger.exception("result of %r is not JSON", request.method)
            text = _error_text(InternalError(), request.id)
        if self.max_message_size is not None and (size := _size(text)) > self.max_message_size:
            logger.error("result of %r is too large: %d bytes", request.method, size)
            too_large = InternalError(
                f"result too large: {size} bytes, above the limit of {self.max_message_size}"
            )
            text = _error_text(too_large, request.id)
        return self._complete(request, text)

    def reply_error(self, request: Request, error: RPCError) -> str | None:
        """Answer a request with an error; returns the text to send now, if any."""
        try:
            text = _error_text(error, request.id)
        except (TypeError, ValueError, RecursionError):
            logger.exception("error data of %r is not JSON: sent without it", request.method)
            text = self._bare_error_text(error, request.id)
        if self.max_message_size is not None and _size(text) > self.max_message_size:
            # A message echoing a huge input (a 1 MB method name): keep the limit both ways.
            text = self._bare_error_text(error, request.id, cut=ERROR_MESSAGE_CUT)
        return self._complete(request, text)

    @staticmethod
    def _bare_error_text(error: RPCError, id: Id, *, cut: int | None = None) -> str:
        message = str(error.message)
        if cut is not None and len(message) > cut:
            message = message[:cut] + "..."
        return _dumps(
            {"jsonrpc": "2.0", "error": {"code": error.code, "message": message}, "id": id}
        )

    def _complete(self, request: Request, text: str) -> str | None:
        batch = request.batch
        if batch is None:
            return text
        assert batch.slots[request.slot] is None, "request answered twice"
        batch.slots[request.slot] = text
        batch.waiting -= 1
        return self._batch_text(batch) if batch.waiting == 0 else None

    def _batch_text(self, batch: _Batch) -> str | None:
        parts = [slot for slot in batch.slots if slot is not None]
        if not parts:
            return None
        text = "[" + ",".join(parts) + "]"
        if self.max_message_size is not None and (size := _size(text)) > self.max_message_size:
            logger.error("batch reply too large: %d bytes", size)
            too_large = InternalError(f"batch reply too large: {size} bytes")
            return _error_text(too_large, None)
        return text

    # -- what we receive ---------------------------------------------------------------------

    def receive(self, data: bytes | str) -> Received:
        """Read one received message. Never raises on bad input: it answers or drops it."""
        size = len(data) if not isinstance(data, str) else _size(data)
        try:
            message = _loads(data)
        except (ValueError, RecursionError) as exc:
            detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            return Received([], _error_text(ParseError(f"parse error: {detail}"), None))
        if self.max_message_size is not None and size > self.max_message_size:
            return self._refuse_oversized(message, size)
        if isinstance(message, list):
            return self._receive_batch(message)
        found = self._read(message)
        if isinstance(found, str):
            return Received([], found)
        return Received([found] if found is not None else [])

    def _receive_batch(self, elements: list[Any]) -> Received:
        if not elements:
            return Received([], _error_text(InvalidRequest("invalid request: empty batch"), None))
        batch = _Batch(slots=[])
        events: list[Event] = []
        for element in elements:
            found = self._read(element)
            if isinstance(found, str):
                batch.slots.append(found)
            elif isinstance(found, Request):
                events.append(
                    Request(found.id, found.method, found.params, batch, len(batch.slots))
                )
                batch.slots.append(None)
                batch.waiting += 1
            elif found is not None:
                events.append(found)
        reply = self._batch_text(batch) if batch.waiting == 0 else None
        return Received(events, reply)

    def _read(self, obj: Any) -> Event | str | None:
        """One message (or batch element): an event, the text of an error reply, or None."""
        if not isinstance(obj, dict):
            return _error_text(InvalidRequest("invalid request: not an object"), None)
        id = obj.get("id")
        reply_id = id if _valid_id(id) else None
        if "method" in obj:
            problem = None
            if obj.get("jsonrpc") != "2.0":
                problem = 'jsonrpc must be "2.0"'
            elif not isinstance(obj["method"], str):
                problem = "method must be a string"
            elif not isinstance(obj.get("params", []), list | dict):
                problem = "params must be an array or an object"
            elif not _valid_id(id):
                problem = "id must be a string, a number or null"
            if problem:
                return _error_text(InvalidRequest(f"invalid request: {problem}"), reply_id)
            if "id" not in obj:
                return Notification(obj["method"], obj.get("params"))
            return Request(id, obj["method"], obj.get("params"))
        if self.accept_responses and "id" in obj and ("result" in obj or "error" in obj):
            return self._read_response(obj)
        return _error_text(InvalidRequest("invalid request: no method"), reply_id)

    def _read_response(self, obj: dict[str, Any]) -> Event | None:
        id = obj["id"]
        error = obj.get("error")
        well_formed = (
            obj.get("jsonrpc") == "2.0"
            and ("result" in obj) != ("error" in obj)
            and (
                error is None
                or (
                    isinstance(error, dict)
                    and isinstance(error.get("code"), int)
                    and not isinstance(error.get("code"), bool)
                    and isinstance(error.get("message"), str)
                )
            )
        )
        if not well_formed:
            logger.warning("dropped a malformed response: %.200r", obj)
            return None
        if id is not None:
            if not _valid_id(id) or id not in self._pending:
                logger.debug("dropped a response nobody waits for (late?): id %.50r", id)
                return None
            self._pending.discard(id)
        elif "error" not in obj:
            logger.warning("dropped a result with id null")
            return None
        if "error" in obj:
            return ErrorResponse(id, error["code"], error["message"], error.get("data"))
        return Response(id, obj["result"])

    def _refuse_oversized(self, message: Any, size: int) -> Received:
        """Answer an oversized request (when it has an id), fail an oversized response."""
        limit = self.max_message_size
        logger.warning("refused a message of %d bytes (limit %d)", size, limit)
        refusal = InvalidRequest(f"message too large: {size} bytes, above the limit of {limit}")
        if isinstance(message, list):
            wants_reply = any(isinstance(m, dict) and "method" in m and "id" in m for m in message)
            return Received([], _error_text(refusal, None) if wants_reply else None)
        if not isinstance(message, dict) or not _valid_id(message.get("id")):
            return Received([])
        id = message.get("id")
        if "method" in message:
            return Received([], _error_text(refusal, id) if "id" in message else None)
        if id is not None and id in self._pending:
            self._pending.discard(id)
            refusal = InvalidRequest(
                f"response too large: {size} bytes, above the limit of {limit}"
            )
            return Received([ErrorResponse(id, refusal.code, refusal.message)])
        return Received([])
