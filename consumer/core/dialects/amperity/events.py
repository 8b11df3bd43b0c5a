"""Rows of one order → Conversions API events (docs/dialects.md#amperity)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from consumer.config.settings import DestinationSettings
from consumer.core.capi.digest import sha256_hex
from consumer.core.capi.event import Output, ServerEvent, compact
from consumer.core.dialects.amperity.rows import MATCH_POLICY, Row
from consumer.core.dialects.common import ldu_from_location, user_data_for
from consumer.core.routing import fan_out

EVENT_NAMES: Final = (
    "ViewContent",
    "Search",
    "AddToCart",
    "AddToWishlist",
    "InitiateCheckout",
    "AddPaymentInfo",
    "Purchase",
    "Lead",
    "Other",
)
# The allowed names are standard already; anything else goes through event_mapping / unmapped_events.
BUILTIN_EVENTS: Final = {name: name for name in EVENT_NAMES}
DEFAULT_UNMAPPED: Final = "other"


def item_number(rows: Sequence[Row]) -> str:
    """Deterministic and content-derived: the same rows (in any order) give the same number, so a
    replay after a crash is deduplicated by Meta; other rows of the order (regrouped after a
    restart, late) give another, so Meta keeps them."""
    joined = "\n".join(sorted([row.fingerprint for row in rows]))
    return sha256_hex(joined.encode())[:16]


def transform_rows(rows: Sequence[Row], dest: DestinationSettings, now: int) -> list[Output]:
    """One group of an order's rows → outputs (raises `Rejected` for the whole group).

    One event per (order, event_name, currency, action_source), normally exactly one. Every
    event's item_number is a hash of its rows and its event_id `<order_id>-<item_number>`, so
    Meta's offline dedup keeps each distinct part of an order (a later group of it) and drops
    only a replay of the very same rows (README, "Dedup keys").
    """
    parts: dict[tuple[str, str, str, str], list[Row]] = {}
    for row in rows:
        parts.setdefault((row.order_id, row.event_name, row.currency, row.action_source), []).append(row)
    outputs: list[Output] = []
    for part in parts.values():
        outputs.extend(_event(part, dest, now, item_number(part)))
    return outputs


def _ldu(raw: Mapping[str, list[str]], dest: DestinationSettings) -> dict[str, Any]:
    """As mparticle, from the row's own country and state."""
    return ldu_from_location(
        dest.limited_data_use, next(iter(raw.get("country", ())), None), next(iter(raw.get("st", ())), None)
    )


def _custom_props(rows: Sequence[Row]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for row in rows:
        for key, value in row.custom:
            merged.setdefault(key, value)  # the first row that has a property wins
    return merged


def _event(rows: Sequence[Row], dest: DestinationSettings, now: int, number: str) -> list[Output]:
    first = rows[0]
    event_time = min(row.event_ms for row in rows) // 1000
    raw: dict[str, list[str]] = {}
    for row in rows:
        for key, values in row.raw_user().items():
            raw.setdefault(key, []).extend(values)
    user_data = user_data_for(
        raw, dest, event_time, now, first.action_source, dest.match_policy or MATCH_POLICY
    )
    base: ServerEvent = compact(
        {
            "event_time": event_time,
            # Each part of an order needs its own id too: Meta also dedups on event_id + name.
            "event_id": f"{first.order_id}-{number}",
            "action_source": first.action_source,
            "event_source_url": next((r.event_source_url for r in rows if r.event_source_url), None),
            "user_data": user_data,
        }
    )
    base.update(_ldu(raw, dest))
    # Decimal: 3 * 0.1 is 0.3, not 0.30000000000000004.
    value = sum((Decimal(repr(r.price)) * r.quantity for r in rows), Decimal(0))
    contents = [
        {"id": r.product_id, "quantity": r.quantity, "item_price": r.price} for r in rows if r.product_id
    ]
    custom = compact(
        {
            **_custom_props(rows),
            "value": float(value),
            "currency": first.currency,
            "contents": contents,
            "content_ids": list(dict.fromkeys(c["id"] for c in contents)),
            "content_type": "product",
            "order_id": first.order_id,
            "num_items": sum(r.quantity for r in rows),
            "item_number": number,
        }
    )

    def build(name: str, via_mapping: bool) -> ServerEvent:
        return {"event_name": name, **base, "custom_data": dict(custom)}

    return fan_out(first.event_name, dest, BUILTIN_EVENTS, DEFAULT_UNMAPPED, build, dest.upload_tag)
