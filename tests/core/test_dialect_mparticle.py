"""The mparticle dialect (docs/dialects.md#mparticle).

Golden tests use the seed page's own tables (event names, match keys, other attributes) on an
mParticle batch; every hash is computed here from the normalised plaintext, so a reader sees
what was hashed.
"""

from __future__ import annotations

import hashlib
import io
from copy import deepcopy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.adapters.codec import AvroSchema
from consumer.config.settings import DestinationSettings, parse_settings
from consumer.core.capi.event import Output, RecordContext
from consumer.core.dialects import get_dialect
from consumer.core.dialects.common import dedup_item_number
from consumer.core.dialects.mparticle import transform as bare_transform
from consumer.errors import Filtered, Rejected
from consumer.ops.cli import preview_lines
from consumer.sandbox.validate import check_event
from tests.fuzz import DELETE, mutate, paths
from tests.garbage import cyclic_garbage

# What the service runs: the dialect's events screened and checked on the way out.
transform = get_dialect("mparticle").transform

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = AvroSchema.from_file(ROOT / "schemas" / "mparticle_batch.avsc")
NOW = int(datetime(2026, 7, 1, 12, tzinfo=UTC).timestamp())
T = NOW - 3600  # the batch's events happened an hour ago
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sha(plain: str) -> str:
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def ms(offset_s: int = 0) -> int:
    return (T + offset_s) * 1000


def dest(**options: Any) -> DestinationSettings:
    return DestinationSettings(name="main", **{"default_event_sets": ["900"], **options})


def run(batch: dict[str, Any], now: int = NOW, kafka_ms: int = NOW * 1000, **options: Any) -> list[Output]:
    return transform(batch, RecordContext(kafka_ms, batch), dest(**options), now)


def commerce(action: str, message_id: str | None, offset_s: int = 0, **product_action: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "timestamp_unixtime_ms": ms(offset_s),
        "product_action": {"action": action, **product_action},
    }
    if message_id is not None:
        data["source_message_id"] = message_id
    return {"event_type": "commerce_event", "data": data}


def custom_event(name: str = "Store Visit") -> dict[str, Any]:
    return {
        "event_type": "custom_event",
        "data": {
            "event_name": name,
            "custom_event_type": "other",
            "timestamp_unixtime_ms": ms(-120),
            "source_message_id": "msg-custom",
            "custom_attributes": {"aisle": "7"},
        },
    }


PURCHASE: dict[str, Any] = {
    "event_type": "commerce_event",
    "data": {
        "timestamp_unixtime_ms": ms(0),
        "source_message_id": "msg-purchase",
        "currency_code": "usd",
        "custom_attributes": {
            "store_id": "NOLA-7",
            "register": 3,
            "gift": True,
            "basket_score": 0.75,
            "Email": "jane@example.com",
            "$FirstName": "Jane",
            "phone_number": "2025550146",
            "Zip Code": "70112",
            "loyalty_tier": None,
        },
        "product_action": {
            "action": "purchase",
            "transaction_id": "order-1001",
            "total_amount": 430.0,
            "tax_amount": 30.0,
            "shipping_amount": 0.0,
            "products": [
                {
                    "id": "sku-1",
                    "name": "Boots",
                    "brand": "Acme",
                    "category": "Shoes",
                    "price": 200.0,
                    "quantity": 2,
                },
                {"name": "gift wrap without an id", "price": 30.0, "quantity": 1},
            ],
        },
    },
}


