"""Segment / RudderStack `track` calls (SPEC §6 "segment / rudderstack", with §3 to §5 and §7).

Paths are read from a handful of objects fetched once per record (traits, context.traits, their
`address` objects, properties, the two integration keys) rather than through dotted-path lookups:
that keeps a track call at a few dozen dict lookups. The first non-empty path wins (SPEC §6).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pycountry

from consumer.capi.event import Output, RecordContext, ServerEvent, compact, parse_time_ms
from consumer.config import ACTION_SOURCES, DestinationSettings
from consumer.dialects import Dialect
from consumer.dialects.common import (
    MAX_SAFE_INT,
    ZIP_NAMES,
    is_empty,
    is_pii_key,
    number,
    quantity,
    text,
    user_data_for,
)
from consumer.errors import Rejected
from consumer.routing import fan_out

# `<FB>` in SPEC §6: Segment's key, then RudderStack's.
INTEGRATION_KEYS = ("Facebook Offline Conversions", "FacebookOfflineConversions")

BUILTIN_EVENTS = {
    "Products Searched": "Search",
    "Product Viewed": "ViewContent",
    "Product List Viewed": "ViewContent",
    "Product Added to Wishlist": "AddToWishlist",
    "Product Added": "AddToCart",
    "Checkout Started": "InitiateCheckout",
    "Payment Info Entered": "AddPaymentInfo",
    "Order Completed": "Purchase",
}
PRODUCT_LIST_VIEWED = "Product List Viewed"

ID_NAMES = ("userId", "id")
BIRTHDAY_NAMES = ("birthday", "dateOfBirth", "dateofbirth", "dob", "DOB")
FIRST_NAMES = ("firstName", "firstname", "first_name")
LAST_NAMES = ("lastName", "lastname", "last_name")
ADDRESS = {"ct": ("city",), "st": ("state",), "zp": ZIP_NAMES, "country": ("country",)}
PRODUCT_ID_NAMES = ("product_id", "id", "sku")

# Properties mapped to a field of their own (SPEC §6); the destination's value_field joins them.
MAPPED_PROPERTIES = frozenset({
    "value", "revenue", "total", "price", "currency", "products", "order_id", "orderId",
    "item_number", "upload_tag", "url", "action_source",
})
PURCHASE_VALUE_FIELDS = ("revenue", "total", "value", "price")

MAX_CUSTOM_DEPTH = 32  # deeper custom property values are dropped (orjson stops at 255)
_INT_RANGE = range(-(2**63), 2**64)  # what orjson can encode
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@cache
def iso_4217() -> frozenset[str]:
    return frozenset(str(c.alpha_3) for c in pycountry.currencies)


def _is_obj(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # dict first: no ABC check


def _obj(value: Any) -> Mapping[str, Any]:
    if type(value) is dict:
        return value
    return value if value is not None and isinstance(value, Mapping) else _EMPTY


def _pick(objs: Iterable[Mapping[str, Any]], names: Sequence[str]) -> str | None:
    """The first non-empty text among `obj.name` for each object, each name in turn."""
    for obj in objs:
        for name in names:
            value = obj.get(name)
            if value is None:
                continue
            found = value.strip() if type(value) is str else text(value)
            if found:
                return found
    return None


def _one(value: str | None) -> list[str]:
    return [value] if value else []


class _Track:
    """The objects of one track call that the SPEC's paths run through."""

    __slots__ = ("context", "ctraits", "fb", "places", "props", "traits", "traits_objs")

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self.traits = traits = _obj(payload.get("traits"))
        self.context = context = _obj(payload.get("context"))
        self.ctraits = ctraits = _obj(context.get("traits"))
        self.props = _obj(payload.get("properties"))
        integrations = _obj(payload.get("integrations"))
        self.fb = tuple(_obj(integrations.get(key)) for key in INTEGRATION_KEYS)
        # traits, context.traits (the empty ones left out: fewer lookups), then their addresses
        self.traits_objs = tuple(o for o in (traits, ctraits) if o)
        self.places = self.traits_objs + tuple(
            a for a in (_obj(traits.get("address")), _obj(ctraits.get("address"))) if a)

    def integration(self, name: str) -> Any:
        """`integrations.<FB>.<name>`, the first non-empty of the two keys."""
        for fb in self.fb:
            value = fb.get(name)
            if not is_empty(value):
                return value
        return None

    def external_ids(self, id_type: str) -> list[str]:
        """ids of the `context.externalId` entries of type `id_type` (any case)."""
        entries = self.context.get("externalId")
        if not isinstance(entries, list):
            return []
        found = []
        for entry in entries:
            if isinstance(entry, Mapping) and str(entry.get("type", "")).lower() == id_type:
                value = text(entry.get("id"))
                if value:
                    found.append(value)
        return found


