"""mParticle event batches (docs/dialects.md#mparticle).

One record is one batch: a user (identities, attributes, device) and several events. Each
`commerce_event` whose product action is in `PRODUCT_ACTIONS` becomes Conversions API events;
the batch's other events are not sent.

A record has exactly one outcome (docs/design.md#outcomes), so a batch is judged as a whole:
- no qualifying event → filtered: `non_commerce_event` when it holds no commerce event at all,
  `unsupported_product_action` when its commerce events all have other actions (refund, click,
  remove_from_cart, ...);
- some qualifying events → those are sent and the record counts as delivered; the others are
  skipped without a per-event count (only records are counted);
- a qualifying event that is invalid (too old, no match keys, bad currency, Purchase without a
  value) rejects the whole batch: dropping just that event would lose it silently, and a replay
  re-sends the others under the same event_id, which Meta deduplicates;
- a qualifying event with no event set for its name gives no output (docs/dialects.md#routing); only a batch
  left with no output at all is rejected `no_event_set`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Final

from consumer.config.settings import DestinationSettings
from consumer.core.capi.digest import sha256_hex
from consumer.core.capi.event import Output, RecordContext, ServerEvent, compact, is_mapping, parse_time_ms
from consumer.core.dialects import Dialect
from consumer.core.dialects.common import (
    dedup_item_number,
    get,
    ldu_from_location,
    number,
    one,
    quantity,
    text,
    user_data_for,
)
from consumer.core.routing import fan_out
from consumer.errors import Filtered, Rejected

# fboc's names (docs/dialects.md#mparticle), not the seed table's legacy "AddToWishList" / "Checkout".
PRODUCT_ACTIONS: Final = {
    "add_to_cart": "AddToCart",
    "add_to_wishlist": "AddToWishlist",
    "checkout": "InitiateCheckout",
    "purchase": "Purchase",
    "view_detail": "ViewContent",
}
# Reserved user attributes, matched case-insensitively (mParticle writes "$FirstName").
USER_ATTRIBUTES: Final = {
    "ge": "$gender",
    "fn": "$firstname",
    "ln": "$lastname",
    "ct": "$city",
    "st": "$state",
    "zp": "$zip",
    "country": "$country",
    "ph": "$mobile",
}
ADVERTISING_IDS: Final = ("ios_advertising_id", "android_advertising_id")


class _Fields:
    """An object's fields by name: the exact key, else the first key equal to it ignoring case
    (mParticle writes "$FirstName"). The case-folded index is built once per object."""

    __slots__ = ("_exact", "_folded")

    def __init__(self, obj: Any) -> None:
        self._exact: Mapping[str, Any] = obj if is_mapping(obj) else {}
        self._folded: dict[str, Any] = {}
        for key, value in self._exact.items():
            if isinstance(key, str):
                self._folded.setdefault(key.casefold(), value)

    def get(self, name: str) -> Any:
        if name in self._exact:
            return self._exact[name]
        return self._folded.get(name.casefold())


def _raw_user(
    batch: Mapping[str, Any], attributes: _Fields, dest: DestinationSettings
) -> dict[str, list[str]]:
    identities = _Fields(batch.get("user_identities"))
    raw = {key: one(text(attributes.get(name))) for key, name in USER_ATTRIBUTES.items()}
    raw["em"] = one(text(identities.get(dest.email_identity_type)))
    raw["external_id"] = one(text(identities.get("customer_id")))
    device = _Fields(batch.get("device_info"))
    ids = [text(device.get(name)) for name in ADVERTISING_IDS]
    # an all-zero id is what devices report when ad tracking is limited: it matches no one
    raw["madid"] = [v for v in ids if v and v.strip("0-")][:1]
    return raw


def _ldu(attributes: _Fields, dest: DestinationSettings) -> dict[str, Any]:
    return ldu_from_location(
        dest.limited_data_use, text(attributes.get("$country")), text(attributes.get("$state"))
    )


def _contents(products: Any) -> list[dict[str, Any]]:
    if not isinstance(products, list):
        return []
    contents = []
    for product in products:
        pid = text(get(product, "id"))
        if not pid:  # products without an id are skipped (also non-objects: get gives None)
            continue
        count = quantity(product.get("quantity"))
        contents.append(
            compact(
                {
                    "id": pid,
                    "quantity": 1 if count is None else int(count),
                    "item_price": number(product.get("price")),
                    "brand": text(product.get("brand")),
                    "category": text(product.get("category")),
                }
            )
        )
    return contents


def _value(action: Mapping[str, Any]) -> float | None:
    """product_action.total_amount, else the sum of price * quantity (quantity defaults to 1)."""
    total = number(action.get("total_amount"))
    if total is not None:
        return total
    products = action.get("products")
    if not isinstance(products, list):
        return None
    priced = [(number(p.get("price")), number(p.get("quantity"))) for p in products if is_mapping(p)]
    amounts = [price * (1.0 if qty is None else qty) for price, qty in priced if price is not None]
    value = round(sum(amounts), 2) if amounts else None
    return value if value is not None and math.isfinite(value) else None


def _content_type(products: Any, dest: DestinationSettings) -> str:
    category = text(get(products[0], "category")) if isinstance(products, list) and products else None
    return dest.category_content_types.get(category or "", "product")


def _custom_attributes(data: Mapping[str, Any]) -> dict[str, Any]:
    attributes = data.get("custom_attributes")
    if not is_mapping(attributes):
        return {}
    return {
        k: v
        for k, v in attributes.items()
        if isinstance(k, str) and v is not None and not (isinstance(v, float) and not math.isfinite(v))
    }  # JSON has no NaN


def _qualifying(batch: Mapping[str, Any]) -> list[tuple[int, str, Mapping[str, Any]]]:
    """(index in `events`, product action, event data) of the events to send; Filtered if none."""
    events = batch.get("events")
    found, commerce = [], False
    for index, event in enumerate(events if isinstance(events, list) else []):
        if get(event, "event_type") != "commerce_event":
            continue
        commerce = True
        data = event.get("data")
        action = text(get(data, "product_action.action"))
        if action and action.lower() in PRODUCT_ACTIONS:
            found.append((index, action.lower(), data))
    if not found:
        raise Filtered("unsupported_product_action" if commerce else "non_commerce_event")
    return found


def transform(
    payload: Mapping[str, Any], ctx: RecordContext, dest: DestinationSettings, now: int
) -> list[Output]:
    qualifying = _qualifying(payload)
    attributes = _Fields(payload.get("user_attributes"))
    raw = _raw_user(payload, attributes, dest)
    ldu = _ldu(attributes, dest)
    policy = dest.match_policy or DIALECT.default_match_policy
    batch_ms = parse_time_ms(payload.get("timestamp_unixtime_ms"))
    record_id = cache(ctx.digest)

    outputs: list[Output] = []
    for index, action, data in qualifying:
        event_ms = parse_time_ms(data.get("timestamp_unixtime_ms"))
        if event_ms is None:
            event_ms = ctx.timestamp_ms if batch_ms is None else batch_ms
        event_id = text(data.get("source_message_id")) or sha256_hex(f"{record_id()}:{index}".encode())
        build = _builder(data, raw, dest, event_ms // 1000, now, policy, event_id, ldu)
        try:
            outputs += fan_out(
                action, dest, PRODUCT_ACTIONS, DIALECT.default_unmapped, build, dest.upload_tag
            )
        except Rejected as exc:
            if exc.reason != "no_event_set":
                raise
    if not outputs:
        raise Rejected("no_event_set", "no event set is configured for the batch's events")
    return outputs


def _builder(
    data: Mapping[str, Any],
    raw: Mapping[str, list[str]],
    dest: DestinationSettings,
    event_time: int,
    now: int,
    policy: str,
    event_id: str,
    ldu: Mapping[str, Any],
) -> Callable[[str, bool], ServerEvent]:
    """The `build` for fan_out. Checks run only for names that have an event set."""
    action: Mapping[str, Any] = data.get("product_action") or {}
    currency = (text(data.get("currency_code")) or "USD").upper()
    contents = _contents(action.get("products"))
    value = _value(action)

    def build(name: str, _via_mapping: bool) -> ServerEvent:
        user_data = user_data_for(raw, dest, event_time, now, dest.action_source, policy)
        if len(currency) != 3 or not (currency.isascii() and currency.isalpha()):
            raise Rejected("invalid_currency", "currency_code is not an ISO 4217 code")
        if name == "Purchase" and value is None:
            raise Rejected("missing_value", "a Purchase needs total_amount or priced products")
        order_id = text(action.get("transaction_id"))
        custom = compact(
            {
                **_custom_attributes(data),
                "value": value,
                "currency": currency,
                "contents": contents,
                "content_ids": [c["id"] for c in contents],
                "content_type": _content_type(action.get("products"), dest),
                "order_id": order_id,
                # Two add_to_cart of one user in one second without transaction_id: distinct keys.
                "item_number": None
                if order_id or dest.action_source == "website"
                else dedup_item_number(event_id),
            }
        )
        return {
            "event_name": name,
            "event_time": event_time,
            "event_id": event_id,
            "action_source": dest.action_source,
            "user_data": user_data,
            "custom_data": custom,
            **ldu,
        }

    return build


DIALECT = Dialect("mparticle", transform)