def seed_batch() -> dict[str, Any]:
    """A batch as mParticle's custom feed sends it: the seed's five product actions (table order),
    a custom event and a refund (neither sent)."""
    return {
        "schema_version": 2,
        "environment": "production",
        "source_request_id": "req-1",
        "mpid": 8675309,
        "timestamp_unixtime_ms": ms(60),
        "ip": "203.0.113.9",
        "user_identities": {
            "email": "  Jane.Doe@Example.com ",
            "customer_id": "cust-42",
            "other": "jane@other.example",
        },
        "user_attributes": {
            "$FirstName": "Jane",
            "$LastName": "O'Brien",
            "$Gender": "Female",
            "$City": "New Orleans",
            "$State": "Louisiana",
            "$Zip": "70112-1234",
            "$Country": "United States",
            "$Mobile": "+1 (202) 555-0146",
            "loyalty_tier": "gold",
            "favourite_colours": ["red", "blue"],
        },
        "device_info": {"ios_advertising_id": "607258d9-c28b-43ad-95ed-e9593025d5a1", "platform": "iOS"},
        "events": [
            commerce(
                "add_to_cart", "msg-cart", -300, products=[{"id": "sku-1", "price": 200.0, "quantity": 1}]
            ),
            commerce("add_to_wishlist", "msg-wish", -280, products=[{"id": "sku-2", "price": 15.5}]),
            custom_event(),
            commerce(
                "checkout",
                "msg-checkout",
                -200,
                total_amount=400.0,
                products=[{"id": "sku-1", "price": 200.0, "quantity": 2}],
            ),
            deepcopy(PURCHASE),
            commerce("refund", "msg-refund", 30, transaction_id="order-0999", total_amount=12.0),
            commerce("view_detail", "msg-view", 60, products=[{"id": "sku-3", "price": 99.0}]),
        ],
    }


USER_DATA = {  # the seed batch's user, normalised per docs/dialects.md#normalisation, then hashed
    "em": [sha("jane.doe@example.com")],
    "ph": [sha("12025550146")],
    "fn": [sha("jane")],
    "ln": [sha("obrien")],
    "ge": [sha("f")],
    "ct": [sha("neworleans")],
    "st": [sha("la")],
    "zp": [sha("70112")],
    "country": [sha("us")],
    "external_id": [sha("cust-42")],
    "madid": "607258d9-c28b-43ad-95ed-e9593025d5a1",  # advertising ids are never hashed
}


# -- golden tests from the seed page --------------------------------------------------------


def test_seed_event_name_table_uses_spec_names() -> None:
    """Seed table: Add to Cart, Add to Wishlist, Checkout, Purchase, View Detail. The seed sends
    the legacy "AddToWishList" and "Checkout"; fboc uses: AddToWishlist, InitiateCheckout."""
    outputs = run(seed_batch())
    names = [o.event.get("event_name") for o in outputs]
    assert names == ["AddToCart", "AddToWishlist", "InitiateCheckout", "Purchase", "ViewContent"]
    assert "AddToWishList" not in names
    assert "Checkout" not in names
    assert [o.event["event_id"] for o in outputs] == [
        "msg-cart",
        "msg-wish",
        "msg-checkout",
        "msg-purchase",
        "msg-view",
    ]
    assert all(o.event_set_id == "900" and o.upload_tag is None for o in outputs)


def test_golden_purchase_event() -> None:
    purchase = run(seed_batch())[3]
    assert purchase.event == {
        "event_name": "Purchase",
        "event_time": T,  # timestamp_unixtime_ms / 1000
        "event_id": "msg-purchase",  # source_message_id
        "action_source": "physical_store",
        "user_data": USER_DATA,
        "custom_data": {
            # the event's custom attributes, without PII keys (Email, $FirstName, phone_number,
            # Zip Code) and without nulls; scalar types kept
            "store_id": "NOLA-7",
            "register": 3,
            "gift": True,
            "basket_score": 0.75,
            "value": 430.0,  # product_action.total_amount
            "currency": "USD",  # currency_code, upper-cased
            "contents": [
                {"id": "sku-1", "quantity": 2, "item_price": 200.0, "brand": "Acme", "category": "Shoes"}
            ],  # the product without an id is skipped
            "content_ids": ["sku-1"],
            "content_type": "product",
            "order_id": "order-1001",  # transaction_id
        },
    }


def test_a_transform_leaves_no_cyclic_garbage() -> None:
    batch = seed_batch()
    assert cyclic_garbage(lambda: run(batch)) == 0