def _raw_user(track: _Track, payload: Mapping[str, Any], event_ms: int) -> dict[str, list[str]]:
    traits, ctraits, context = track.traits, track.ctraits, track.context
    both = track.traits_objs
    first_name, last_name = _pick(both, FIRST_NAMES), _pick(both, LAST_NAMES)
    if not (first_name and last_name):  # else `name`: first word → fn, last word → ln
        words = (_pick(both, ("name",)) or "").split()
        first_name = first_name or (words[0] if words else None)
        last_name = last_name or (words[-1] if len(words) > 1 else None)
    email = _pick((traits, ctraits, track.props), ("email",))
    raw: dict[str, list[str]] = {
        "external_id": _one(text(payload.get("userId")) or _pick(both, ID_NAMES)
                            or text(payload.get("anonymousId"))),
        "em": [email] if email else track.external_ids("email"),
        "ph": _one(_pick((traits, ctraits, track.props), ("phone",))),
        "ge": _one(_pick(both, ("gender",))),
        "db": _one(_pick(both, BIRTHDAY_NAMES)),
        "fn": _one(first_name),
        "ln": _one(last_name),
    }
    for key, names in ADDRESS.items():
        raw[key] = _one(_pick(track.places, names))
    raw["madid"] = _one(text(_obj(context.get("device")).get("advertisingId")))
    raw["client_user_agent"] = _one(text(context.get("userAgent")))
    raw["client_ip_address"] = _one(text(context.get("ip")))
    raw["fbp"] = _one(text(context.get("fbp")))
    raw["fbc"] = _one(text(context.get("fbc")) or _fbc_from_url(
        _obj(context.get("page")).get("url"), event_ms))
    lead_ids = track.external_ids("leadid")
    raw["lead_id"] = lead_ids[:1] or _one(text(track.integration("leadId")))
    return raw


def _fbc_from_url(url: Any, event_ms: int) -> str | None:
    """`fb.1.<event ms>.<fbclid>` from the page URL's query; a malformed URL is ignored."""
    if not isinstance(url, str) or "fbclid=" not in url:
        return None
    try:
        fbclid = parse_qs(urlsplit(url).query).get("fbclid")
    except ValueError:
        return None
    return f"fb.1.{event_ms}.{fbclid[0].strip()}" if fbclid and fbclid[0].strip() else None


def _event_ms(payload: Mapping[str, Any], ctx: RecordContext) -> int:
    """timestamp, else originalTimestamp (the first that is a time), else the Kafka record's."""
    for key in ("timestamp", "originalTimestamp"):
        value = payload.get(key)
        if value is None:
            continue
        try:
            found = parse_time_ms(value)
        except (OverflowError, ValueError):  # digits beyond a float, years beyond datetime
            found = None
        if found is not None:
            return found
    return ctx.timestamp_ms


def _currency(props: Mapping[str, Any]) -> str:
    raw = props.get("currency")
    if is_empty(raw):
        return "USD"
    code = (text(raw) or "").upper()
    if code not in iso_4217():
        raise Rejected("invalid_currency", "currency is not an ISO 4217 code")
    return code


def _contents(products: Any) -> list[dict[str, Any]]:
    """`{id, quantity, item_price, brand, category}` per product with an id."""
    if not isinstance(products, list):
        return []
    contents = []
    for product in products:
        if not _is_obj(product):
            continue
        pid = _pick((product,), PRODUCT_ID_NAMES)
        if not pid:
            continue
        count = quantity(product.get("quantity"))
        item: dict[str, Any] = {"id": pid, "quantity": 1 if count is None else int(count)}
        price = number(product.get("price"))
        if price is not None:
            item["item_price"] = price
        for key in ("brand", "category"):
            found = text(product.get(key))
            if found:
                item[key] = found
        contents.append(item)
    return contents


def _products_total(products: Any) -> float | None:
    """The sum of price * quantity (quantity defaults to 1) over the products with a price."""
    if not isinstance(products, list):
        return None
    total, priced = 0.0, False
    for product in products:
        if not _is_obj(product):
            continue
        price = number(product.get("price"))
        if price is None:
            continue
        count = quantity(product.get("quantity"))
        total += price * (1.0 if count is None else count)
        priced = True
    if not priced:
        return None
    total = round(total, 2)
    return total if math.isfinite(total) else None


def _value(props: Mapping[str, Any], purchase: bool, value_field: str) -> float | None:
    """Purchase: revenue, total, value, price, else the products' sum of price * quantity.
    Others: the destination's value_field, value, price; else no value."""
    fields = PURCHASE_VALUE_FIELDS if purchase else (value_field, "value", "price")
    for field in fields:
        found = number(props.get(field))
        if found is not None:
            return found
    return _products_total(props.get("products")) if purchase else None


def _clean(value: Any, depth: int = 0) -> Any:
    """A custom property as orjson can encode it, without PII keys at any depth; None to drop."""
    if isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return value if value in _INT_RANGE else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_CUSTOM_DEPTH:
        return None
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(key, str) and not is_pii_key(key):
                cleaned = _clean(item, depth + 1)
                if cleaned is not None:
                    out[key] = cleaned
        return out
    if isinstance(value, list):
        return [_clean(item, depth + 1) for item in value]
    return None


