"""The customer-data screen as first written (consumer/core/capi/custom.py before its fast walk): a
reference that decides per value with no cache but the module's own text checks. Only
tests/core/test_custom_data_fast.py uses it, to show that the fast walk decides the same."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from consumer.core.capi.custom import (
    CONTENT_KEYS,
    CUSTOMER_KEYS,
    ID_KEYS,
    MAX_DEPTH,
    NUMERIC_KEYS,
    STANDARD_KEYS,
    Drop,
    Screen,
    _country_hashes,
    _judge,
    has_email,
    has_phone,
    is_customer_name,
)
from consumer.core.capi.event import ServerEvent


@dataclass(slots=True)
class Walk:
    screen: Screen
    region: str
    customer: dict[str, list[Any]]
    lists: list[list[Any]]
    drops: list[Drop]


def walk_for(event: Mapping[str, Any], screen: Screen) -> Walk:
    user_data = event.get("user_data")
    lists: list[list[Any]] = []
    customer: dict[str, list[Any]] = {}
    region = screen.default_country.upper()
    if isinstance(user_data, Mapping):
        for key, values in user_data.items():
            if isinstance(values, list):
                lists.append(values)
                if key in CUSTOMER_KEYS:
                    customer[key] = values
        for value in user_data.get("country") or ():
            code = _country_hashes().get(value) if isinstance(value, str) else None
            if code is not None:
                region = code
                break
    return Walk(screen, region, customer, lists, [])


def text_reason(text: str, walk: Walk, id_like: bool = False) -> str | None:
    screen = walk.screen
    reason, hash_like, forms = _judge(text, walk.region, screen.date_order, screen.external_id, id_like)
    if reason is not None or id_like:
        return reason
    if hash_like and any(hash_like in values for values in walk.lists):
        return "customer_value"
    for key, pair in forms:
        values = walk.customer.get(key)
        if values is not None and (pair[0] in values or pair[1] in values):
            return "customer_value"
    return None


def screen_url(url: str, where: str, walk: Walk) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        reason = text_reason(url, walk)
        if reason is not None:
            walk.drops.append((where, reason))
            return None
        return url
    reason = (
        "email_value"
        if has_email(parts.netloc + parts.path)
        else ("phone_value" if has_phone(unquote(parts.path), walk.region) else None)
    )
    if reason is not None:
        walk.drops.append((where, reason))
        return None
    query, changed = parts.query, False
    if query:
        kept: list[tuple[str, str]] = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name in walk.screen.allowed:
                reason = None
            elif is_customer_name(name):
                reason = "name"
            else:
                reason = text_reason(value, walk)
            if reason is None:
                kept.append((name, value))
            else:
                walk.drops.append((f"{where}?{name}", reason))
                changed = True
        if changed:
            query = urlencode(kept)
    fragment = parts.fragment
    if fragment:
        reason = text_reason(unquote(fragment), walk)
        if reason is None:
            for name in re.findall(r"([^?&#=/]+)=", fragment):
                if name not in walk.screen.allowed and is_customer_name(unquote(name)):
                    reason = "name"
                    break
        if reason is not None:
            walk.drops.append((f"{where}#", reason))
            fragment, changed = "", True
    if not changed:
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, fragment))


_DROP = object()
FREE, ID, NUMBER, CONTENTS = 0, 1, 2, 3


def role(key: str, standard: frozenset[str]) -> int:
    if key not in standard:
        return FREE
    if key == "contents":
        return CONTENTS
    return ID if key in ID_KEYS else NUMBER if key in NUMERIC_KEYS else FREE


def value_of(value: Any, kind: int, where: str, walk: Walk, depth: int) -> Any:
    if isinstance(value, str):
        if value.startswith(("http://", "https://")):
            url = screen_url(value, where, walk)
            return _DROP if url is None else url
        reason = text_reason(value, walk, kind == ID)
    elif isinstance(value, bool | float) or value is None:
        return value
    elif isinstance(value, int):
        if kind == NUMBER:
            return value
        reason = text_reason(str(value), walk, kind == ID)
    elif depth >= MAX_DEPTH:
        reason = "too_deep"
    elif isinstance(value, Mapping):
        standard = CONTENT_KEYS if kind == CONTENTS else frozenset()
        return object_of(value, standard, where, walk, depth + 1)
    elif isinstance(value, list):
        items = []
        for item in value:
            kept_item = value_of(item, kind, f"{where}[]", walk, depth + 1)
            if kept_item is not _DROP:
                items.append(kept_item)
        return items
    else:
        return value
    if reason is None:
        return value
    walk.drops.append((where, reason))
    return _DROP


def object_of(
    obj: Mapping[str, Any], standard: frozenset[str], where: str, walk: Walk, depth: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            continue
        here = f"{where}.{key}"
        if key in walk.screen.allowed:
            out[key] = value
        elif key not in standard and is_customer_name(key):
            walk.drops.append((here, "name"))
        elif key not in standard and (reason := text_reason(key, walk)) is not None:
            walk.drops.append((f"{where}.<key>", reason))
        else:
            kept = value_of(value, role(key, standard), here, walk, depth)
            if kept is not _DROP:
                out[key] = kept
    return out


def screen_event(event: ServerEvent, screen: Screen) -> tuple[ServerEvent, tuple[Drop, ...]]:
    walk = walk_for(event, screen)
    custom = event.get("custom_data")
    screened_custom = (
        object_of(custom, STANDARD_KEYS, "custom_data", walk, 0) if isinstance(custom, Mapping) else custom
    )
    url = event.get("event_source_url")
    screened_url = screen_url(url, "event_source_url", walk) if isinstance(url, str) else url
    if not walk.drops:
        return event, ()
    out = dict(event)
    if "custom_data" in event:
        out["custom_data"] = screened_custom
    if screened_url is None:
        out.pop("event_source_url", None)
    else:
        out["event_source_url"] = screened_url
    return out, tuple(walk.drops)