def test_golden_other_events_of_the_seed_batch() -> None:
    cart, wish, checkout, _purchase, view = (o.event for o in run(seed_batch()))
    assert cart == {
        "event_name": "AddToCart",
        "event_time": T - 300,
        "event_id": "msg-cart",
        "action_source": "physical_store",
        "user_data": USER_DATA,
        "custom_data": {
            "value": 200.0,
            "currency": "USD",
            "contents": [{"id": "sku-1", "quantity": 1, "item_price": 200.0}],
            "content_ids": ["sku-1"],
            "content_type": "product",
            # no transaction_id: an item_number from the event id (offline dedup)
            "item_number": dedup_item_number("msg-cart"),
        },
    }
    # no total_amount: price x quantity, quantity defaulting to 1
    assert wish["custom_data"] == {
        "value": 15.5,
        "currency": "USD",
        "contents": [{"id": "sku-2", "quantity": 1, "item_price": 15.5}],
        "content_ids": ["sku-2"],
        "content_type": "product",
        "item_number": dedup_item_number("msg-wish"),
    }
    assert checkout["custom_data"]["value"] == 400.0
    assert view["event_time"] == T + 60
    assert view["custom_data"]["value"] == 99.0


def test_two_add_to_cart_of_one_user_in_one_second_keep_distinct_dedup_keys() -> None:
    batch = seed_batch()
    batch["events"] = [
        commerce("add_to_cart", None, 0, products=[{"id": "a", "price": 3.0}]),
        commerce("add_to_cart", None, 0, products=[{"id": "a", "price": 3.0}]),
    ]
    first, second = (o.event for o in run(batch))
    assert first["event_time"] == second["event_time"]
    assert "order_id" not in first["custom_data"]
    assert first["custom_data"]["item_number"] != second["custom_data"]["item_number"]
    assert [o.event for o in run(batch)] == [first, second]  # a replay: the same keys
    # with a transaction_id the order is the key, as the advertiser meant it
    (purchase,) = (o.event for o in run(seed_batch()) if o.event["event_name"] == "Purchase")
    assert "item_number" not in purchase["custom_data"]


def test_value_without_total_amount_multiplies_price_by_quantity() -> None:
    """The seed says "summing the price of all products"; fboc: sum of price x quantity."""
    batch = seed_batch()
    batch["events"] = [
        commerce(
            "purchase",
            "m",
            products=[
                {"id": "a", "price": 10.25, "quantity": 3},
                {"id": "b", "price": 5.0},
                {"id": "c", "quantity": 4},
                {"id": "d", "quantity": 1e300},
            ],
        )
    ]
    (out,) = run(batch)
    assert out.event["custom_data"]["value"] == 35.75
    assert out.event["custom_data"]["contents"] == [
        {"id": "a", "quantity": 3, "item_price": 10.25},
        {"id": "b", "quantity": 1, "item_price": 5.0},
        {"id": "c", "quantity": 4},
        {"id": "d", "quantity": 1},
    ]  # an absurd quantity counts as 1


def test_match_keys_follow_spec_not_the_seed() -> None:
    """The seed hashes advertising ids and uses only some attributes; fboc: madid plain (ios,
    else android), and $state, $zip, $mobile as well."""
    batch = seed_batch()
    batch["device_info"] = {"android_advertising_id": "38400000-8cf0-11bd-b23e-10b96e40000d"}
    user_data = run(batch)[0].event["user_data"]
    assert user_data["madid"] == "38400000-8cf0-11bd-b23e-10b96e40000d"
    assert {"st", "zp", "ph"} <= set(user_data)


def test_a_zeroed_advertising_id_is_not_a_match_key() -> None:
    batch = seed_batch()
    batch["device_info"] = {
        "ios_advertising_id": "00000000-0000-0000-0000-000000000000",
        "android_advertising_id": "38400000-8cf0-11bd-b23e-10b96e40000d",
    }
    assert run(batch)[0].event["user_data"]["madid"] == "38400000-8cf0-11bd-b23e-10b96e40000d"
    batch["device_info"] = {"ios_advertising_id": "00000000-0000-0000-0000-000000000000"}
    assert "madid" not in run(batch)[0].event["user_data"]


