"""Checks every event passes before batching (docs/dialects.md#checks): one stale or key-less event would
make Meta reject the whole request."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, Final

import pycountry

from consumer.core.capi.event import is_mapping
from consumer.errors import Rejected

DAY: Final = 86_400
MAX_FUTURE_SECONDS: Final = 60
# Meta's limits: 7 days, except physical_store events (62 days, for backfills).
META_MAX_AGE_DAYS: Final = {"physical_store": 62}
META_DEFAULT_MAX_AGE_DAYS: Final = 7

# Meta rejects events whose only keys are one of these sets (or a subset of one).
WEAK_KEY_SETS: Final = (
    frozenset({"ct", "country", "st", "zp", "ge", "client_user_agent"}),
    frozenset({"db", "client_user_agent"}),
    frozenset({"fn", "ge"}),
    frozenset({"ln", "ge"}),
)
STRONG_KEYS_COMMANDERSACT: Final = frozenset({"em", "ph", "external_id", "fbp", "fbc"})


def check_time(event_time: int, now: int, action_source: str, max_age_days: int) -> None:
    limit = min(max_age_days, META_MAX_AGE_DAYS.get(action_source, META_DEFAULT_MAX_AGE_DAYS))
    if event_time < now - limit * DAY:
        raise Rejected("event_too_old", f"event_time is more than {limit} days old")
    if event_time > now + MAX_FUTURE_SECONDS:
        raise Rejected("event_in_future", "event_time is more than 60 s in the future")


def check_match_keys(user_data: Mapping[str, Any], policy: str) -> None:
    keys = frozenset(user_data)
    if not keys:
        raise Rejected("insufficient_match_keys", "no customer information")
    if policy == "commandersact" and not (keys & STRONG_KEYS_COMMANDERSACT or len(keys) >= 3):
        raise Rejected(
            "insufficient_match_keys", "needs em, ph, external_id, fbp or fbc, or three other keys"
        )
    # Every policy includes Meta's own baseline: Meta would refuse the whole request.
    if any(keys <= weak for weak in WEAK_KEY_SETS):
        raise Rejected("insufficient_match_keys", f"keys {sorted(keys)} alone cannot match")


# What Meta requires beyond the common fields, by action_source (docs/meta-api.md); an event
# without them would fail its whole request.
APP_DATA_FIELDS: Final = ("advertiser_tracking_enabled", "application_tracking_enabled", "extinfo")


def missing_for_action_source(event: Mapping[str, Any]) -> list[str]:
    """The fields ``event``'s action_source needs that it lacks (dotted paths)."""
    source = event.get("action_source")
    missing: list[str] = []
    if source == "website":
        user_data = event.get("user_data")
        agent = user_data.get("client_user_agent") if is_mapping(user_data) else None
        if not (isinstance(agent, str) and agent):
            missing.append("user_data.client_user_agent")
        url = event.get("event_source_url")
        if not (isinstance(url, str) and url):
            missing.append("event_source_url")
    elif source == "app":
        app_data = event.get("app_data")
        if not is_mapping(app_data):
            missing.append("app_data")
        else:
            for field in APP_DATA_FIELDS:
                value = app_data.get(field)
                if value is None or value == [] or value == "":
                    missing.append(f"app_data.{field}")
    elif source == "business_messaging":
        channel = event.get("messaging_channel")
        if not (isinstance(channel, str) and channel):
            missing.append("messaging_channel")
    return missing


def check_action_source(event: Mapping[str, Any]) -> None:
    missing = missing_for_action_source(event)
    if missing:
        raise Rejected(
            "missing_required_field", f"action_source {event.get('action_source')} needs {', '.join(missing)}"
        )


@cache
def iso_4217() -> frozenset[str]:
    return frozenset({str(c.alpha_3) for c in pycountry.currencies})


def check_currency(event: Mapping[str, Any]) -> None:
    """custom_data.currency, when there is one, must be an ISO 4217 code (upper-case)."""
    custom = event.get("custom_data")
    currency = custom.get("currency") if is_mapping(custom) else None
    if currency is not None and not (isinstance(currency, str) and currency in iso_4217()):
        raise Rejected("invalid_currency", "currency is not an ISO 4217 code")
