"""Small pure helpers the dialects share: path lookup and value coercion."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

import structlog

from consumer.config.settings import DestinationSettings
from consumer.core.capi.digest import sha256_hex
from consumer.core.capi.event import is_empty
from consumer.core.capi.normalize import build_user_data, normalize_field
from consumer.core.capi.rules import check_match_keys, check_time
from consumer.telemetry.metrics import METRICS

log = structlog.get_logger("fboc.dialects")

_MISSING: Final = object()

ZIP_NAMES: Final = ("zip", "zipcode", "zip_code", "zipCode", "postalcode", "postal_code", "postalCode")
# Custom properties that hold customer data are screened out of every dialect's events on the
# way out (consumer/core/dialects/screening.py), not here.


def get(obj: Any, path: str) -> Any:
    """`get(p, "context.traits.email")`; None when any step is missing or not an object."""
    for part in _split(path):
        if not isinstance(obj, dict):  # decoded JSON and Avro are dicts (and dict is fast)
            return None
        obj = obj.get(part, _MISSING)
        if obj is _MISSING:
            return None
    return obj


@functools.lru_cache(maxsize=4096)
def _split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def first(obj: Any, paths: Iterable[str]) -> Any:
    """The first non-empty value among the paths (docs/dialects.md#paths: first non-empty path wins)."""
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
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else str(value)
    return None


def one(value: str | None) -> list[str]:
    """A raw user_data value list: the value, or nothing when it is empty."""
    return [value] if value else []


def number(value: Any) -> float | None:
    """A finite number from a number or numeric text; None otherwise (nan and inf too)."""
    # isinstance one type at a time: compiled, `int | float` builds a union object every call
    if isinstance(value, float):
        found = value
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        try:
            found = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str):
        try:
            found = float(value.strip())
        except (ValueError, OverflowError):
            return None
    else:
        return None
    return found if math.isfinite(found) else None


MAX_SAFE_INT: Final = 2**53  # quantities and codes beyond this are data errors (and beyond exact JSON)


def quantity(value: Any) -> float | None:
    """A number usable as a count: finite and within ±2**53 (an int of it is always encodable)."""
    found = number(value)
    return found if found is not None and abs(found) < MAX_SAFE_INT else None


def user_data_for(
    raw: Mapping[str, list[str]],
    dest: DestinationSettings,
    event_time: int,
    now: int,
    action_source: str,
    match_policy: str,
) -> dict[str, Any]:
    """Normalise and hash, then apply the checks Meta would otherwise fail a whole request on."""
    check_time(event_time, now, action_source, dest.max_event_age_days)
    user_data, dropped = build_user_data(
        raw,
        hashing=dest.hashing,
        hash_external_id=dest.hash_external_id,
        default_country=dest.default_country,
        max_year=_year(event_time),
        date_order=dest.date_order,
        external_id=dest.external_id_normalization,
    )
    for key in dropped:  # a process counter, not I/O: the output stays a pure function
        METRICS.normalization_dropped.labels(key).inc()
        log.debug("field_not_normalisable", key=key)
    check_match_keys(user_data, match_policy)
    return user_data


def dedup_item_number(event_id: str) -> str:
    """The item_number of an event without an order id (README, "Dedup keys").

    Meta dedups offline events on (dataset, event_name, event_time, item_number, order_id or the
    customer fields): two purchases of one customer in the same second without an order id would
    share that key and Meta would silently drop the second. Derived from the event's own id, it
    separates distinct records and stays the same for a redelivery of the same record."""
    return sha256_hex(event_id.encode())[:16]


def _year(unix_seconds: int) -> int:
    """The UTC year of a unix time, by integer arithmetic (the proleptic Gregorian calendar, as
    datetime counts it; compiled, a datetime costs ~2k instructions a record)."""
    days = unix_seconds // 86_400 + 719_468  # days since 0000-03-01
    era = days // 146_097  # 400-year eras
    day_of_era = days - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1_460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)  # from March 1
    return era * 400 + year_of_era + (1 if day_of_year >= 306 else 0)  # January and February: next year


# Meta's data_processing_options_state codes ("Data Processing Options for US Users").
LDU_STATES: Final = {
    "ca": 1000,
    "co": 1001,
    "ct": 1002,
    "fl": 1003,
    "or": 1004,
    "tx": 1005,
    "mt": 1006,
    "de": 1007,
    "ne": 1008,
    "nh": 1009,
    "nj": 1010,
    "mn": 1011,
    "md": 1012,
    "ri": 1013,
}


def ldu_from_location(mode: bool | str, country: str | None, state: str | None) -> dict[str, Any]:
    """Limited Data Use from a user's location (mparticle, amperity): `never`/false: none;
    `always`/true: LDU with the location codes, 0 (Meta geolocates) where unknown;
    `when_location_known`: only when both country and state are known."""
    if mode is False or mode == "never":
        return {}
    if mode == "when_location_known" and not (country and state):
        return {}
    is_us = bool(country) and normalize_field("country", country or "", region="US", max_year=0) == "us"
    state_code = 0
    if is_us and state:  # a state code without country 1 would contradict it
        state_code = LDU_STATES.get(normalize_field("st", state, region="US", max_year=0) or "", 0)
    return {
        "data_processing_options": ["LDU"],
        "data_processing_options_country": 1 if is_us else 0,
        "data_processing_options_state": state_code,
    }
