"""Segment / RudderStack `track` calls (SPEC §6 "segment / rudderstack")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from consumer.capi.event import Output, RecordContext, ServerEvent, compact, parse_time_ms
from consumer.config import ACTION_SOURCES, DestinationSettings
from consumer.dialects import Dialect
from consumer.dialects.common import first, get, number, text, under, user_data_for
from consumer.errors import Rejected
from consumer.routing import fan_out

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

TRAITS = ("traits", "context.traits")
ZIP_NAMES = ("zip", "zipcode", "zip_code", "zipCode", "postalcode", "postal_code", "postalCode")
ADDRESS = {"ct": ("city",), "st": ("state",), "zp": ZIP_NAMES, "country": ("country",)}
PII_PROPERTIES = frozenset({
    "email", "phone", "name", "firstName", "firstname", "first_name", "lastName", "lastname",
    "last_name", "birthday", "dateOfBirth", "dateofbirth", "dob", "DOB", "address", "street",
    "city", "state", "country", *ZIP_NAMES, "gender",
})
MAPPED_PROPERTIES = frozenset({
    "value", "revenue", "total", "price", "currency", "products", "order_id", "orderId",
    "item_number", "upload_tag", "url", "action_source",
})
PURCHASE_VALUE_FIELDS = ("revenue", "total", "value", "price")


def _integration(payload: Mapping[str, Any], key: str) -> Any:
    return first(payload, [f"integrations.{name}.{key}" for name in INTEGRATION_KEYS])


def _external_ids(payload: Mapping[str, Any], id_type: str) -> list[str]:
    entries = get(payload, "context.externalId")
    if not isinstance(entries, list):
        return []
    out = []
    for entry in entries:
        if isinstance(entry, Mapping) and str(entry.get("type", "")).lower() == id_type.lower():
            value = text(entry.get("id"))
            if value:
                out.append(value)
    return out


def _raw_user(payload: Mapping[str, Any]) -> dict[str, list[str]]:
    def values(*paths: str) -> list[str]:
        found = (text(get(payload, p)) for p in paths)
        return [v for v in found if v]

    raw: dict[str, list[str]] = {
        "external_id": values("userId", "traits.userId", "traits.id", "context.traits.userId",
                              "context.traits.id", "anonymousId")[:1],
        "em": values("traits.email", "context.traits.email", "properties.email")
        + _external_ids(payload, "email"),
        "ph": values("traits.phone", "context.traits.phone", "properties.phone"),
        "ge": values(*under(TRAITS, ["gender"]))[:1],
        "db": values(*under(TRAITS, ["birthday", "dateOfBirth", "dateofbirth", "dob", "DOB"]))[:1],
        "fn": values(*under(TRAITS, ["firstName", "firstname", "first_name"]))[:1],
        "ln": values(*under(TRAITS, ["lastName", "lastname", "last_name"]))[:1],
    }
    if not raw["fn"] and not raw["ln"]:
        name = text(first(payload, under(TRAITS, ["name"])))
        words = name.split() if name else []
        if words:
            raw["fn"], raw["ln"] = [words[0]], [words[-1]] if len(words) > 1 else []
    prefixes = ("traits", "context.traits", "traits.address", "context.traits.address")
    for key, names in ADDRESS.items():
        raw[key] = values(*under(prefixes, names))[:1]
    for key, path in (("madid", "context.device.advertisingId"),
                      ("client_user_agent", "context.userAgent"), ("client_ip_address", "context.ip"),
                      ("fbp", "context.fbp"), ("fbc", "context.fbc")):
        raw[key] = values(path)
    raw["lead_id"] = _external_ids(payload, "LeadId") + values(
        *[f"integrations.{n}.leadId" for n in INTEGRATION_KEYS])
    return raw


def _fbc_from_url(url: Any, event_ms: int) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        fbclid = parse_qs(urlsplit(url).query).get("fbclid")
    except ValueError:  # a malformed URL is ignored, never an error
        return None
    return f"fb.1.{event_ms}.{fbclid[0]}" if fbclid else None


def _value(props: Mapping[str, Any], name: str, value_field: str) -> float | None:
    if name == "Purchase":
        fields: tuple[str, ...] = PURCHASE_VALUE_FIELDS
    else:
        fields = (value_field.removeprefix("properties."), "value", "price")
    for field in fields:
        found = number(props.get(field))
        if found is not None:
            return found
    if name != "Purchase":
        return None
    products = props.get("products")
    if not isinstance(products, list):
        return None
    prices = [(number(p.get("price")), number(p.get("quantity")) or 1.0)
              for p in products if isinstance(p, Mapping)]
    priced = [price * qty for price, qty in prices if price is not None]
    return round(sum(priced), 2) if priced else None


def _contents(products: Any) -> list[dict[str, Any]]:
    if not isinstance(products, list):
        return []
    contents = []
    for product in products:
        if not isinstance(product, Mapping):
            continue
        pid = text(first(product, ("product_id", "id", "sku")))
        if not pid:
            continue
        quantity = number(product.get("quantity"))
        contents.append(compact({
            "id": pid,
            "quantity": int(quantity) if quantity is not None else 1,
            "item_price": number(product.get("price")),
            "brand": text(product.get("brand")),
            "category": text(product.get("category")),
        }))
    return contents


def _content_type(payload: Mapping[str, Any], dest: DestinationSettings, name: str,
                  via_mapping: bool, has_products: bool) -> str:
    explicit = text(_integration(payload, "contentType"))
    if explicit:
        return explicit
    category = text(get(payload, "properties.category")) or text(_first_category(payload))
    if category and category in dest.category_content_types:
        return dest.category_content_types[category]
    if get(payload, "event") == "Product List Viewed" or (name == "ViewContent" and via_mapping):
        return "product" if has_products else "product_group"
    return "product"


def _first_category(payload: Mapping[str, Any]) -> Any:
    products = get(payload, "properties.products")
    if isinstance(products, list) and products and isinstance(products[0], Mapping):
        return products[0].get("category")
    return None


def _ldu(payload: Mapping[str, Any], dest: DestinationSettings) -> dict[str, Any]:
    if dest.limited_data_use is not True:
        return {}
    options = _integration(payload, "dataProcessingOptions") or get(
        payload, "context.dataProcessingOptions")
    if not isinstance(options, list) or not options:
        return {"data_processing_options": []}
    chosen = options[0] if isinstance(options[0], list) else [options[0]]
    out: dict[str, Any] = {"data_processing_options": [str(o) for o in chosen]}
    if len(options) > 1 and number(options[1]) is not None:
        out["data_processing_options_country"] = int(number(options[1]) or 0)
    if len(options) > 2 and number(options[2]) is not None:
        out["data_processing_options_state"] = int(number(options[2]) or 0)
    return out


def transform(payload: Mapping[str, Any], ctx: RecordContext, dest: DestinationSettings,
              now: int) -> list[Output]:
    if payload.get("type") != "track":
        raise Rejected("unsupported_type", "only track calls are sent")
    source_name = text(payload.get("event"))
    if not source_name:
        raise Rejected("missing_event", "the track call has no event name")
    props = payload.get("properties")
    props = props if isinstance(props, Mapping) else {}

    event_ms = parse_time_ms(first(payload, ("timestamp", "originalTimestamp")))
    if event_ms is None:
        event_ms = ctx.timestamp_ms
    event_time = event_ms // 1000

    action_source = text(first(payload, under(("traits", "context.traits", "properties"),
                                              ["action_source"])))
    if action_source not in ACTION_SOURCES:
        action_source = dest.action_source

    raw = _raw_user(payload)
    if not raw["fbc"]:
        fbc = _fbc_from_url(get(payload, "context.page.url"), event_ms)
        raw["fbc"] = [fbc] if fbc else []
    policy = dest.match_policy or DIALECT.default_match_policy
    user_data = user_data_for(raw, dest, event_time, now, action_source, policy)

    currency = (text(props.get("currency")) or "USD").upper()
    if len(currency) != 3 or not currency.isalpha():
        raise Rejected("invalid_currency", "currency is not an ISO 4217 code")
    contents = _contents(props.get("products"))
    content_ids = [c["id"] for c in contents]
    if not content_ids and source_name == "Product List Viewed" and text(props.get("category")):
        content_ids = [text(props.get("category"))]
    extra = {k: v for k, v in props.items()
             if k not in PII_PROPERTIES and k not in MAPPED_PROPERTIES and v is not None}
    base: ServerEvent = compact({
        "event_time": event_time,
        "event_id": text(payload.get("messageId")) or ctx.digest(),
        "action_source": action_source,
        "event_source_url": text(first(payload, ("context.page.url", "properties.url"))),
        "user_data": user_data,
    })
    base.update(_ldu(payload, dest))

    def build(name: str, via_mapping: bool) -> ServerEvent:
        value = _value(props, name, dest.value_field)
        if name == "Purchase" and value is None:
            raise Rejected("missing_value", "a Purchase needs a value")
        custom = compact({
            **extra,
            "value": value,
            "currency": currency,
            "contents": contents,
            "content_ids": content_ids,
            "content_type": _content_type(payload, dest, name, via_mapping, bool(contents)),
            "order_id": text(first(props, ("order_id", "orderId"))),
            "item_number": text(props.get("item_number")),
        })
        return {"event_name": name, **base, "custom_data": custom}

    upload_tag = text(props.get("upload_tag")) or dest.upload_tag
    return fan_out(source_name, dest, BUILTIN_EVENTS, DIALECT.default_unmapped, build, upload_tag)


DIALECT = Dialect("segment", transform)
