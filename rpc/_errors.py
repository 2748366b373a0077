"""Exceptions raised by the rpc package.

    Error                     root: `except rpc.Error` catches everything below
    ├── RPCError              a JSON-RPC error object: `code`, `message`, `data`
    │   ├── ParseError        -32700  the text is not JSON
    │   ├── InvalidRequest    -32600  JSON, but not a JSON-RPC 2.0 request
    │   ├── MethodNotFound    -32601  no such method
    │   ├── InvalidParams     -32602  params do not fit the method
    │   ├── InternalError     -32603  the handler failed (details stay in our log)
    │   ├── ApplicationError  -32000..-32099, chosen by the application
    │   └── RemoteError       the other side answered a call with an error
    ├── LinkClosed            the link dropped, or was closed, before the answer came
    ├── CallTimeout           no answer within the peer's call deadline
    └── MessageTooLarge       an outgoing message is above the size limit

A handler raising any `RPCError` produces that error response; any other exception becomes
-32603 "internal error" (logged with its traceback, never sent).
"""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
APPLICATION_CODES = range(-32099, -32000 + 1)  # reserved for implementation-defined errors


class Error(Exception):
    """Root of every exception the rpc package raises."""


class RPCError(Error):
    """A JSON-RPC error: `code` and `message` are class attributes, `data` is optional."""

    code: int = INTERNAL_ERROR
    message: str = "internal error"

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        if message is not None:
            self.message = message
        self.data = data
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-RPC error object (`data` only when there is some)."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r})"


class ParseError(RPCError):
    code = PARSE_ERROR
    message = "parse error"


class InvalidRequest(RPCError):
    code = INVALID_REQUEST
    message = "invalid request"


class MethodNotFound(RPCError):
    code = METHOD_NOT_FOUND
    message = "method not found"


class InvalidParams(RPCError):
    code = INVALID_PARAMS
    message = "invalid params"


class InternalError(RPCError):
    code = INTERNAL_ERROR
    message = "internal error"


class ApplicationError(RPCError):
    """An application error with a code in -32000..-32099 (see docs/architecture.md)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        assert code in APPLICATION_CODES, f"application error codes are -32099..-32000: {code}"
        self.code = code
        super().__init__(message, data)


class RemoteError(RPCError):
    """The other side answered our call with this error (any code, as received)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = code
        super().__init__(message, data)


class LinkClosed(Error):
    """The link is closed: the call was not sent, or its answer will never come."""


class CallTimeout(Error):
    """The other side did not answer a call within the peer's call deadline."""


class MessageTooLarge(Error):
    """An outgoing message is larger than the peer's max_message_size."""
