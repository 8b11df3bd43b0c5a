"""Meta's all-or-nothing request validation: the first invalid event rejects the whole request.

Meta documents only a few subcodes (docs/meta-api.md#errors); the sandbox uses them like this:
  2804048  request shape: `data` missing, not a list, empty or over 1,000 events; an event
           that is not an object; a body that is not a JSON object
  2804007  a required event field missing or of the wrong type (event_name, event_time,
           action_source; what the action_source needs: client_user_agent and event_source_url
           for website, app_data with advertiser_tracking_enabled, application_tracking_enabled
           and extinfo for app, messaging_channel for business_messaging)
  2804019  a field with a value Meta refuses (action_source not allowed, custom_data not an object,
           a currency that is not ISO 4217, Purchase without numeric value and currency,
           non-string upload_tag etc.)
  2804003  event_time older than 7 days (62 for physical_store)
  2804001  event_time more than 60 s in the future
  2804016  a hashed user_data key that is not a list of lower-case hex SHA-256 strings
  2804050  user_data missing, empty, or holding only keys Meta deems insufficient (docs/dialects.md#checks)
Messages name the event index and the field, never a value.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pycountry

from consumer.sandbox.errors import GraphError, invalid

SUB_REQUEST = 2804048
SUB_MISSING = 2804007
SUB_INVALID = 2804019
SUB_TOO_OLD = 2804003
SUB_FUTURE = 2804001
SUB_NOT_HASHED = 2804016
SUB_USER_DATA = 2804050

MAX_EVENTS = 1000
MAX_AGE_DAYS = 7
PHYSICAL_STORE_MAX_AGE_DAYS = 62
MAX_FUTURE_SECONDS = 60
ACTION_SOURCES = frozenset(
    {
        "email",
        "website",
        "app",
        "phone_call",
        "chat",
        "physical_store",
        "system_generated",
        "business_messaging",
        "other",
    }
)
HASHED_KEYS = ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country")
WEAK_KEY_SETS = (
    frozenset({"ct", "country", "st", "zp", "ge", "client_user_agent"}),
    frozenset({"db", "client_user_agent"}),
    frozenset({"fn", "ge"}),
    frozenset({"ln", "ge"}),
)
REQUEST_STRING_FIELDS = (
    "upload_tag",
    "test_event_code",
    "partner_agent",
    "namespace_id",
    "upload_id",
    "upload_source",
)
_SHA256 = re.compile(r"[0-9a-f]{64}")

Problem = tuple[int, str, str]  # subcode, error_user_title, detail


def validate_request(body: dict[str, Any], now: float) -> GraphError | None:
    data = body.get("data")
    if not isinstance(data, list) or not data:
        return invalid(SUB_REQUEST, "Missing Events", "data must be a non-empty list of events")
    if len(data) > MAX_EVENTS:
        return invalid(
            SUB_REQUEST, "Too Many Events", f"data holds {len(data)} events; at most {MAX_EVENTS} are allowed"
        )
    for name in REQUEST_STRING_FIELDS:
        if name in body and not isinstance(body[name], str):
            return invalid(SUB_INVALID, "Invalid Parameter", f"{name} must be a string")
    for index, event in enumerate(data):
        problem = check_event(event, now)
        if problem is not None:
            subcode, title, detail = problem
            return invalid(subcode, title, f"Event {index}: {detail}")
    return None


def check_event(event: object, now: float) -> Problem | None:
    if not isinstance(event, dict):
        return SUB_REQUEST, "Invalid Event", "the event must be a JSON object"
    name = event.get("event_name")
    if not isinstance(name, str) or not name.strip():
        return SUB_MISSING, "Missing Event Name", "event_name must be a non-empty string"
    event_time = event.get("event_time")
    if not isinstance(event_time, int) or isinstance(event_time, bool):
        return SUB_MISSING, "Invalid Event Time", "event_time must be integer unix seconds"
    source = event.get("action_source")
    if source is None:
        return SUB_MISSING, "Missing Action Source", "action_source is required"
    if source not in ACTION_SOURCES:
        return SUB_INVALID, "Invalid Action Source", "action_source is not an allowed value"
    return (
        _check_time(event_time, source, now)
        or _check_user_data(event.get("user_data"))
        or _check_website(event, source)
        or _check_app(event, source)
        or _check_messaging(event, source)
        or _check_custom_data(event, name)
    )


def _check_time(event_time: int, source: str, now: float) -> Problem | None:
    days = PHYSICAL_STORE_MAX_AGE_DAYS if source == "physical_store" else MAX_AGE_DAYS
    if event_time < now - days * 86400:
        return SUB_TOO_OLD, "Event Timestamp Too Old", f"event_time is more than {days} days old"
    if event_time > now + MAX_FUTURE_SECONDS:
        return (
            SUB_FUTURE,
            "Event Timestamp In The Future",
            f"event_time is more than {MAX_FUTURE_SECONDS} seconds in the future",
        )
    return None


def _check_user_data(user_data: object) -> Problem | None:
    if not isinstance(user_data, dict) or not user_data:
        return (
            SUB_USER_DATA,
            "Missing User Data",
            "user_data must be an object with at least one customer information parameter",
        )
    for key in HASHED_KEYS:
        if key in user_data and not _is_hash_list(user_data[key]):
            return (
                SUB_NOT_HASHED,
                "Parameter Not Hashed",
                f"user_data.{key} must be a list of lower-case hex SHA-256 hashes",
            )
    if "external_id" in user_data and not _is_id_list(user_data["external_id"]):
        return (
            SUB_NOT_HASHED,
            "Invalid External ID",
            "user_data.external_id must be a list of non-empty strings",
        )
    keys = frozenset(user_data)
    if any(keys <= weak for weak in WEAK_KEY_SETS):
        return (
            SUB_USER_DATA,
            "Insufficient Customer Information",
            "user_data holds too few customer information parameters to match",
        )
    return None


def _is_hash_list(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, str) and _SHA256.fullmatch(item) for item in value)
    )


def _is_id_list(value: object) -> bool:
    """external_id: hashed or plain (Meta recommends hashing but takes both)."""
    return isinstance(value, list) and bool(value) and all(isinstance(item, str) and item for item in value)


def _check_website(event: dict[str, Any], source: str) -> Problem | None:
    if source != "website":
        return None
    user_data: dict[str, Any] = event["user_data"]
    for field, value in (
        ("user_data.client_user_agent", user_data.get("client_user_agent")),
        ("event_source_url", event.get("event_source_url")),
    ):
        if not isinstance(value, str) or not value:
            return (
                SUB_MISSING,
                "Missing Website Parameter",
                f"{field} is required for action_source website",
            )
    return None


def _check_app(event: dict[str, Any], source: str) -> Problem | None:
    if source != "app":
        return None
    app_data = event.get("app_data")
    if not isinstance(app_data, dict):
        return SUB_MISSING, "Missing App Data", "app_data is required for action_source app"
    for field in ("advertiser_tracking_enabled", "application_tracking_enabled"):
        if not isinstance(app_data.get(field), bool | int):
            return (SUB_MISSING, "Missing App Data", f"app_data.{field} is required for action_source app")
    extinfo = app_data.get("extinfo")
    if not isinstance(extinfo, list) or not extinfo:
        return (SUB_MISSING, "Missing App Data", "app_data.extinfo is required for action_source app")
    return None


def _check_messaging(event: dict[str, Any], source: str) -> Problem | None:
    channel = event.get("messaging_channel")
    if source == "business_messaging" and not (isinstance(channel, str) and channel):
        return (
            SUB_MISSING,
            "Missing Messaging Channel",
            "messaging_channel is required for action_source business_messaging",
        )
    return None


@cache
def _currencies() -> frozenset[str]:
    return frozenset({str(c.alpha_3) for c in pycountry.currencies})


def _check_custom_data(event: dict[str, Any], name: str) -> Problem | None:
    custom_data = event.get("custom_data", {})
    if not isinstance(custom_data, dict):
        return SUB_INVALID, "Invalid Custom Data", "custom_data must be an object"
    currency = custom_data.get("currency")
    if currency is not None and not (isinstance(currency, str) and currency.upper() in _currencies()):
        return (SUB_INVALID, "Invalid Currency", "custom_data.currency must be an ISO 4217 currency code")
    if name != "Purchase":
        return None
    value = custom_data.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool) or currency is None:
        return (
            SUB_INVALID,
            "Missing Purchase Value",
            "Purchase events need custom_data.value (number) and currency",
        )
    return None
