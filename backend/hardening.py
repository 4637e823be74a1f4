"""Limits on what a request may carry, and the headers every answer carries.

* **Body size**: ``MAX_CONTENT_LENGTH`` (Flask's own setting, a default here, overridden by
  the environment). A request that *declares* a larger body is refused with 413 before any
  view runs and before its body is read; one that does not declare its length (chunked) is
  cut off by werkzeug at the same limit when it is read.
* **JSON depth**: the app's JSON loader refuses a document nested deeper than
  ``MAX_JSON_DEPTH`` before decoding it (Python's decoder recurses once per level: 1,000
  levels is a ``RecursionError``, not a parse error). The API answers 400 ``too_deep``.
* **Headers**: ``Strict-Transport-Security`` on every answer when ``PUBLIC_BASE_URL`` is
  https; the API's own headers (``no-store``, ``nosniff``) are set in :mod:`backend.api`,
  the pages' in :mod:`backend.dashboard.web`.

These are software limits (operating choices), not clinical numbers.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

from flask import Flask, Response, current_app, has_app_context, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge

#: One year, with sub-domains: the value browsers' preload lists ask for.
HSTS = "max-age=31536000; includeSubDomains"

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPENERS = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _OPENERS)


class JSONTooDeep(ValueError):
    """A JSON document nested deeper than the configured limit (never decoded)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the JSON body is nested too deep (more than {limit} levels)")
        self.limit = limit


def json_depth(document: str | bytes) -> int:
    """How deep arrays and objects nest in ``document`` (0 for a scalar), without decoding it.

    Brackets inside strings do not count. Linear in the size, and no recursion: it is
    safe on any input, valid JSON or not.
    """
    data = document.encode("utf-8", "surrogatepass") if isinstance(document, str) else document
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(_OPENERS[b] for b in brackets), default=0)


class DepthLimitedJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, refusing documents nested deeper than ``MAX_JSON_DEPTH``."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Decode ``s``; raise :class:`JSONTooDeep` (a ``ValueError``) when it nests too deep."""
        limit = current_app.config.get("MAX_JSON_DEPTH") if has_app_context() else None
        if limit is not None and json_depth(s) > limit:
            raise JSONTooDeep(limit)
        return super().loads(s, **kwargs)


def refuse_declared_oversize() -> None:
    """413 for a request whose declared body is larger than ``MAX_CONTENT_LENGTH`` (not read)."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge(f"the request body is larger than {limit} bytes")


def strict_transport_security(response: Response) -> Response:
    """Ask browsers to use https only, when the app is published over https."""
    if str(current_app.config.get("PUBLIC_BASE_URL", "")).lower().startswith("https://"):
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def init_app(app: Flask) -> None:
    """Install the depth-limited JSON loader, the size check and the HSTS header."""
    app.json = DepthLimitedJSONProvider(app)
    app.before_request(refuse_declared_oversize)
    app.after_request(strict_transport_security)
