"""Graph API answers: error bodies shaped like Meta's (docs/meta-api.md#errors), JSON responses."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
# is_transient for an injected error whose rule does not say.
TRANSIENT_CODES = frozenset({1, 2, 341}) | THROTTLE_CODES

_MESSAGES: dict[int, str] = {
    1: "An unknown error occurred",
    2: "Service temporarily unavailable",
    3: "Application does not have the capability to make this API call.",
    4: "Application request limit reached",
    10: "Application does not have permission for this action",
    17: "User request limit reached",
    32: "Page request limit reached",
    100: "Invalid parameter",
    102: "Session key invalid or no longer valid",
    190: "Invalid OAuth access token - Cannot parse access token",
    341: "Application limit reached",
    368: "The action attempted has been deemed abusive or is otherwise disallowed",
    613: "Calls to this api have exceeded the rate limit.",
}


def default_message(code: int) -> str:
    if code in _MESSAGES:
        return _MESSAGES[code]
    if 80000 <= code <= 80014:
        return "There have been too many calls from this ad-account. Wait a bit and try again."
    if 200 <= code <= 299:
        return "Permissions error"
    return "An unknown error occurred"


def new_fbtrace_id() -> str:
    return secrets.token_urlsafe(17)


@dataclass(frozen=True)
class GraphError:
    """One error answer: the body fields, the HTTP status and any extra headers."""

    code: int
    message: str
    subcode: int | None = None
    is_transient: bool = False
    user_title: str | None = None
    user_msg: str | None = None
    http_status: int = 400
    headers: dict[str, str] = field(default_factory=dict)
    type: str = "OAuthException"  # a request Meta cannot serve: GraphMethodException

    def body(self, fbtrace_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "code": self.code,
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["is_transient"] = self.is_transient
        if self.user_title is not None:
            error["error_user_title"] = self.user_title
        if self.user_msg is not None:
            error["error_user_msg"] = self.user_msg
        error["fbtrace_id"] = fbtrace_id
        return {"error": error}


def invalid(subcode: int | None, title: str, user_msg: str, http_status: int = 400) -> GraphError:
    """A code-100 rejection of the whole request."""
    return GraphError(100, "Invalid parameter", subcode, False, title, user_msg, http_status)


def oauth(message: str) -> GraphError:
    """A code-190 error: no usable token."""
    return GraphError(190, message)


def method(message: str) -> GraphError:
    """A code 100 without a subcode: the request or its credentials are wrong, not an event."""
    return GraphError(100, message, type="GraphMethodException")


def transient(http_status: int) -> GraphError:
    return GraphError(2, _MESSAGES[2], is_transient=True, http_status=http_status)


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )
