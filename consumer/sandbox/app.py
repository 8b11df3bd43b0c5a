"""The sandbox's aiohttp application and its Graph endpoint, POST /{version}/{id}/events."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Collection
from typing import Any

import orjson
import structlog
from aiohttp import web

from consumer.sandbox import errors
from consumer.sandbox.errors import GraphError, json_response
from consumer.sandbox.faults import DEFAULT_TIMEOUT_SECONDS, FaultRule
from consumer.sandbox.inspection import add_inspection_routes
from consumer.sandbox.state import (
    DEFAULT_MAX_STORED_EVENTS,
    STATE,
    RequestRecord,
    SandboxState,
    new_state,
)
from consumer.sandbox.validate import SUB_INVALID, SUB_REQUEST, validate_request

log = structlog.get_logger("fboc.sandbox")

MAX_BODY_BYTES = 64 * 1024 * 1024
SANDBOX_BUSINESS_ID = "100000000000001"  # key of X-Business-Use-Case-Usage
_VERSION = re.compile(r"v[0-9]+\.[0-9]+")
_NUMERIC = re.compile(r"[0-9]+")
_URL_SECRETS = ("access_token", "appsecret_proof")


def create_app(
    *,
    tokens: Collection[str] = ("sandbox-token",),
    app_secret: str | None = None,
    now: Callable[[], float] = time.time,
    max_stored_events: int = DEFAULT_MAX_STORED_EVENTS,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE] = new_state(tokens, app_secret, now, max_stored_events)
    app.on_shutdown.append(_release_held_requests)
    add_inspection_routes(app)
    app.router.add_post("/{version}/{event_set_id}/events", _post_events)
    return app


async def _release_held_requests(app: web.Application) -> None:
    app[STATE].closing.set()


# --- the Graph endpoint --------------------------------------------------------------------


async def _post_events(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    started = time.monotonic()
    record = state.open_request(request.match_info["version"], request.match_info["event_set_id"])
    try:
        return await _handle_events(request, state, record)
    except asyncio.CancelledError:
        record.client_disconnected = record.fault != "reset"
        raise
    finally:
        record.done = True
        log.info(
            "sandbox_request",
            request_id=record.request_id,
            event_set_id=record.event_set_id,
            status=record.status,
            events=record.events,
            error_code=record.error_code,
            error_subcode=record.error_subcode,
            fault=record.fault,
            client_disconnected=record.client_disconnected,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )


async def _handle_events(
    request: web.Request, state: SandboxState, record: RequestRecord
) -> web.StreamResponse:
    if any(name in request.query for name in _URL_SECRETS):
        return _error(
            record,
            errors.oauth(
                "The sandbox refuses access_token and appsecret_proof in the URL, where they end up"
                " in logs: send Authorization: Bearer <token> and appsecret_proof in the body"
            ),
        )
    token = _bearer_token(request)
    if token is None:
        return _error(
            record, errors.oauth("An active access token must be used: send Authorization: Bearer <token>")
        )
    if token not in state.tokens:
        return _error(record, errors.oauth(errors.default_message(190)))
    body, problem = await _read_body(request)
    if body is None:
        return _error(record, problem or errors.invalid(SUB_REQUEST, "Invalid Body", "bad body"))
    record.note_body(body)
    problem = _check_proof(body, token, state.app_secret) or _check_path(record)
    if problem is not None:
        return _error(record, problem)
    rule = state.faults.take(record.event_set_id, _event_ids(body))
    if rule is not None:
        record.fault, record.fault_id = rule.kind, rule.id
        answer = await _apply_fault(request, state, record, rule, body)
        if answer is not None:
            return answer
    problem = validate_request(body, state.now())
    if problem is not None:
        return _error(record, problem)
    data: list[dict[str, Any]] = body["data"]
    if rule is not None and rule.kind == "wrong_events_received":
        return _success(record, len(data) - 1)
    state.store(record, data)
    return _success(record, len(data))


def _bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def _read_body(request: web.Request) -> tuple[dict[str, Any] | None, GraphError | None]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None, errors.invalid(
            SUB_REQUEST, "Request Too Large", f"the body is over {MAX_BODY_BYTES} bytes", http_status=413
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return None, errors.invalid(SUB_REQUEST, "Invalid Body", "the body must be a JSON object")
    return body, None


def _check_proof(body: dict[str, Any], token: str, app_secret: str | None) -> GraphError | None:
    if app_secret is None:
        return None
    proof = body.get("appsecret_proof")
    if not isinstance(proof, str):
        return errors.method("API calls from the server require an appsecret_proof argument")
    expected = hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(proof.encode(), expected.encode()):
        return errors.method("Invalid appsecret_proof provided in the API argument")
    return None


def _check_path(record: RequestRecord) -> GraphError | None:
    if not _VERSION.fullmatch(record.api_version):
        return GraphError(2500, "Unknown path components: the version must look like v26.0")
    if not _NUMERIC.fullmatch(record.event_set_id):
        return GraphError(
            100,
            "Unsupported post request. Object with this ID does not exist,"
            " cannot be loaded due to missing permissions, or does not support"
            " this operation",
            subcode=33,
        )
    return None


def _event_ids(body: dict[str, Any]) -> set[str]:
    data = body.get("data")
    if not isinstance(data, list):
        return set()
    ids = (event.get("event_id") for event in data if isinstance(event, dict))
    return {i for i in ids if isinstance(i, str)}


def _error(record: RequestRecord, error: GraphError) -> web.Response:
    record.status, record.error_code, record.error_subcode = (error.http_status, error.code, error.subcode)
    fbtrace_id = errors.new_fbtrace_id()
    headers = {"x-fb-trace-id": fbtrace_id, **error.headers}
    return json_response(error.body(fbtrace_id), error.http_status, headers)


def _success(record: RequestRecord, events_received: int) -> web.Response:
    record.status = 200
    fbtrace_id = errors.new_fbtrace_id()
    body = {"events_received": events_received, "messages": [], "fbtrace_id": fbtrace_id}
    return json_response(body, headers={"x-fb-trace-id": fbtrace_id})


# --- faults --------------------------------------------------------------------------------


async def _apply_fault(
    request: web.Request,
    state: SandboxState,
    record: RequestRecord,
    rule: FaultRule,
    body: dict[str, Any],
) -> web.StreamResponse | None:
    """Answer as the rule says, or return None to go on with normal handling."""
    action = rule.action
    if rule.kind == "latency_ms":
        await _hold(state, action["latency_ms"] / 1000)
    elif rule.kind == "http_status":
        return _error(record, errors.transient(action["http_status"]))
    elif rule.kind == "error":
        return _error(record, _injected_error(action))
    elif rule.kind == "reject_events":
        index = _first_matching_index(body, rule.event_ids or ())
        return _error(
            record,
            errors.invalid(
                action.get("error_subcode", SUB_INVALID),
                "Invalid Event",
                f"Event {index}: rejected by sandbox fault rule {rule.id}",
            ),
        )
    elif rule.kind == "timeout":
        await _hold(state, float(action.get("seconds", DEFAULT_TIMEOUT_SECONDS)))
        return _error(record, errors.transient(503))
    elif rule.kind == "reset":
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # no answer at all; aiohttp drops the connection
    return None


async def _hold(state: SandboxState, seconds: float) -> None:
    """Sleep, but wake at once when the server shuts down."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state.closing.wait(), seconds)


