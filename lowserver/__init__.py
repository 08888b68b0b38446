"""lowserver: aiohttp's low-level HTTP/1.1 + WebSocket server, rebuilt in pure Python.

Hand-written (not generated). Public names are re-exported lazily through a module
``__getattr__``: ``import lowserver`` costs nothing, and using the stage-01 parser does not load
the server. ``from lowserver import web`` gives the same names under aiohttp's spelling.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it (modules are stage-by-stage: README.md, "Layout")
_EXPORTS: dict[str, str] = {}


def _register(module: str, *names: str) -> None:
    for name in names:
        _EXPORTS[name] = module


_register("http_parser", "HttpRequestParser", "RawRequestMessage", "HttpVersion",
          "HttpVersion10", "HttpVersion11", "EndOfMessage", "EndOfChunk", "END_OF_CHUNK",
          "HttpProcessingError",
          "BadHttpMessage", "BadStatusLine", "BadHttpMethod", "InvalidHeader", "InvalidURLError", "LineTooLong",
          "HeaderFieldsTooLarge", "TransferEncodingError", "ContentLengthError",
          "UnsupportedTransferCoding", "HttpVersionNotSupported")
_register("streams", "StreamReader", "EMPTY_PAYLOAD", "EofStream")
_register("body_writer", "StreamWriter")
_register("fields", "ETag")
_register("state", "RequestKey", "ResponseKey", "NotAppKeyWarning")
_register("request", "BaseRequest")
_register("multipart", "FileField", "MultipartReader", "BodyPartReader")
_register("stream_response", "StreamResponse", "ContentCoding")
_register("response", "Response", "json_response", "json_bytes_response")
_register("websocket_frames", "WSMsgType", "WSMessage", "WSCloseCode", "WebSocketError")
_register("websocket", "WebSocketResponse", "WebSocketReady", "WSMessageTypeError")
_register("server", "Server", "RequestHandler", "RequestPayloadError", "PayloadAccessError")
_register("runner", "BaseRunner", "ServerRunner", "BaseSite", "TCPSite", "UnixSite", "SockSite",
          "GracefulExit")
_register("access_log", "AbstractAccessLogger", "AccessLogger")
_register("serving", "run_app")  # stage 08: aiohttp's web.run_app
_register("file_response", "FileResponse")


def _public_names() -> list[str]:
    """Every public name: the registered ones and stage 03's HTTPException family (whose
    list is read from that module, so asking for ``__all__`` imports it)."""
    from lowserver.exceptions import __all__ as http_exceptions
    return sorted(set(_EXPORTS) | {name for name in http_exceptions if name.startswith("HTTP")})


def __getattr__(name: str) -> Any:
    if name == "__all__":   # computed on first use, so that `import lowserver` stays cheap
        value = globals()["__all__"] = _public_names()
        return value
    module = _EXPORTS.get(name)
    if module is None and name.startswith("HTTP"):
        module = "exceptions"  # the whole HTTPException family lives in stage 03
    if module is None:
        raise AttributeError(f"module 'lowserver' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lowserver.{module}"), name)
    globals()[name] = value  # cache: the next access is a plain attribute read
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
