"""The JSON response every Loom handler returns: Starlette's, rendered by orjson."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse

__all__ = ["JSON"]


class JSON(JSONResponse):
    """Same bytes as Starlette's compact ``JSONResponse`` for Loom's bodies (UTF-8, no
    spaces), several times faster to render (a 5,000-change list, every claim). Anything
    orjson will not encode as such (integers beyond 64 bits, non-string keys, NaN) takes
    Starlette's own path, which keeps its behaviour for them (NaN is refused)."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except (TypeError, orjson.JSONEncodeError):
            return super().render(content)
