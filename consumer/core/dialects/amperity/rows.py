"""One Amperity itemized transaction row: validation into a `Row` (docs/dialects.md#amperity)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson

from consumer.config.settings import ACTION_SOURCES, DestinationSettings
from consumer.core.capi.digest import sha256_hex
from consumer.core.capi.event import RecordContext, is_empty, is_mapping, parse_time_ms
from consumer.core.dialects.common import number, text, user_data_for
from consumer.errors import Filtered, Rejected

MATCH_POLICY: Final = "meta_baseline"
DEFAULT_EVENT: Final = "Purchase"
# user_data key → row column
USER_COLUMNS: Final = {
    "em": "email", "ph": "phone", "fn": "given_name", "ln": "surname", "db": "birthdate",
    "ge": "gender", "ct": "city", "st": "state", "zp": "postal", "country": "country",
    "external_id": "external_id", "client_user_agent": "client_user_agent", "madid": "madid",
}  # fmt: skip
COLUMNS: Final = frozenset(
    {
        *USER_COLUMNS.values(),
        "order_id",
        "quantity",
        "product_id",
        "timestamp",
        "price",
        "currency",
        "action_source",
        "event_name",
        "event_id",
        "event_source_url",
    }
)
WEBSITE_COLUMNS: Final = ("client_user_agent", "event_id", "event_source_url")
# custom_data keys fboc sets itself; a custom property never overrides them
MAPPED: Final = frozenset(
    {"value", "currency", "contents", "content_ids", "content_type", "order_id", "num_items", "item_number"}
)
# Row columns, and Amperity's own customer id: never custom properties. (Other customer data is
# screened out of every dialect's events: consumer/core/dialects/screening.py.)
PII: Final = COLUMNS | {"amperity_id"}
# Beyond these a value is a data error, and Meta would refuse the number (or orjson could not
# encode the sum): num_items and contents quantities are integers.
MAX_QUANTITY: Final = 1_000_000_000
MAX_PRICE: Final = 1e12


@dataclass(frozen=True, slots=True)
class Row:
    """What grouping needs from one valid row. `fingerprint` is a hash of the row's canonical
    content: the same for the JSON form and the Avro form, whatever the number spelling."""

    order_id: str
    event_name: str  # the source name, routed per docs/dialects.md#routing
    action_source: str
    currency: str
    event_ms: int
    quantity: int
    price: float
    product_id: str | None
    event_source_url: str | None
    user: tuple[tuple[str, str], ...]  # raw user_data (key, value) pairs, in column order
    custom: tuple[tuple[str, Any], ...] = field(default=(), hash=False)
    fingerprint: str = ""

    def raw_user(self) -> dict[str, list[str]]:
        raw: dict[str, list[str]] = {}
        for key, value in self.user:
            raw.setdefault(key, []).append(value)
        return raw


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _time_ms(value: Any) -> int | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        return parse_time_ms(value)
    except (ValueError, OverflowError, OSError):
        return None


def _custom(payload: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Custom properties: the `custom` object, plus columns fboc does not know (a flat JSON line
    straight from the query); explicit `custom` entries win. PII and mapped names are left out."""
    merged = {k: v for k, v in payload.items() if k not in COLUMNS and k != "custom"}
    explicit = payload.get("custom")
    if is_mapping(explicit):
        merged.update(explicit)
    kept = []
    for key, value in merged.items():
        if not isinstance(key, str) or key in PII or key in MAPPED or is_empty(value):
            continue
        try:
            orjson.dumps(value)  # the pipeline encodes events with orjson: refuse what it can't
        except TypeError:
            continue
        kept.append((key, value))
    return tuple(kept)


def _missing(fields: str, why: str = "missing or not valid") -> Rejected:
    return Rejected("missing_required_field", f"{why}: {fields}")


def check_row(payload: Mapping[str, Any], ctx: RecordContext, dest: DestinationSettings, now: int) -> Row:
    """Validate one row (`now` in unix seconds); raises `Rejected` or `Filtered`."""
    del ctx  # a row's timestamp is required, so the Kafka timestamp is never used
    quantity = _finite(number(payload.get("quantity")))
    if quantity is not None and quantity <= 0:
        # Checked first: a return is never sent, so its other columns do not matter.
        raise Filtered("return_or_cancellation")
    required = {
        "order_id": text(payload.get("order_id")),
        "quantity": quantity,
        "email or phone": text(payload.get("email")) or text(payload.get("phone")),
        "timestamp": _time_ms(payload.get("timestamp")),
        "price": _finite(number(payload.get("price"))),
        "currency": text(payload.get("currency")),
    }
    absent = [name for name, value in required.items() if value is None]
    if absent:
        raise _missing(", ".join(absent))
    if quantity is None or not quantity.is_integer() or quantity > MAX_QUANTITY:
        raise _missing("quantity", f"not a whole number up to {MAX_QUANTITY}")
    price = float(required["price"] or 0.0)
    if abs(price) > MAX_PRICE:
        raise _missing("price", "out of range")
    currency = str(required["currency"]).upper()
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        raise Rejected("invalid_currency", "currency is not an ISO 4217 code")

    action_source = text(payload.get("action_source"))
    if action_source not in ACTION_SOURCES:
        action_source = dest.action_source
    if action_source == "website":
        absent = [c for c in WEBSITE_COLUMNS if text(payload.get(c)) is None]
        if absent:
            raise _missing(", ".join(absent), "website rows need")

    user = tuple((key, value) for key, column in USER_COLUMNS.items() if (value := text(payload.get(column))))
    event_ms = int(required["timestamp"] or 0)
    row = Row(
        order_id=str(required["order_id"]),
        event_name=text(payload.get("event_name")) or DEFAULT_EVENT,
        action_source=action_source,
        currency=currency,
        event_ms=event_ms,
        quantity=int(quantity),
        price=price,
        product_id=text(payload.get("product_id")),
        event_source_url=text(payload.get("event_source_url")),
        user=user,
        custom=_custom(payload),
    )
    # Fail this row now rather than its whole order later: stale time, too few match keys.
    user_data_for(
        row.raw_user(), dest, event_ms // 1000, now, action_source, dest.match_policy or MATCH_POLICY
    )
    return _with_fingerprint(row)


def _with_fingerprint(row: Row) -> Row:
    canonical = orjson.dumps(
        [
            row.order_id,
            row.event_name,
            row.action_source,
            row.currency,
            row.event_ms,
            row.quantity,
            row.price,
            row.product_id,
            row.event_source_url,
            row.user,
            dict(row.custom),
        ],
        option=orjson.OPT_SORT_KEYS,
    )
    return replace(row, fingerprint=sha256_hex(canonical))