def _injected_error(action: dict[str, Any]) -> GraphError:
    spec: dict[str, Any] = action["error"]
    code: int = spec["code"]
    headers: dict[str, str] = {}
    regain = spec.get("regain_minutes", action.get("regain_minutes"))
    if regain is not None:
        usage = {
            SANDBOX_BUSINESS_ID: [
                {
                    "type": "ads_management",
                    "call_count": 100,
                    "total_cputime": 100,
                    "total_time": 100,
                    "estimated_time_to_regain_access": regain,
                }
            ]
        }
        headers["X-Business-Use-Case-Usage"] = orjson.dumps(usage).decode()
    return GraphError(
        code=code,
        message=spec.get("message", errors.default_message(code)),
        subcode=spec.get("error_subcode"),
        is_transient=spec.get("is_transient", code in errors.TRANSIENT_CODES),
        http_status=spec.get("http_status", 400),
        headers=headers,
        type=spec.get(
            "type",
            "GraphMethodException" if code == 100 and spec.get("error_subcode") is None else "OAuthException",
        ),
    )


def _first_matching_index(body: dict[str, Any], event_ids: Collection[str]) -> int:
    for index, event in enumerate(body.get("data") or []):
        if isinstance(event, dict) and event.get("event_id") in event_ids:
            return index
    return -1