def test_user_attribute_and_identity_keys_match_without_case() -> None:
    batch = seed_batch()
    batch["user_attributes"] = {"$firstname": "Jane", "$LASTNAME": "Doe"}
    batch["user_identities"] = {"Email": "jane@example.com"}
    user_data = run(batch)[0].event["user_data"]
    assert user_data["fn"] == [sha("jane")]
    assert user_data["ln"] == [sha("doe")]
    assert user_data["em"] == [sha("jane@example.com")]
    # the exact key wins over a case variant; among case variants, the first one
    batch["user_attributes"] = {
        "$FIRSTNAME": "Ann",
        "$firstname": "Jane",
        "$LastName": "Doe",
        "$LASTNAME": "Roe",
    }
    user_data = run(batch)[0].event["user_data"]
    assert (user_data["fn"], user_data["ln"]) == ([sha("jane")], [sha("doe")])


def test_email_identity_type_picks_the_identity_and_still_hashes_it() -> None:
    """The seed would forward a non-email identity unhashed; fboc hashes every em, and a
    value that is not an email address is dropped."""
    batch = seed_batch()
    (out, *_rest) = run(batch, email_identity_type="other")
    assert out.event["user_data"]["em"] == [sha("jane@other.example")]
    batch["user_identities"]["other"] = "not-an-email"
    assert "em" not in run(batch, email_identity_type="other")[0].event["user_data"]


def test_product_action_is_read_without_case_and_event_mapping_overrides_names() -> None:
    batch = seed_batch()
    batch["events"] = [commerce("Purchase", "m1", total_amount=5.0)]
    assert [o.event["event_name"] for o in run(batch)] == ["Purchase"]
    outputs = run(batch, event_mapping={"purchase": ["Purchase", "Lead"]})
    assert [o.event["event_name"] for o in outputs] == ["Purchase", "Lead"]


def test_category_content_types_and_upload_tag() -> None:
    outputs = run(
        seed_batch(), category_content_types={"Shoes": "product_group"}, upload_tag="store-sales-2026-07"
    )
    assert [o.event["custom_data"]["content_type"] for o in outputs] == [
        "product",
        "product",
        "product",
        "product_group",
        "product",
    ]
    assert {o.upload_tag for o in outputs} == {"store-sales-2026-07"}


# -- one record, several events -------------------------------------------------------------


def test_every_fanned_out_event_has_its_own_name() -> None:
    outputs = run(
        seed_batch(),
        default_event_sets=[],
        event_mapping={"view_detail": ["ViewContent", "Search"]},
        event_sets={"Purchase": ["1", "2"], "ViewContent": ["2"], "Search": ["3", "2"], "AddToCart": ["1"]},
    )
    pairs = [(o.event_set_id, o.event["event_name"], o.event["event_id"]) for o in outputs]
    assert pairs == [
        ("1", "AddToCart", "msg-cart"),
        ("1", "Purchase", "msg-purchase"),
        ("2", "Purchase", "msg-purchase"),
        ("2", "ViewContent", "msg-view"),
        ("3", "Search", "msg-view"),
        ("2", "Search", "msg-view"),
    ]
    view, search = outputs[3].event, outputs[4].event
    assert view is not search
    assert view["custom_data"] == search["custom_data"]


def test_events_without_an_event_set_are_skipped_unless_none_is_left() -> None:
    outputs = run(seed_batch(), default_event_sets=[], event_sets={"Purchase": ["1"]})
    assert [o.event["event_name"] for o in outputs] == ["Purchase"]
    with pytest.raises(Rejected) as info:
        run(seed_batch(), default_event_sets=[], event_sets={"Lead": ["1"]})
    assert info.value.reason == "no_event_set"


