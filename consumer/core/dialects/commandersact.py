"""Commanders Act events (docs/dialects.md#commandersact): one Kafka record is one event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from consumer.config.settings import STANDARD_EVENTS, DestinationSettings
from consumer.core.capi.event import (
    Output,
    RecordContext,
    ServerEvent,
    compact,
    is_empty,
    is_mapping,
    parse_time_ms,
)
from consumer.core.dialects import Dialect
from consumer.core.dialects.common import dedup_item_number, first, get, number, quantity, text, user_data_for
from consumer.core.routing import fan_out
from consumer.errors import Filtered, Rejected

FB: Final = "integrations.facebook"

BUILTIN_EVENTS: Final = {
    "begin_checkout": "InitiateCheckout",
    "purchase": "Purchase",
    "add_to_cart": "AddToCart",
    "view_item": "ViewContent",
    "view_item_list": "ViewContent",
    "search": "Search",
    "add_payment_info": "AddPaymentInfo",
    "add_to_wishlist": "AddToWishlist",
    "generate_lead": "Lead",
    "page_view": "PageView",
    "complete_registration": "CompleteRegistration",
    "contact": "Contact",
    "customize_product": "CustomizeProduct",
    "donate": "Donate",
    "find_location": "FindLocation",
    "schedule": "Schedule",
    "start_trial": "StartTrial",
    "submit_application": "SubmitApplication",
    "subscribe": "Subscribe",
}

# user_data key → paths, first non-empty wins; `em` takes every path (email and email_sha256).
USER_PATHS: Final[dict[str, tuple[str, ...]]] = {
    "external_id": ("user.id",),
    "em": ("user.email", "user.email_sha256"),
    "ph": ("user.phone",),
    "ge": ("user.gender",),
    "db": ("user.birthdate",),
    "fn": ("user.firstname",),
    "ln": ("user.lastname",),
    "ct": ("user.city",),
    "st": ("user.state",),
    "zp": ("user.zipcode",),
    "country": ("user.country",),
    # context.device.* is where Commanders Act's web SDKs put them
    "client_ip_address": ("browser.ip", "context.device.ip"),
    "client_user_agent": ("browser.user_agent", "context.device.user_agent"),
    "fbc": (f"{FB}.fbc",),
    "fbp": (f"{FB}.fbp",),
}
# Keys `integrations.facebook.user_data.<key>` may set: every raw key build_user_data knows.
OVERRIDABLE_USER_KEYS: Final = (*USER_PATHS, "madid", "lead_id")
CATEGORY_FIELDS: Final = tuple(f"product.category_{n}" for n in range(1, 6))


def _texts(value: Any) -> list[str]:
    """A scalar or a list of scalars as non-empty strings."""
    values = value if isinstance(value, list) else [value]
    return [t for t in (text(v) for v in values) if t]


def _consented(payload: Mapping[str, Any], category: str) -> bool:
    categories = first(payload, ("user.consent_categories", "consent_categories"))
    if isinstance(categories, str):  # "1,3" from CSV imports
        categories = categories.split(",")
    return category.strip() in _texts(categories)


def _raw_user(payload: Mapping[str, Any]) -> dict[str, list[str]]:
    raw: dict[str, list[str]] = {}
    for key, paths in USER_PATHS.items():
        found = [t for path in paths for t in _texts(get(payload, path))]
        raw[key] = found if key == "em" else found[:1]
    overrides = get(payload, f"{FB}.user_data")
    if is_mapping(overrides):
        for key in OVERRIDABLE_USER_KEYS:
            if not is_empty(overrides.get(key)):
                raw[key] = _texts(overrides[key])
    return raw


def _event_time(payload: Mapping[str, Any], ctx: RecordContext) -> int:
    try:
        event_ms = parse_time_ms(first(payload, ("context.event_timestamp", "event_timestamp")))
    except (OverflowError, ValueError):  # e.g. an infinite number: not a time
        event_ms = None
    return (ctx.timestamp_ms if event_ms is None else event_ms) // 1000


def _item(item: Any) -> tuple[str | None, int | None, float | None]:
    """(id, quantity, item_price) of one entry of `items`; None where it has none."""
    if not is_mapping(item):
        return None, None, None
    count = quantity(item.get("quantity"))
    return (
        text(first(item, ("id", "product.id"))),
        int(count) if count is not None and count.is_integer() else None,
        number(first(item, ("price", "product.price"))),
    )


def _products(items: list[Any]) -> dict[str, Any]:
    """contents when every item has id, quantity and price; else content_ids."""
    fields = [_item(i) for i in items]
    if fields and all(None not in f for f in fields):
        return {"contents": [{"id": i, "quantity": q, "item_price": p} for i, q, p in fields]}
    return {"content_ids": list(dict.fromkeys(i for i, _q, _p in fields if i))}


def _first_in_items(items: list[Any], paths: tuple[str, ...]) -> str | None:
    for item in items:
        found = text(first(item, paths))
        if found:
            return found
    return None


def _custom_data(payload: Mapping[str, Any], dest: DestinationSettings) -> dict[str, Any]:
    items = payload.get("items")
    items = items if isinstance(items, list) else []
    category = text(payload.get("category")) or _first_in_items(items, CATEGORY_FIELDS)
    custom: dict[str, Any] = {
        "value": number(payload.get("amount")),
        "currency": text(payload.get("currency")),
        **_products(items),
        "content_name": text(payload.get("name")) or _first_in_items(items, ("product.name",)),
        "content_category": category,
        "content_type": dest.category_content_types.get(category, "product") if category else "product",
        "order_id": text(payload.get("id")),
        "status": text(payload.get("status")),
    }
    overrides = get(payload, f"{FB}.custom_data")
    if is_mapping(overrides):
        custom.update({str(k): v for k, v in overrides.items()})
        custom["value"] = number(custom.get("value"))
        custom["currency"] = text(custom.get("currency"))
    if custom["currency"] is not None or custom["value"] is not None:
        currency = (custom["currency"] or "USD").upper()  # Meta needs a currency with a value
        if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
            raise Rejected("invalid_currency", "currency is not an ISO 4217 code")
        custom["currency"] = currency
    return compact(custom)


def _ldu(payload: Mapping[str, Any], dest: DestinationSettings) -> dict[str, Any]:
    if dest.limited_data_use is not True:
        return {}
    options = get(payload, f"{FB}.data_processing_options")
    out: dict[str, Any] = {"data_processing_options": _texts(options)}
    for suffix in ("country", "state"):
        code = number(get(payload, f"{FB}.data_processing_options_{suffix}"))
        if code is not None and out["data_processing_options"]:
            out[f"data_processing_options_{suffix}"] = int(code)
    return out


def transform(
    payload: Mapping[str, Any], ctx: RecordContext, dest: DestinationSettings, now: int
) -> list[Output]:
    # Consent first: a record without consent is not even dead-lettered with its PII.
    if dest.consent_category and not _consented(payload, dest.consent_category):
        raise Filtered("no_consent")
    source_name = text(payload.get("event_name"))
    if not source_name:
        raise Rejected("missing_event", "the event has no event_name")
    builtin: Mapping[str, str] = BUILTIN_EVENTS
    override = text(get(payload, f"{FB}.event_name"))
    if override:
        # The override names the Facebook event: a standard name is sent as is, anything else
        # follows the destination's unmapped_events (passthrough by default).
        source_name = override
        builtin = {override: override} if override in STANDARD_EVENTS else {}

    event_time = _event_time(payload, ctx)
    action_source = "physical_store" if payload.get("type") == "offline" else dest.action_source
    policy = dest.match_policy or DIALECT.default_match_policy
    user_data = user_data_for(_raw_user(payload), dest, event_time, now, action_source, policy)
    custom = _custom_data(payload, dest)
    event_id = text(get(payload, f"{FB}.event_id")) or ctx.digest()
    if "order_id" not in custom and "item_number" not in custom and action_source != "website":
        custom["item_number"] = dedup_item_number(event_id)  # see dedup_item_number
    base: ServerEvent = compact(
        {
            "event_time": event_time,
            "event_id": event_id,
            "action_source": action_source,
            "event_source_url": text(first(payload, ("url", "context.page.url"))),
            "user_data": user_data,
        }
    )
    base.update(_ldu(payload, dest))

    def build(name: str, _via_mapping: bool) -> ServerEvent:
        if name == "Purchase" and "value" not in custom:
            raise Rejected("missing_value", "a Purchase needs a value (amount)")
        return {"event_name": name, **base, "custom_data": dict(custom)}

    return fan_out(source_name, dest, builtin, DIALECT.default_unmapped, build, dest.upload_tag)


DIALECT = Dialect(
    "commandersact", transform, default_unmapped="passthrough", default_match_policy="commandersact"
)
