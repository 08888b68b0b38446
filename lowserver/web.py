"""``from lowserver import web`` reads like ``from aiohttp import web``.

Hand-written (not generated): every public name of the package, under one roof, resolved
lazily so that only the stages a program uses are imported.
"""
from __future__ import annotations

from typing import Any

import lowserver


def __getattr__(name: str) -> Any:
    # `__all__` too: lowserver's, computed on first use (`from lowserver.web import *`)
    value = getattr(lowserver, name)
    globals()[name] = value  # cache: `web.Response` in a handler is then a plain attribute read
    return value


def __dir__() -> list[str]:
    return dir(lowserver)