def test_an_event_without_an_event_set_is_not_checked() -> None:
    """A stale add_to_cart nobody receives must not sink the batch's Purchase."""
    batch = seed_batch()
    batch["events"][0] = commerce("add_to_cart", "old", -30 * 86400)
    outputs = run(batch, default_event_sets=[], event_sets={"Purchase": ["1"]}, action_source="email")
    assert [o.event["event_id"] for o in outputs] == ["msg-purchase"]


def test_non_qualifying_events_are_skipped_in_a_mixed_batch() -> None:
    ids = [o.event["event_id"] for o in run(seed_batch())]
    assert "msg-custom" not in ids
    assert "msg-refund" not in ids


def test_event_id_falls_back_to_a_stable_id_per_event_index() -> None:
    batch = seed_batch()
    for event in batch["events"]:
        event["data"].pop("source_message_id")
    ctx = RecordContext(NOW * 1000, batch)
    first = transform(batch, ctx, dest(), NOW)
    again = transform(deepcopy(batch), RecordContext(0, deepcopy(batch)), dest(), NOW)
    assert [o.event for o in first] == [o.event for o in again]  # replays are byte-identical
    indexes = [0, 1, 3, 4, 6]  # positions in `events` of the qualifying events
    assert [o.event["event_id"] for o in first] == [sha(f"{ctx.digest()}:{i}") for i in indexes]


def test_event_time_falls_back_to_the_batch_then_the_kafka_timestamp() -> None:
    batch = seed_batch()
    batch["events"] = [deepcopy(PURCHASE)]
    del batch["events"][0]["data"]["timestamp_unixtime_ms"]
    assert run(batch)[0].event["event_time"] == T + 60
    del batch["timestamp_unixtime_ms"]
    assert run(batch, kafka_ms=(T - 5) * 1000 + 999)[0].event["event_time"] == T - 5


# -- filtered and rejected ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        (
            [custom_event(), {"event_type": "screen_view", "data": {"screen_name": "Home"}}],
            "non_commerce_event",
        ),
        ([], "non_commerce_event"),
        (None, "non_commerce_event"),
        (
            [commerce("refund", "r"), commerce("remove_from_cart", "c"), commerce("click", "k")],
            "unsupported_product_action",
        ),
        ([{"event_type": "commerce_event", "data": {"currency_code": "USD"}}], "unsupported_product_action"),
    ],
)
def test_batches_without_a_qualifying_event_are_filtered(events: Any, reason: str) -> None:
    batch = seed_batch()
    batch["events"] = events
    with pytest.raises(Filtered) as info:
        run(batch)
    assert info.value.reason == reason


def purchase_with(**data: Any) -> dict[str, Any]:
    batch = seed_batch()
    event = deepcopy(PURCHASE)
    event["data"].update(data)
    batch["events"] = [commerce("view_detail", "v"), event]
    return batch


@pytest.mark.parametrize(
    ("batch", "options", "reason"),
    [
        (purchase_with(timestamp_unixtime_ms=ms(-8 * 86400)), {"action_source": "website"}, "event_too_old"),
        (purchase_with(timestamp_unixtime_ms=ms(-63 * 86400)), {"max_event_age_days": 62}, "event_too_old"),
        (purchase_with(timestamp_unixtime_ms=(NOW + 61) * 1000), {}, "event_in_future"),
        (purchase_with(currency_code="dollars"), {}, "invalid_currency"),
        (purchase_with(currency_code="ÄÖÜ"), {}, "invalid_currency"),
        (
            purchase_with(product_action={"action": "purchase", "products": [{"id": "x"}]}),
            {},
            "missing_value",
        ),
    ],
)
def test_one_invalid_qualifying_event_rejects_the_batch(
    batch: dict[str, Any], options: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Rejected) as info:
        run(batch, **options)
    assert info.value.reason == reason


def test_physical_store_events_may_be_62_days_old_when_configured() -> None:
    batch = purchase_with(timestamp_unixtime_ms=ms(-61 * 86400))
    with pytest.raises(Rejected, match="event_too_old"):
        run(batch)  # default max_event_age_days 7
    assert run(batch, max_event_age_days=62)[1].event["event_time"] == T - 61 * 86400


