"""Small pure helpers the dialects share: path lookup and value coercion."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from consumer.capi.normalize import build_user_data
from consumer.capi.rules import check_match_keys, check_time
from consumer.config import DestinationSettings

_MISSING = object()


def get(obj: Any, path: str) -> Any:
    """`get(p, "context.traits.email")`; None when any step is missing or not an object."""
    for part in path.split("."):
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(part, _MISSING)
        if obj is _MISSING:
            return None
    return obj


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def first(obj: Any, paths: Iterable[str]) -> Any:
    """The first non-empty value among the paths (SPEC §6: first non-empty path wins)."""
    for path in paths:
        value = get(obj, path)
        if not is_empty(value):
            return value
    return None


def text(value: Any) -> str | None:
    """A scalar as a string (numbers too: phone numbers and zips arrive as numbers)."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else str(value)
    return None


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def under(prefixes: Iterable[str], names: Iterable[str]) -> list[str]:
    """Every `prefix.name` path, prefixes first: under(["traits"], ["email"])."""
    names = list(names)
    return [f"{p}.{n}" if p else n for p in prefixes for n in names]


def user_data_for(raw: Mapping[str, list[str]], dest: DestinationSettings, event_time: int,
                  now: int, action_source: str, match_policy: str) -> dict[str, Any]:
    """Normalise and hash, then apply the checks Meta would otherwise fail a whole request on."""
    check_time(event_time, now, action_source, dest.max_event_age_days)
    user_data, _dropped = build_user_data(
        raw, hashing=dest.hashing, hash_external_id=dest.hash_external_id,
        default_country=dest.default_country, max_year=_year(event_time))
    check_match_keys(user_data, match_policy)
    return user_data


def _year(unix_seconds: int) -> int:
    return datetime.fromtimestamp(unix_seconds, UTC).year
