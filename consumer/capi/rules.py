"""Checks every event passes before batching (docs/dialects.md#checks): one stale or key-less event would
make Meta reject the whole request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consumer.errors import Rejected

DAY = 86_400
MAX_FUTURE_SECONDS = 60
# Meta's limits: 7 days, except physical_store events (62 days, for backfills).
META_MAX_AGE_DAYS = {"physical_store": 62}
META_DEFAULT_MAX_AGE_DAYS = 7

# Meta rejects events whose only keys are one of these sets (or a subset of one).
WEAK_KEY_SETS = (
    frozenset({"ct", "country", "st", "zp", "ge", "client_user_agent"}),
    frozenset({"db", "client_user_agent"}),
    frozenset({"fn", "ge"}),
    frozenset({"ln", "ge"}),
)
STRONG_KEYS_COMMANDERSACT = frozenset({"em", "ph", "external_id", "fbp", "fbc"})


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
        raise Rejected("insufficient_match_keys",
                       "needs em, ph, external_id, fbp or fbc, or three other keys")
    # Every policy includes Meta's own baseline: Meta would refuse the whole request.
    if any(keys <= weak for weak in WEAK_KEY_SETS):
        raise Rejected("insufficient_match_keys", f"keys {sorted(keys)} alone cannot match")