@pytest.mark.parametrize(
    "user",
    [
        {"user_identities": {}, "user_attributes": {}, "device_info": {}},
        {"user_identities": None, "user_attributes": {"$FirstName": "Jane", "$Gender": "f"}},
        {"user_attributes": {"$City": "Paris", "$Country": "FR", "$Zip": "75001", "$Gender": "m"}},
    ],
)
def test_insufficient_match_keys(user: dict[str, Any]) -> None:
    batch = {**seed_batch(), "user_identities": None, "device_info": None, **user}
    with pytest.raises(Rejected) as info:
        run(batch)
    assert info.value.reason == "insufficient_match_keys"


def test_match_policy_is_the_destinations() -> None:
    batch = {
        **seed_batch(),
        "user_identities": {},
        "device_info": {},
        "user_attributes": {"$FirstName": "Jane", "$LastName": "Doe"},
    }
    assert {"fn", "ln"} == set(run(batch)[0].event["user_data"])  # meta_baseline accepts
    with pytest.raises(Rejected, match="insufficient_match_keys"):
        run(batch, match_policy="commandersact")


def test_hashing_off_drops_plaintext_and_keeps_hashes() -> None:
    batch = seed_batch()
    batch["user_identities"] = {"email": sha("jane@example.com").upper(), "customer_id": "c-1"}
    user_data = run(batch, hashing=False)[0].event["user_data"]
    # plaintext attributes and the plain customer_id are dropped, never sent unhashed
    assert user_data == {"em": [sha("jane@example.com")], "madid": USER_DATA["madid"]}


# -- limited data use -----------------------------------------------------------------------

LDU_CA = {
    "data_processing_options": ["LDU"],
    "data_processing_options_country": 1,
    "data_processing_options_state": 1000,
}


def ldu_of(mode: Any, attributes: dict[str, Any]) -> dict[str, Any]:
    batch = seed_batch()
    batch["user_attributes"] = attributes
    event = run(batch, limited_data_use=mode)[0].event
    return {k: v for k, v in event.items() if k.startswith("data_processing_options")}


@pytest.mark.parametrize(
    ("mode", "attributes", "expected"),
    [
        ("never", {"$Country": "US", "$State": "CA"}, {}),
        (False, {"$Country": "US", "$State": "CA"}, {}),
        ("always", {"$Country": "US", "$State": "CA"}, LDU_CA),
        (True, {"$Country": "US", "$State": "CA"}, LDU_CA),
        ("always", {"$Country": "United States", "$State": "California"}, LDU_CA),
        ("always", {"$country": "usa", "$state": "ca"}, LDU_CA),
        ("always", {"$Country": "US", "$State": "Texas"}, {**LDU_CA, "data_processing_options_state": 1005}),
        ("always", {"$Country": "US", "$State": "RI"}, {**LDU_CA, "data_processing_options_state": 1013}),
        (
            "always",
            {"$Country": "US", "$State": "New York"},  # no LDU code: Meta geolocates
            {**LDU_CA, "data_processing_options_state": 0},
        ),
        (
            "always",
            {"$Country": "France", "$State": "Île-de-France"},
            {**LDU_CA, "data_processing_options_country": 0, "data_processing_options_state": 0},
        ),
        (
            "always",
            {"$State": "CA"},  # no country: neither code is claimed
            {**LDU_CA, "data_processing_options_country": 0, "data_processing_options_state": 0},
        ),
        ("always", {}, {**LDU_CA, "data_processing_options_country": 0, "data_processing_options_state": 0}),
        ("when_location_known", {"$Country": "US", "$State": "California"}, LDU_CA),
        ("when_location_known", {"$Country": "US"}, {}),
        ("when_location_known", {"$State": "CA"}, {}),
        (
            "when_location_known",
            {"$Country": "FR", "$State": "IDF"},
            {**LDU_CA, "data_processing_options_country": 0, "data_processing_options_state": 0},
        ),
    ],
)
def test_limited_data_use(mode: Any, attributes: dict[str, Any], expected: dict[str, Any]) -> None:
    attributes = {**attributes, "$FirstName": "Jane"}
    assert ldu_of(mode, attributes) == expected


