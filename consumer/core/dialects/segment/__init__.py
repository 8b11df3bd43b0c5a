"""Segment / RudderStack `track` calls (docs/dialects.md#segment).

`track.py` reads the call's objects and customer fields, `properties.py` its commerce properties;
here they become one server event per output name and event set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from consumer.config.settings import ACTION_SOURCES, DestinationSettings
from consumer.core.capi.event import Output, RecordContext, ServerEvent, compact
from consumer.core.dialects import Dialect
from consumer.core.dialects.common import dedup_item_number, text, user_data_for
from consumer.core.dialects.segment.properties import contents_of, currency_of, custom_properties, value_of
from consumer.core.dialects.segment.track import Track, event_ms_of, ldu, obj, pick, raw_user
from consumer.core.routing import fan_out
from consumer.errors import Rejected

__all__ = ["DIALECT", "transform"]

BUILTIN_EVENTS: Final = {
    "Products Searched": "Search",
    "Product Viewed": "ViewContent",
    "Product List Viewed": "ViewContent",
    "Product Added to Wishlist": "AddToWishlist",
    "Product Added": "AddToCart",
    "Checkout Started": "InitiateCheckout",
    "Payment Info Entered": "AddPaymentInfo",
    "Order Completed": "Purchase",
}
PRODUCT_LIST_VIEWED: Final = "Product List Viewed"


def _event_id(call: dict[str, Any], ctx: RecordContext) -> str:
    message_id = text(call.get("messageId"))
    if message_id:
        return message_id
    return ctx.digest()


def _content_type(source_name: str, name: str, via_mapping: bool, has_contents: bool) -> str:
    """content_type when neither integrations.<FB>.contentType nor the category's type sets it."""
    if source_name == PRODUCT_LIST_VIEWED or (name == "ViewContent" and via_mapping):
        return "product" if has_contents else "product_group"
    return "product"


def transform(
    payload: Mapping[str, Any], ctx: RecordContext, dest: DestinationSettings, now: int
) -> list[Output]:
    call = obj(payload)  # a dict: compiled code reads it directly
    if call.get("type") != "track":
        raise Rejected("unsupported_type", "only track calls are sent")
    source_name = text(call.get("event"))
    if not source_name:
        raise Rejected("missing_event", "the track call has no event name")
    track = Track(call)
    props = track.props

    event_ms = event_ms_of(call, ctx)
    event_time = event_ms // 1000
    asked = pick((track.traits, track.ctraits, props), ("action_source",))
    action_source = asked if asked is not None and asked in ACTION_SOURCES else dest.action_source
    policy = dest.match_policy or DIALECT.default_match_policy
    user_data = user_data_for(raw_user(track, call, event_ms), dest, event_time, now, action_source, policy)

    currency = currency_of(props)
    value_field = dest.value_field.removeprefix("properties.")
    products = props.get("products")
    contents = contents_of(products)
    ids: dict[str, None] = {}  # de-duplicated in order, without a generator
    for content in contents:
        ids[content["id"]] = None
    content_ids = list(ids)
    category = text(props.get("category"))
    if not content_ids and source_name == PRODUCT_LIST_VIEWED and category:
        content_ids = [category]
    if not category and isinstance(products, list) and products:
        category = text(obj(products[0]).get("category"))  # the first product's
    explicit_type = text(track.integration("contentType"))
    category_type = dest.category_content_types.get(category) if category else None
    order_id = pick((props,), ("order_id", "orderId"))
    item_number = text(props.get("item_number"))
    extra = custom_properties(props, value_field)
    event_id = _event_id(call, ctx)
    if item_number is None and order_id is None and action_source != "website":
        item_number = dedup_item_number(event_id)  # else Meta's offline dedup may merge records

    base: ServerEvent = {"event_time": event_time, "event_id": event_id, "action_source": action_source}
    url = text(obj(track.context.get("page")).get("url")) or text(props.get("url"))
    if url:
        base["event_source_url"] = url
    base["user_data"] = user_data
    base.update(ldu(track, dest))

    # `build` is the only nested function: compiled by mypyc, nested functions that call each other
    # form a reference cycle holding the whole record until the cyclic collector runs.
    def build(name: str, via_mapping: bool) -> ServerEvent:
        purchase = name == "Purchase"
        value = value_of(props, purchase, value_field)
        if purchase and value is None:
            raise Rejected(
                "missing_value", "a Purchase needs revenue, total, value, price or priced products"
            )
        custom = compact(
            {
                **extra,
                "value": value,
                "currency": currency,
                "contents": contents,
                "content_ids": content_ids,
                "content_type": explicit_type
                or category_type
                or _content_type(source_name, name, via_mapping, bool(contents)),
                "order_id": order_id,
                "item_number": item_number,
            }
        )
        return {"event_name": name, **base, "custom_data": custom}

    upload_tag = text(props.get("upload_tag")) or dest.upload_tag
    return fan_out(source_name, dest, BUILTIN_EVENTS, DIALECT.default_unmapped, build, upload_tag)


DIALECT = Dialect("segment", transform)
