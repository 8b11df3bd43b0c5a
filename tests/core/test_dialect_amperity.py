"""Amperity rows (docs/dialects.md#amperity): golden events from the seed's query columns, every reason
code, grouping by order in time, late rows, Avro round trip, fuzzing, and `fboc preview`.

Expected hashes are computed here from the normalised plaintext, so a reader sees what was hashed.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
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
from consumer.core.dialects.amperity import (
    Row,
    check_row,
    item_number,
    preview_group,
    transform_rows,
)
from consumer.errors import Filtered, RecordOutcome, Rejected
from consumer.ops.cli import preview_lines
from tests.garbage import cyclic_garbage

# What the service runs: the dialect's events screened and checked on the way out.
transform = get_dialect("amperity").transform

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = AvroSchema.from_file(ROOT / "schemas" / "amperity_row.avsc")
NOW = int(datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp())
ORDER_TIME = int(datetime(2026, 3, 1, 15, 30, tzinfo=UTC).timestamp())  # 1772379000
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dest(**options: Any) -> DestinationSettings:
    return DestinationSettings.model_validate(
        {"name": "main", "event_sets": {"Purchase": ["111"]}, **options}
    )


def ctx(payload: Mapping[str, Any]) -> RecordContext:
    return RecordContext(NOW * 1000, payload)


def row_of(payload: Mapping[str, Any], d: DestinationSettings | None = None) -> Row:
    return check_row(payload, ctx(payload), d or dest(), NOW)


def outcome(payload: Mapping[str, Any], d: DestinationSettings | None = None) -> RecordOutcome:
    with pytest.raises(RecordOutcome) as info:
        transform(payload, ctx(payload), d or dest(), NOW)
    return info.value


# The seed's query: Customer 360 profile columns + Unified Itemized Transactions columns, one row
# per item; price = item_revenue / item_quantity, 'USD' AS currency, 'physical_store' AS action_source.
COFFEE: dict[str, Any] = {
    "external_id": "a1b2c3d4-0000-4000-8000-000000000001",  # c360.amperity_id AS external_id
    "email": " Justin.Currie@Example.com ",
    "phone": "(206) 555-0144",
    "given_name": "Justin",
    "surname": "Currie",
    "birthdate": "1986-08-14",
    "gender": "Male",
    "city": "Seattle",
    "state": "Washington",
    "postal": "98101-1234",
    "country": "United States",
    "order_id": "ORD-1001",
    "quantity": 2,
    "product_id": "SKU-COFFEE-250",
    "timestamp": "2026-03-01 15:30:00",  # uit.order_datetime
    "price": 12.5,
    "currency": "USD",
    "action_source": "physical_store",
}
MUG: dict[str, Any] = {**COFFEE, "quantity": 3, "product_id": "SKU-MUG", "price": 8.99}
# Only the columns the seed says a query MUST contain (no phone: email OR phone).
MINIMAL: dict[str, Any] = {
    "external_id": "amp-42",
    "order_id": "ORD-2002",
    "quantity": 1,
    "email": "pat@example.org",
    "timestamp": ORDER_TIME,
    "price": 40.0,
    "currency": "usd",
}
WEBSITE: dict[str, Any] = {
    **MINIMAL,
    "order_id": "W-1",
    "action_source": "website",
    "client_user_agent": "Mozilla/5.0",
    "event_id": "evt-w-1",
    "event_source_url": "https://shop.example.com/checkout/done",
}

JUSTIN_USER_DATA = {
    "em": [sha("justin.currie@example.com")],
    "ph": [sha("12065550144")],
    "fn": [sha("justin")],
    "ln": [sha("currie")],
    "ge": [sha("m")],
    "db": [sha("19860814")],
    "ct": [sha("seattle")],
    "st": [sha("wa")],
    "zp": [sha("98101")],
    "country": [sha("us")],
    "external_id": [sha("a1b2c3d4-0000-4000-8000-000000000001")],
}


# -- golden events -----------------------------------------------------------------------------


def test_seed_order_of_two_rows_is_one_purchase() -> None:
    rows = [row_of(COFFEE), row_of(MUG)]
    # the item_number hashes the rows' sorted fingerprints: these rows, in any order
    number = sha("\n".join(sorted([rows[0].fingerprint, rows[1].fingerprint])))[:16]
    assert transform_rows(rows, dest(), NOW) == [
        Output(
            "111",
            {
                "event_name": "Purchase",
                "event_time": ORDER_TIME,
                "event_id": f"ORD-1001-{number}",
                "action_source": "physical_store",
                "user_data": JUSTIN_USER_DATA,
                "custom_data": {
                    "value": 51.97,  # 2 * 12.5 + 3 * 8.99
                    "currency": "USD",
                    "contents": [
                        {"id": "SKU-COFFEE-250", "quantity": 2, "item_price": 12.5},
                        {"id": "SKU-MUG", "quantity": 3, "item_price": 8.99},
                    ],
                    "content_ids": ["SKU-COFFEE-250", "SKU-MUG"],
                    "content_type": "product",
                    "order_id": "ORD-1001",
                    "num_items": 5,
                    "item_number": number,
                },
            },
            None,
        )
    ]
    assert transform_rows(rows[::-1], dest(), NOW)[0].event["event_id"] == (f"ORD-1001-{number}")


def test_a_transform_leaves_no_cyclic_garbage() -> None:
    d = dest()
    assert cyclic_garbage(lambda: transform_rows([row_of(COFFEE, d), row_of(MUG, d)], d, NOW)) == 0


def test_seed_minimal_row_through_the_registry() -> None:
    dialect = get_dialect("amperity")
    assert dialect.name == "amperity"
    assert dialect.default_unmapped == "other"
    outputs = dialect.transform(MINIMAL, ctx(MINIMAL), dest(upload_tag="stores-2026-03"), NOW)
    number = item_number([row_of(MINIMAL)])
    assert outputs == [
        Output(
            "111",
            {
                "event_name": "Purchase",
                "event_time": ORDER_TIME,
                "event_id": f"ORD-2002-{number}",
                "action_source": "physical_store",  # the default
                "user_data": {"em": [sha("pat@example.org")], "external_id": [sha("amp-42")]},
                "custom_data": {
                    "value": 40.0,
                    "currency": "USD",
                    "order_id": "ORD-2002",
                    "num_items": 1,
                    "content_type": "product",
                    "item_number": number,
                },
            },
            "stores-2026-03",
        )
    ]


def test_website_row_carries_url_and_user_agent() -> None:
    [out] = transform(WEBSITE, ctx(WEBSITE), dest(), NOW)
    number = item_number([row_of(WEBSITE)])
    assert out.event == {
        "event_name": "Purchase",
        "event_time": ORDER_TIME,
        "event_id": f"W-1-{number}",  # the order id and the part's item_number
        "action_source": "website",
        "event_source_url": "https://shop.example.com/checkout/done",
        "user_data": {
            "em": [sha("pat@example.org")],
            "external_id": [sha("amp-42")],
            "client_user_agent": "Mozilla/5.0",
        },
        "custom_data": {
            "value": 40.0,
            "currency": "USD",
            "order_id": "W-1",
            "num_items": 1,
            "content_type": "product",
            "item_number": number,
        },
    }


def test_late_rows_are_a_further_event_of_the_order_with_a_deterministic_item_number() -> None:
    coffee, mug, extra = row_of(COFFEE), row_of(MUG), row_of({**MUG, "product_id": "SKU-LID"})
    sent = transform_rows([coffee], dest(), NOW)[0].event
    (late,) = (o.event for o in transform_rows([mug, extra], dest(), NOW))
    number = late["custom_data"]["item_number"]
    # the number is a hash of the rows' canonical content: no counter, no clock
    assert number == sha("\n".join(sorted([mug.fingerprint, extra.fingerprint])))[:16]
    assert number != sent["custom_data"]["item_number"]
    assert late["event_id"] == f"ORD-1001-{number}"
    assert late["custom_data"] == {
        "value": 53.94,
        "currency": "USD",
        "contents": [
            {"id": "SKU-MUG", "quantity": 3, "item_price": 8.99},
            {"id": "SKU-LID", "quantity": 3, "item_price": 8.99},
        ],
        "content_ids": ["SKU-MUG", "SKU-LID"],
        "content_type": "product",
        "order_id": "ORD-1001",
        "num_items": 6,
        "item_number": number,
    }
    assert late["event_time"] == ORDER_TIME
    assert late["user_data"] == JUSTIN_USER_DATA
    # a replay of the same rows is byte-identical, so Meta deduplicates it
    again = transform_rows([row_of(dict(MUG)), row_of({**MUG, "product_id": "SKU-LID"})], dest(), NOW)
    assert [orjson.dumps(o.event) for o in again] == [orjson.dumps(late)]


def test_fingerprint_is_the_canonical_row_content() -> None:
    row = row_of(MINIMAL)
    canonical = orjson.dumps(
        [
            "ORD-2002",
            "Purchase",
            "physical_store",
            "USD",
            ORDER_TIME * 1000,
            1,
            40.0,
            None,
            None,
            [["em", "pat@example.org"], ["external_id", "amp-42"]],
            {},
        ],
        option=orjson.OPT_SORT_KEYS,
    )
    assert row.fingerprint == hashlib.sha256(canonical).hexdigest()
    assert item_number([row]) == sha(row.fingerprint)[:16]
    # the same row spelled differently (string numbers, ISO time, Avro nulls) is the same row
    spelled = {
        **MINIMAL,
        "quantity": "1",
        "price": "40",
        "timestamp": "2026-03-01T15:30:00Z",
        "currency": "USD",
        "phone": None,
        "custom": None,
    }
    assert row_of(spelled).fingerprint == row.fingerprint
    assert row_of({**MINIMAL, "price": 40.01}).fingerprint != row.fingerprint


# -- validation and reason codes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "missing"),
    [
        ({"order_id": None}, "order_id"),
        ({"order_id": "  "}, "order_id"),
        ({"quantity": None}, "quantity"),
        ({"quantity": "many"}, "quantity"),
        ({"email": None}, "email or phone"),
        ({"timestamp": None}, "timestamp"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"price": None}, "price"),
        ({"price": "free"}, "price"),
        ({"currency": ""}, "currency"),
    ],
)
def test_required_columns(change: dict[str, Any], missing: str) -> None:
    exc = outcome({**MINIMAL, **change})
    assert isinstance(exc, Rejected)
    assert exc.reason == "missing_required_field"
    assert missing in exc.message
    assert "pat@" not in exc.message


def test_phone_alone_is_enough_and_external_id_is_only_recommended() -> None:
    row = {**MINIMAL, "email": None, "external_id": None, "phone": "+44 20 7946 0958"}
    [out] = transform(row, ctx(row), dest(), NOW)
    assert out.event["user_data"] == {"ph": [sha("442079460958")]}


@pytest.mark.parametrize("missing", ["client_user_agent", "event_id", "event_source_url"])
def test_website_rows_need_user_agent_event_id_and_url(missing: str) -> None:
    exc = outcome({**WEBSITE, missing: ""})
    assert isinstance(exc, Rejected)
    assert (exc.reason, exc.message) == ("missing_required_field", f"website rows need: {missing}")


def test_website_rule_follows_the_destination_default_action_source() -> None:
    assert outcome(MINIMAL, dest(action_source="website")).reason == "missing_required_field"


@pytest.mark.parametrize("quantity", [0, -1, "-2", -0.5])
def test_returns_and_cancellations_are_filtered(quantity: Any) -> None:
    # filtered before anything else: a return is never sent, whatever its other columns
    exc = outcome({"order_id": "R-1", "quantity": quantity})
    assert isinstance(exc, Filtered)
    assert exc.reason == "return_or_cancellation"


@pytest.mark.parametrize("quantity", [1.5, 2e9])
def test_quantity_must_be_a_whole_number(quantity: float) -> None:
    exc = outcome({**MINIMAL, "quantity": quantity})
    assert (exc.reason, isinstance(exc, Rejected)) == ("missing_required_field", True)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"currency": "dollars"}, "invalid_currency"),
        ({"currency": "ÉÜR"}, "invalid_currency"),
        (
            {
                "timestamp": ORDER_TIME - 8 * 86400,
                "action_source": "website",
                "client_user_agent": "UA",
                "event_id": "e",
                "event_source_url": "https://x.example",
            },
            "event_too_old",
        ),
        ({"timestamp": NOW - 8 * 86400}, "event_too_old"),  # max_event_age_days defaults to 7
        ({"timestamp": NOW + 120}, "event_in_future"),
        ({"email": "not-an-email"}, "insufficient_match_keys"),
        (
            {
                "email": "not-an-email",
                "external_id": None,
                "city": "Seattle",
                "state": "WA",
                "postal": "98101",
                "country": "US",
                "gender": "f",
            },
            "insufficient_match_keys",
        ),
    ],
)
def test_rejection_reasons(change: dict[str, Any], reason: str) -> None:
    exc = outcome({**MINIMAL, "external_id": None, **change})
    assert isinstance(exc, Rejected)
    assert exc.reason == reason


def test_physical_store_backfill_up_to_62_days() -> None:
    backfill = {**MINIMAL, "timestamp": NOW - 40 * 86400}
    assert transform(backfill, ctx(backfill), dest(max_event_age_days=62), NOW)
    website = {**WEBSITE, "timestamp": NOW - 40 * 86400}
    assert outcome(website, dest(max_event_age_days=62)).reason == "event_too_old"


def test_hashing_off_drops_plaintext_and_keeps_hashes() -> None:
    hashed = {**MINIMAL, "email": sha("pat@example.org").upper(), "external_id": None}
    [out] = transform(hashed, ctx(hashed), dest(hashing=False), NOW)
    assert out.event["user_data"] == {"em": [sha("pat@example.org")]}
    plain = {**MINIMAL, "external_id": None}
    assert outcome(plain, dest(hashing=False)).reason == "insufficient_match_keys"


def test_event_names_and_routing() -> None:
    def names(row: dict[str, Any], d: DestinationSettings) -> list[tuple[str, str]]:
        return [(o.event_set_id, o.event["event_name"]) for o in transform(row, ctx(row), d, NOW)]

    everywhere = dest(event_sets={}, default_event_sets=["999"])
    assert names(MINIMAL, everywhere) == [("999", "Purchase")]  # the default name
    assert names({**MINIMAL, "event_name": "Lead"}, everywhere) == [("999", "Lead")]
    assert names({**MINIMAL, "event_name": "Refund"}, everywhere) == [("999", "Other")]
    passthrough = dest(event_sets={}, default_event_sets=["999"], unmapped_events="passthrough")
    assert names({**MINIMAL, "event_name": "Refund"}, passthrough) == [("999", "Refund")]
    assert (
        outcome({**MINIMAL, "event_name": "Refund"}, dest(unmapped_events="reject")).reason
        == "unmapped_event"
    )
    assert outcome({**MINIMAL, "event_name": "Lead"}).reason == "no_event_set"


def test_every_fanned_out_event_has_its_own_name() -> None:
    d = dest(
        event_mapping={"Purchase": ["Purchase", "Lead"]},
        event_sets={"Purchase": ["111", "222"], "Lead": ["333"]},
    )
    outputs = transform_rows([row_of(COFFEE, d), row_of(MUG, d)], d, NOW)
    assert [(o.event_set_id, o.event["event_name"]) for o in outputs] == [
        ("111", "Purchase"),
        ("222", "Purchase"),
        ("333", "Lead"),
    ]
    assert all(o.event["custom_data"]["content_type"] == "product" for o in outputs)
    outputs[2].event["custom_data"]["value"] = 0  # each name has its own objects
    assert outputs[0].event["custom_data"]["value"] == 51.97


def test_invalid_action_source_falls_back_to_the_destination() -> None:
    row = {**MINIMAL, "action_source": "in_store"}
    [out] = transform(row, ctx(row), dest(), NOW)
    assert out.event["action_source"] == "physical_store"
    row = {**MINIMAL, "action_source": "phone_call"}
    assert transform(row, ctx(row), dest(), NOW)[0].event["action_source"] == "phone_call"


@pytest.mark.parametrize(
    ("mode", "row", "expected"),
    [
        (False, COFFEE, None),
        ("never", COFFEE, None),
        (True, COFFEE, (["LDU"], 1, 0)),  # Washington: Meta geolocates the state
        ("always", {**COFFEE, "state": "California"}, (["LDU"], 1, 1000)),
        ("always", {**COFFEE, "country": "FR", "state": "IDF", "phone": None}, (["LDU"], 0, 0)),
        ("when_location_known", {**COFFEE, "state": "CA"}, (["LDU"], 1, 1000)),
        ("when_location_known", {**COFFEE, "state": None}, None),
    ],
)
def test_limited_data_use(mode: Any, row: dict[str, Any], expected: Any) -> None:
    d = dest(limited_data_use=mode)
    event = transform(row, ctx(row), d, NOW)[0].event
    got = (
        (
            event["data_processing_options"],
            event["data_processing_options_country"],
            event["data_processing_options_state"],
        )
        if "data_processing_options" in event
        else None
    )
    assert got == expected


def test_match_policy_commandersact_is_honoured() -> None:
    # the email does not normalise, so only fn and ct are left
    row = {**MINIMAL, "email": "not-an-email", "external_id": None, "given_name": "Pat", "city": "Seattle"}
    [out] = transform(row, ctx(row), dest(), NOW)  # Meta's baseline takes fn + ct
    assert out.event["user_data"] == {"fn": [sha("pat")], "ct": [sha("seattle")]}
    d = dest(match_policy="commandersact")  # needs a strong key or three others
    assert outcome(row, d).reason == "insufficient_match_keys"
    assert transform({**row, "gender": "F"}, ctx(row), d, NOW)


def test_number_and_time_spellings() -> None:
    spellings: list[dict[str, Any]] = [
        {"timestamp": ORDER_TIME, "quantity": 2, "price": 10},
        {"timestamp": str(ORDER_TIME), "quantity": "2", "price": "10.00"},
        {"timestamp": ORDER_TIME * 1000, "quantity": 2.0, "price": 10.0},
        {"timestamp": "2026-03-01T16:30:00+01:00", "quantity": " 2 ", "price": " 10 "},
    ]
    events = [transform({**MINIMAL, **s}, ctx(MINIMAL), dest(), NOW)[0].event for s in spellings]
    assert all(e == events[0] for e in events)
    assert events[0]["event_time"] == ORDER_TIME
    assert events[0]["custom_data"]["value"] == 20.0


def test_custom_properties() -> None:
    row = {
        **MINIMAL,
        "purchase_channel": "store",
        "purchase_brand": "ACME Essentials",
        "full_name": "Pat Doe",
        "value": 1,
        "custom": {"store_id": 42, "email": "x@y.z", "order_id": "hijack", "loyalty": ""},
    }
    custom = transform(row, ctx(row), dest(), NOW)[0].event["custom_data"]
    assert custom == {
        "purchase_channel": "store",
        "purchase_brand": "ACME Essentials",
        "store_id": 42,
        "value": 40.0,
        "currency": "USD",
        "order_id": "ORD-2002",
        "num_items": 1,
        "content_type": "product",
        "item_number": item_number([row_of(row)]),
    }


# -- grouping rows into events -----------------------------------------------------------------


def test_rows_without_product_id_count_in_value_but_not_in_contents() -> None:
    rows = [row_of(COFFEE), row_of({**MUG, "product_id": None})]
    custom = transform_rows(rows, dest(), NOW)[0].event["custom_data"]
    assert custom["contents"] == [{"id": "SKU-COFFEE-250", "quantity": 2, "item_price": 12.5}]
    assert (custom["value"], custom["num_items"]) == (51.97, 5)


def test_value_is_summed_exactly() -> None:
    rows = [row_of({**MINIMAL, "price": 0.1, "product_id": f"p{i}"}) for i in range(3)]
    assert transform_rows(rows, dest(), NOW)[0].event["custom_data"]["value"] == 0.3


def test_order_event_uses_the_earliest_time_and_merges_customer_data() -> None:
    first = row_of({**MINIMAL, "timestamp": ORDER_TIME + 60, "custom": {"lane": 3}})
    second = row_of(
        {**MINIMAL, "timestamp": ORDER_TIME, "email": "other@example.org", "custom": {"lane": 4, "till": "B"}}
    )
    [out] = transform_rows([first, second], dest(), NOW)
    assert out.event["event_time"] == ORDER_TIME
    assert out.event["user_data"]["em"] == [sha("pat@example.org"), sha("other@example.org")]
    assert out.event["custom_data"]["lane"] == 3
    assert out.event["custom_data"]["till"] == "B"


def test_rows_disagreeing_on_currency_become_a_second_event_meta_keeps() -> None:
    usd = row_of(COFFEE)
    cad = row_of({**MUG, "currency": "CAD"})
    outputs = transform_rows([usd, cad, row_of(MUG)], dest(), NOW)
    first, second = (o.event for o in outputs)
    assert first["custom_data"]["item_number"] == item_number([usd, row_of(MUG)])
    assert first["event_id"] == f"ORD-1001-{item_number([usd, row_of(MUG)])}"
    assert first["custom_data"]["value"] == 51.97
    number = item_number([cad])
    assert second["custom_data"]["item_number"] == number
    assert second["event_id"] == f"ORD-1001-{number}"
    assert (second["custom_data"]["currency"], second["custom_data"]["value"]) == ("CAD", 26.97)


def test_a_regrouped_or_late_part_of_an_order_keeps_its_own_dedup_key() -> None:
    coffee, mug = row_of(COFFEE), row_of(MUG)
    whole = transform_rows([coffee, mug], dest(), NOW)[0].event
    # a later group of the order (the mug row alone)
    regrouped = transform_rows([mug], dest(), NOW)[0].event
    key = ("event_name", "event_time")
    assert [whole[k] for k in key] == [regrouped[k] for k in key]
    assert whole["custom_data"]["order_id"] == regrouped["custom_data"]["order_id"]
    assert whole["custom_data"]["item_number"] != regrouped["custom_data"]["item_number"]
    assert whole["event_id"] != regrouped["event_id"]
    # the same rows again (a crash before the commit): the same key, so Meta drops the copy
    again = transform_rows([row_of(dict(COFFEE)), row_of(dict(MUG))], dest(), NOW)
    assert again[0].event == whole
    swapped = transform_rows([row_of(MUG), row_of(COFFEE)], dest(), NOW)[0].event
    assert (swapped["event_id"], swapped["custom_data"]["item_number"]) == (
        whole["event_id"],
        whole["custom_data"]["item_number"],
    )


def test_an_order_is_rejected_as_a_whole() -> None:
    rows = [row_of(MINIMAL)]
    with pytest.raises(Rejected) as info:
        transform_rows(rows, dest(), NOW + 8 * 86400)  # went stale while waiting
    assert info.value.reason == "event_too_old"


# -- Avro ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        COFFEE,
        MUG,
        MINIMAL,
        WEBSITE,
        {
            **MINIMAL,
            "phone": 2065550144,
            "postal": 98101,
            "order_id": 9001,
            "product_id": 77,
            "price": "12.50",
            "quantity": "2",
            "custom": {"store": {"id": 7}, "tags": ["a"]},
        },
    ],
)
def test_avro_round_trip(payload: dict[str, Any]) -> None:
    decoded = SCHEMA.decode_body(SCHEMA.encode(payload))
    assert {k: v for k, v in decoded.items() if v is not None} == {
        k: (float(v) if k == "price" and isinstance(v, int) else v) for k, v in payload.items()
    }
    assert transform(decoded, ctx(decoded), dest(), NOW) == transform(payload, ctx(payload), dest(), NOW)
    assert row_of(decoded).fingerprint == row_of(payload).fingerprint


def test_avro_carries_extra_query_columns_in_custom() -> None:
    flat = {**MINIMAL, "purchase_channel": "store", "purchase_brand": "ACME Essentials"}
    nested = {**MINIMAL, "custom": {"purchase_channel": "store", "purchase_brand": "ACME Essentials"}}
    decoded = SCHEMA.decode_body(SCHEMA.encode(nested))
    assert transform(decoded, ctx(decoded), dest(), NOW) == transform(flat, ctx(flat), dest(), NOW)


# -- fuzzing: outputs, Rejected or Filtered, nothing else -----------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
column_names = st.sampled_from(sorted({*COFFEE, *WEBSITE, "event_name", "madid", "custom"}))
tricky = (
    json_values
    | st.sampled_from(
        [
            "",
            " ",
            "nan",
            "inf",
            "-1",
            "0",
            "1e400",
            "2026-13-45",
            "9999-12-31T23:59:59",
            "0001-01-01T00:00:00+14:00",
        ]
    )
    | st.sampled_from([0, -1, 1e300, -1e300, 2**63 - 1, 1.5])
)


def check_outputs(payload: dict[str, Any], d: DestinationSettings) -> None:
    try:
        outputs = transform(payload, ctx(payload), d, NOW)
    except (Rejected, Filtered):
        return
    assert outputs
    for out in outputs:
        orjson.dumps(out.event)  # the pipeline must be able to encode it
        assert all(v not in ("", [], {}, None) for v in out.event["custom_data"].values())


@FUZZ
@given(st.dictionaries(column_names | st.text(max_size=8), tricky, max_size=12))
def test_fuzz_arbitrary_objects(payload: dict[str, Any]) -> None:
    check_outputs(payload, dest(default_event_sets=["999"]))


@FUZZ
@given(
    st.sampled_from([COFFEE, MINIMAL, WEBSITE]),
    st.dictionaries(column_names, tricky, min_size=1, max_size=4),
    st.lists(column_names, max_size=3),
)
def test_fuzz_mutations_of_valid_rows(
    base: dict[str, Any], changes: dict[str, Any], removed: list[str]
) -> None:
    payload = {k: v for k, v in {**base, **changes}.items() if k not in removed}
    d = dest(
        limited_data_use="always",
        event_sets={"Purchase": ["111"], "Lead": ["222"]},
        unmapped_events="passthrough",
    )
    check_outputs(payload, d)
    try:
        rows = [row_of(payload, d), row_of(base, d)]
        outputs = transform_rows(rows, d, NOW)
    except (Rejected, Filtered):
        return
    assert all(orjson.dumps(o.event) for o in outputs)


# -- fboc preview --------------------------------------------------------------------------------


def preview_settings() -> Any:
    return parse_settings(
        {
            "sources": [
                {
                    "name": "stores",
                    "topic": "amperity.rows",
                    "dialect": "amperity",
                    "destination": "main",
                    "schema": "schemas/amperity_row.avsc",
                }
            ],
            "destinations": [{"name": "main", "event_sets": {"Purchase": ["111", "222"]}}],
        },
        {},
    )


def test_preview_group() -> None:
    results = preview_group(
        [(0, COFFEE), (2, {**MINIMAL, "quantity": -1}), (3, MUG), (5, MINIMAL)], dest(), NOW
    )
    assert [index for index, _ in results] == [0, 2, 5]
    _index, coffee_and_mug = results[0]
    assert isinstance(coffee_and_mug, list)
    assert coffee_and_mug[0].event["custom_data"]["num_items"] == 5
    assert isinstance(results[1][1], Filtered)


def test_preview_lines_groups_rows_of_one_order_at_its_first_index() -> None:
    now = int(datetime.fromisoformat("2026-03-02T12:00:00+00:00").timestamp())  # --now
    lines = io.StringIO(
        "\n".join(
            [
                orjson.dumps(COFFEE).decode(),
                orjson.dumps({**MINIMAL, "quantity": 0}).decode(),
                "not json",
                "",
                orjson.dumps(MUG).decode(),
                orjson.dumps({**MINIMAL, "currency": None}).decode(),
                orjson.dumps(MINIMAL).decode(),
            ]
        )
        + "\n"
    )
    out = [orjson.loads(line) for line in preview_lines(preview_settings(), "stores", now, lines)]
    order = transform_rows([row_of(COFFEE), row_of(MUG)], dest(), NOW)[0].event
    minimal = transform(MINIMAL, ctx(MINIMAL), dest(), NOW)[0].event
    assert out == [
        {"index": 0, "event_set_id": "111", "event": order},
        {"index": 0, "event_set_id": "222", "event": order},
        {"index": 1, "filtered": {"reason": "return_or_cancellation"}},
        {"index": 2, "rejected": {"reason": "invalid_json", "message": "the line is not JSON"}},
        {
            "index": 5,
            "rejected": {"reason": "missing_required_field", "message": "missing or not valid: currency"},
        },
        {"index": 6, "event_set_id": "111", "event": minimal},
        {"index": 6, "event_set_id": "222", "event": minimal},
    ]