def test_ldu_is_on_every_event_of_the_batch() -> None:
    outputs = run(seed_batch(), limited_data_use="always")
    # the seed user lives in Louisiana: US, a state without an LDU code
    assert all(
        o.event["data_processing_options"] == ["LDU"]
        and o.event["data_processing_options_country"] == 1
        and o.event["data_processing_options_state"] == 0
        for o in outputs
    )


# -- Avro, registry, preview ----------------------------------------------------------------


def test_dialect_is_registered() -> None:
    assert get_dialect("mparticle").transform.inner is bare_transform  # type: ignore[attr-defined]


def test_avro_round_trip_keeps_custom_properties() -> None:
    batch = seed_batch()
    decoded = SCHEMA.decode_body(SCHEMA.encode(batch))
    assert decoded["user_attributes"] == batch["user_attributes"]  # lists and all
    assert decoded["device_info"] == batch["device_info"]
    assert decoded["user_identities"] == batch["user_identities"]
    purchase = decoded["events"][4]["data"]
    assert purchase["custom_attributes"] == PURCHASE["data"]["custom_attributes"]
    assert type(purchase["custom_attributes"]["register"]) is int
    assert type(purchase["custom_attributes"]["gift"]) is bool
    assert [e["event_type"] for e in decoded["events"]] == [e["event_type"] for e in batch["events"]]
    # the decoded form gives the same events as the JSON form
    assert [o.event for o in run(decoded)] == [o.event for o in run(batch)]


def test_avro_round_trip_of_non_commerce_and_minimal_batches() -> None:
    minimal = {
        "events": [commerce("purchase", "m", total_amount=1.5)],
        "user_identities": {"email": "a@b.co"},
    }
    decoded = SCHEMA.decode_body(SCHEMA.encode(minimal))
    assert decoded["user_attributes"] is None
    assert decoded["device_info"] is None
    assert [o.event["custom_data"]["value"] for o in run(decoded)] == [1.5]
    only_custom = SCHEMA.decode_body(SCHEMA.encode({"events": [custom_event()]}))
    with pytest.raises(Filtered, match="non_commerce_event"):
        run(only_custom)


def test_preview_lines_with_a_fixed_now() -> None:
    config = parse_settings(
        {
            "sources": [
                {
                    "name": "mp",
                    "topic": "events.mparticle",
                    "dialect": "mparticle",
                    "destination": "main",
                    "schema": "schemas/mparticle_batch.avsc",
                }
            ],
            "destinations": [
                {"name": "main", "default_event_sets": ["900"], "limited_data_use": "when_location_known"}
            ],
        },
        {},
    )
    custom_only = {**seed_batch(), "events": [custom_event()]}
    stale = purchase_with(timestamp_unixtime_ms=ms(-30 * 86400))
    lines = io.StringIO(
        "\n".join(orjson.dumps(b).decode() for b in (seed_batch(), custom_only, stale)) + "\nnot json\n"
    )
    out = [orjson.loads(line) for line in preview_lines(config, "mp", NOW, lines)]
    assert [o.get("event", {}).get("event_name") for o in out[:5]] == [
        "AddToCart",
        "AddToWishlist",
        "InitiateCheckout",
        "Purchase",
        "ViewContent",
    ]
    assert out[3] == {
        "index": 0,
        "event_set_id": "900",
        "event": {
            **run(seed_batch())[3].event,
            "data_processing_options": ["LDU"],
            "data_processing_options_country": 1,
            "data_processing_options_state": 0,
        },
    }
    assert out[5:] == [
        {"index": 1, "filtered": {"reason": "non_commerce_event"}},
        {
            "index": 2,
            "rejected": {"reason": "event_too_old", "message": "event_time is more than 7 days old"},
        },
        {"index": 3, "rejected": {"reason": "invalid_json", "message": "the line is not JSON"}},
    ]


