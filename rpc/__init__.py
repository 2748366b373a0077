"""JSON-RPC 2.0: a sans-io core (`Connection`), a method registry, and a trio Peer.

methods = rpc.Methods()

@methods.add(name="task.get")
async def get(id: str) -> dict:
    "One task."

async with rpc.open_peer(rpc.TrioWebSocketStream(ws), methods) as peer:
    await peer.call("worker.hello", {...})

reply = await rpc.dispatch(methods, body)   # HTTP POST /rpc; None means 204
"""

from ._core import Connection as Connection
from ._core import ErrorResponse as ErrorResponse
from ._core import Notification as Notification
from ._core import Received as Received
from ._core import Request as Request
from ._core import Response as Response
from ._core import encoded_size as encoded_size
from ._errors import ApplicationError as ApplicationError
from ._errors import CallTimeout as CallTimeout
from ._errors import Error as Error
from ._errors import InternalError as InternalError
from ._errors import InvalidParams as InvalidParams
from ._errors import InvalidRequest as InvalidRequest
from ._errors import LinkClosed as LinkClosed
from ._errors import MessageTooLarge as MessageTooLarge
from ._errors import MethodNotFound as MethodNotFound
from ._errors import ParseError as ParseError
from ._errors import RemoteError as RemoteError
from ._errors import RPCError as RPCError
from ._methods import Method as Method
from ._methods import Methods as Methods
from ._peer import DEFAULT_MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE
from ._peer import Peer as Peer
from ._peer import current_peer as current_peer
from ._peer import dispatch as dispatch
from ._peer import open_peer as open_peer
from ._streams import MemoryMessageStream as MemoryMessageStream
from ._streams import MessageStream as MessageStream
from ._streams import QuartWebSocketStream as QuartWebSocketStream
from ._streams import TrioWebSocketStream as TrioWebSocketStream
from ._streams import memory_stream_pair as memory_stream_pair
from ._websocket import open_websocket as open_websocket
