"""Segment / RudderStack `properties` (docs/dialects.md#segment): currency, contents, value and the custom
properties that are left over."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache
from typing import Any, Final

import pycountry

from consumer.core.capi.event import is_empty, is_mapping
from consumer.core.dialects.common import number, quantity, text
from consumer.core.dialects.segment.track import obj, pick
from consumer.errors import Rejected

PRODUCT_ID_NAMES: Final = ("product_id", "id", "sku")

# Properties with a field of their own (docs/dialects.md#segment); the destination's value_field joins them.
MAPPED_PROPERTIES: Final = frozenset(
    {
        "value",
        "revenue",
        "total",
        "price",
        "currency",
        "products",
        "order_id",
        "orderId",
        "item_number",
        "upload_tag",
        "url",
        "action_source",
    }
)
PURCHASE_VALUE_FIELDS: Final = ("revenue", "total", "value", "price")

MAX_CUSTOM_DEPTH: Final = 32  # deeper custom property values are dropped (orjson stops at 255)
_INT_RANGE: Final = range(-(2**63), 2**64)  # what orjson can encode


@cache
def iso_4217() -> frozenset[str]:
    return frozenset(str(c.alpha_3) for c in pycountry.currencies)


def currency_of(props: Mapping[str, Any]) -> str:
    raw = props.get("currency")
    if is_empty(raw):
        return "USD"
    code = (text(raw) or "").upper()
    if code not in iso_4217():
        raise Rejected("invalid_currency", "currency is not an ISO 4217 code")
    return code


def contents_of(products: Any) -> list[dict[str, Any]]:
    """`{id, quantity, item_price, brand, category}` per product with an id."""
    if not isinstance(products, list):
        return []
    contents = []
    for given in products:
        if not is_mapping(given):
            continue
        product = obj(given)  # a dict: compiled code reads it directly
        pid = pick((product,), PRODUCT_ID_NAMES)
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


def products_total(products: Any) -> float | None:
    """The sum of price * quantity (quantity defaults to 1) over the products with a price."""
    if not isinstance(products, list):
        return None
    total, priced = 0.0, False
    for product in products:
        if not is_mapping(product):
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


def value_of(props: Mapping[str, Any], purchase: bool, value_field: str) -> float | None:
    """Purchase: revenue, total, value, price, else the products' sum of price * quantity.
    Others: the destination's value_field, value, price; else no value."""
    fields = PURCHASE_VALUE_FIELDS if purchase else (value_field, "value", "price")
    for field in fields:
        found = number(props.get(field))
        if found is not None:
            return found
    return products_total(props.get("products")) if purchase else None


def clean(value: Any, depth: int = 0) -> Any:
    """A custom property as orjson can encode it; None to drop. (Customer data is screened out
    later, for every dialect: consumer/core/dialects/screening.py.)"""
    if isinstance(value, str) or isinstance(value, bool):  # noqa: SIM101 - compiled: no union object
        return value
    if isinstance(value, int):
        return value if value in _INT_RANGE else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_CUSTOM_DEPTH:
        return None
    if is_mapping(value):
        out = {}
        for key, item in value.items():
            if isinstance(key, str):
                cleaned = clean(item, depth + 1)
                if cleaned is not None:
                    out[key] = cleaned
        return out
    if isinstance(value, list):
        return [clean(item, depth + 1) for item in value]
    return None


def custom_properties(props: Mapping[str, Any], value_field: str) -> dict[str, Any]:
    """The remaining properties: those not mapped to a field of their own (docs/dialects.md#segment)."""
    extra = {}
    for key, value in props.items():
        if value is None or key in MAPPED_PROPERTIES or key == value_field or not isinstance(key, str):
            continue
        cleaned = clean(value)
        if cleaned is not None:
            extra[key] = cleaned
    return extra