def _custom_properties(props: Mapping[str, Any], value_field: str) -> dict[str, Any]:
    """The remaining properties: not mapped to a field of their own, not PII (SPEC §6)."""
    extra = {}
    for key, value in props.items():
        if (value is None or key in MAPPED_PROPERTIES or key == value_field
                or not isinstance(key, str) or is_pii_key(key)):
            continue
        cleaned = _clean(value)
        if cleaned is not None:
            extra[key] = cleaned
    return extra


def _ldu_code(value: Any) -> int | None:
    code = number(value)
    return int(code) if code is not None and code.is_integer() and 0 <= code < MAX_SAFE_INT else None


def _ldu(track: _Track, dest: DestinationSettings) -> dict[str, Any]:
    """`[[options], country, state]` from integrations.<FB> or context, when LDU is on."""
    mode = dest.limited_data_use
    if mode is False or mode == "never":
        return {}
    options = track.integration("dataProcessingOptions")
    if options is None:
        options = track.context.get("dataProcessingOptions")
    if not isinstance(options, list) or not options:
        # on but absent: explicitly no LDU; `when_location_known` needs the location
        return {} if mode == "when_location_known" else {"data_processing_options": []}
    head = options[0]
    chosen = head if isinstance(head, list) else [head]
    out: dict[str, Any] = {"data_processing_options": [t for t in map(text, chosen) if t]}
    for index, suffix in ((1, "country"), (2, "state")):
        code = _ldu_code(options[index]) if len(options) > index else None
        if code is not None:
            out[f"data_processing_options_{suffix}"] = code
    return out


def _event_id(payload: Mapping[str, Any], ctx: RecordContext) -> str:
    message_id = text(payload.get("messageId"))
    if message_id:
        return message_id
    return ctx.digest()


def transform(payload: Mapping[str, Any], ctx: RecordContext, dest: DestinationSettings,
              now: int) -> list[Output]:
    if payload.get("type") != "track":
        raise Rejected("unsupported_type", "only track calls are sent")
    source_name = text(payload.get("event"))
    if not source_name:
        raise Rejected("missing_event", "the track call has no event name")
    track = _Track(payload)
    props = track.props

    event_ms = _event_ms(payload, ctx)
    event_time = event_ms // 1000
    asked = _pick((track.traits, track.ctraits, props), ("action_source",))
    action_source = asked if asked is not None and asked in ACTION_SOURCES else dest.action_source
    policy = dest.match_policy or DIALECT.default_match_policy
    user_data = user_data_for(_raw_user(track, payload, event_ms), dest, event_time, now,
                              action_source, policy)

    currency = _currency(props)
    value_field = dest.value_field.removeprefix("properties.")
    products = props.get("products")
    contents = _contents(products)
    content_ids = list(dict.fromkeys(c["id"] for c in contents))
    category = text(props.get("category"))
    if not content_ids and source_name == PRODUCT_LIST_VIEWED and category:
        content_ids = [category]
    if not category and isinstance(products, list) and products:
        category = text(_obj(products[0]).get("category"))  # the first product's
    explicit_type = text(track.integration("contentType"))
    category_type = dest.category_content_types.get(category) if category else None
    order_id = _pick((props,), ("order_id", "orderId"))
    item_number = text(props.get("item_number"))
    extra = _custom_properties(props, value_field)

    base: ServerEvent = {"event_time": event_time, "event_id": _event_id(payload, ctx),
                         "action_source": action_source}
    url = text(_obj(track.context.get("page")).get("url")) or text(props.get("url"))
    if url:
        base["event_source_url"] = url
    base["user_data"] = user_data
    base.update(_ldu(track, dest))

    def content_type(name: str, via_mapping: bool) -> str:
        if explicit_type:
            return explicit_type
        if category_type:
            return category_type
        if source_name == PRODUCT_LIST_VIEWED or (name == "ViewContent" and via_mapping):
            return "product" if contents else "product_group"
        return "product"

    def build(name: str, via_mapping: bool) -> ServerEvent:
        purchase = name == "Purchase"
        value = _value(props, purchase, value_field)
        if purchase and value is None:
            raise Rejected("missing_value", "a Purchase needs revenue, total, value, price or "
                           "priced products")
        custom = compact({
            **extra,
            "value": value,
            "currency": currency,
            "contents": contents,
            "content_ids": content_ids,
            "content_type": content_type(name, via_mapping),
            "order_id": order_id,
            "item_number": item_number,
        })
        return {"event_name": name, **base, "custom_data": custom}

    upload_tag = text(props.get("upload_tag")) or dest.upload_tag
    return fan_out(source_name, dest, BUILTIN_EVENTS, DIALECT.default_unmapped, build, upload_tag)


DIALECT = Dialect("segment", transform)