# -- fuzz -----------------------------------------------------------------------------------

# Integers stay within what orjson and Avro longs produce (orjson reads bigger ones as floats).
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "purchase",
            "commerce_event",
            "view_detail",
            "US",
            "CA",
            "",
            " ",
            "1785000000000",
            "2026-07-01T11:00:00Z",
            "9" * 400,
        ]
    )
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=25,
)
DESTINATIONS = st.builds(
    dest,
    limited_data_use=st.sampled_from([False, True, "never", "always", "when_location_known"]),
    hashing=st.booleans(),
    match_policy=st.sampled_from([None, "meta_baseline", "commandersact"]),
    event_mapping=st.sampled_from([{}, {"purchase": ["Purchase", "Lead"]}]),
    max_event_age_days=st.sampled_from([7, 62]),
)


SEED_PATHS = paths(seed_batch())


def check_outcome(batch: Any, destination: DestinationSettings, now: int = NOW) -> None:
    try:
        outputs = transform(batch, RecordContext(NOW * 1000, batch), destination, now)
    except (Rejected, Filtered):
        return
    assert outputs
    for out in outputs:
        assert isinstance(out, Output)
        assert out.event_set_id
        sent = orjson.loads(orjson.dumps(out.event))  # what the pipeline sends
        assert check_event(sent, now) is None  # Meta would accept it
        assert sent["custom_data"].get("value") == out.event["custom_data"].get("value")
        assert sent["user_data"] == out.event["user_data"]


@FUZZ
@given(
    batch=st.dictionaries(
        st.sampled_from(
            ["events", "user_identities", "user_attributes", "device_info", "timestamp_unixtime_ms"]
        )
        | st.text(max_size=8),
        JSON,
        max_size=6,
    ),
    destination=DESTINATIONS,
)
def test_fuzz_arbitrary_objects(batch: dict[str, Any], destination: DestinationSettings) -> None:
    check_outcome(batch, destination)


@FUZZ
@given(
    mutations=st.lists(
        st.tuples(st.sampled_from(SEED_PATHS), JSON | st.just(KeyError)), min_size=1, max_size=4
    ),
    destination=DESTINATIONS,
)
def test_fuzz_mutated_seed_batches(
    mutations: list[tuple[tuple[Any, ...], Any]], destination: DestinationSettings
) -> None:
    batch = seed_batch()
    mutate(batch, [(path, DELETE if value is KeyError else value) for path, value in mutations])
    check_outcome(batch, destination)


def mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` three times out of four, else any JSON value."""
    return st.one_of(good, good, good, JSON)


@FUZZ
@given(
    events=st.lists(
        st.fixed_dictionaries(
            {
                "event_type": st.sampled_from(["commerce_event"] * 3 + ["custom_event"]),
                "data": st.fixed_dictionaries(
                    {
                        "timestamp_unixtime_ms": mostly(
                            st.integers((T - 9 * 86400) * 1000, (NOW + 90) * 1000)
                        ),
                        "source_message_id": mostly(st.sampled_from([None, "m-1", "m-2"])),
                        "currency_code": mostly(st.sampled_from(["usd", "EUR", None, "", "ÄÖÜ"])),
                        "custom_attributes": JSON,
                        "product_action": st.fixed_dictionaries(
                            {
                                "action": mostly(
                                    st.sampled_from(["purchase", "checkout", "refund", "VIEW_DETAIL"])
                                ),
                                "total_amount": mostly(st.none() | st.floats()),
                                "products": mostly(
                                    st.lists(
                                        st.dictionaries(
                                            st.sampled_from(["id", "price", "quantity", "category", "brand"]),
                                            JSON,
                                            max_size=5,
                                        ),
                                        max_size=3,
                                    )
                                ),
                            }
                        ),
                    }
                ),
            }
        ),
        min_size=1,
        max_size=4,
    ),
    destination=DESTINATIONS,
)
def test_fuzz_commerce_events(events: list[Any], destination: DestinationSettings) -> None:
    check_outcome({**seed_batch(), "events": events}, destination)
