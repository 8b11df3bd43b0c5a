"""The /_sandbox/ inspection and fault-control API, for tests and people."""

from __future__ import annotations

import orjson
from aiohttp import web

from consumer.sandbox.errors import json_response
from consumer.sandbox.faults import FaultRuleError
from consumer.sandbox.state import STATE

_INDEX_PAGE = """fboc sandbox: a local stand-in for Meta's Conversions API. It never calls Meta.

POST /{version}/{event_set_id}/events   Authorization: Bearer <token>, JSON body {"data": [...]}
GET  /_sandbox/events[?event_set_id=]   accepted events Meta keeps (offline duplicates dropped)
GET  /_sandbox/requests                 every events request (no tokens)
GET  /_sandbox/stats                    totals; deduplicated = offline events dropped as
                                        duplicates (still counted in events_received),
                                        deduplicated_distinct = those whose event_id differed
                                        from the kept one: distinct conversions lost;
                                        deduplicated_changed = those whose content differed
POST /_sandbox/reset                    forget events, requests and faults
GET|POST|DELETE /_sandbox/faults        fault rules (DELETE /_sandbox/faults/{id} removes one)
"""


def add_inspection_routes(app: web.Application) -> None:
    app.router.add_get("/", _index)
    app.router.add_get("/_sandbox/events", _get_events)
    app.router.add_get("/_sandbox/requests", _get_requests)
    app.router.add_get("/_sandbox/stats", _get_stats)
    app.router.add_post("/_sandbox/reset", _reset)
    app.router.add_get("/_sandbox/faults", _get_faults)
    app.router.add_post("/_sandbox/faults", _add_fault)
    app.router.add_delete("/_sandbox/faults", _clear_faults)
    app.router.add_delete("/_sandbox/faults/{rule_id}", _remove_fault)


async def _index(request: web.Request) -> web.Response:
    return web.Response(text=_INDEX_PAGE)


async def _get_events(request: web.Request) -> web.Response:
    events = request.app[STATE].list_events(request.query.get("event_set_id"))
    return json_response({"events": events})


async def _get_requests(request: web.Request) -> web.Response:
    return json_response({"requests": request.app[STATE].list_requests()})


async def _get_stats(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].stats())


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return json_response({"reset": True})


async def _get_faults(request: web.Request) -> web.Response:
    return json_response({"faults": [rule.describe() for rule in request.app[STATE].faults.rules]})


async def _add_fault(request: web.Request) -> web.Response:
    try:
        rule = request.app[STATE].faults.add(orjson.loads(await request.read()))
    except (orjson.JSONDecodeError, FaultRuleError) as exc:
        return json_response({"error": {"message": f"bad fault rule: {exc}"}}, 400)
    return json_response({"fault": rule.describe()}, 201)


async def _clear_faults(request: web.Request) -> web.Response:
    return json_response({"cleared": request.app[STATE].faults.clear()})


async def _remove_fault(request: web.Request) -> web.Response:
    if request.app[STATE].faults.remove(request.match_info["rule_id"]):
        return json_response({"removed": request.match_info["rule_id"]})
    return json_response({"error": {"message": "no such fault rule"}}, 404)
