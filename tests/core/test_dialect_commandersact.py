"""The commandersact dialect (docs/dialects.md#commandersact), golden-tested from the seed page's tables."""

from __future__ import annotations

import copy
import hashlib
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.adapters.codec import AvroSchema
from consumer.config.settings import DestinationSettings, parse_settings
from consumer.core.capi.event import Output, RecordContext, ServerEvent
from consumer.core.dialects import get_dialect
from consumer.core.dialects.common import dedup_item_number
from consumer.errors import Filtered, Rejected
from consumer.ops.cli import preview_lines
from tests.fuzz import DELETE, json_values, mutate, paths
from tests.garbage import cyclic_garbage

# What the service runs: the dialect's events screened and checked on the way out.
transform = get_dialect("commandersact").transform

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = AvroSchema.from_file(ROOT / "schemas" / "commandersact_event.avsc")
NOW = 1_772_452_800  # 2026-03-02T12:00:00Z
EVENT_TIME = NOW - 3600
EVENT_MS = EVENT_TIME * 1000


def sha(plain: str) -> str:
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def dest(**overrides: Any) -> DestinationSettings:
    return DestinationSettings.model_validate({"name": "main", "default_event_sets": ["111"], **overrides})


def run(
    payload: dict[str, Any], d: DestinationSettings | None = None, kafka_ms: int = EVENT_MS
) -> list[Output]:
    return transform(payload, RecordContext(kafka_ms, payload), d or dest(), NOW)


def one(payload: dict[str, Any], d: DestinationSettings | None = None) -> ServerEvent:
    outputs = run(payload, d)
    assert len(outputs) == 1
    assert outputs[0].event_set_id == "111"
    return outputs[0].event


def event(name: str, **extra: Any) -> dict[str, Any]:
    """A small valid Commanders Act event (email only, one hour old)."""
    return {
        "event_name": name,
        "user": {"email": "toto@domain.fr"},
        "context": {"event_timestamp": str(EVENT_MS)},
        "integrations": {"facebook": {"event_id": f"tc-{name}"}},
        **extra,
    }


# The seed's event table, row by row ("search" is listed twice there).
SEED_EVENT_TABLE = [
    ("begin_checkout", "InitiateCheckout"),
    ("purchase", "Purchase"),
    ("add_to_cart", "AddToCart"),
    ("view_item", "ViewContent"),
    ("view_item_list", "ViewContent"),
    ("search", "Search"),
    ("add_payment_info", "AddPaymentInfo"),
    ("add_to_wishlist", "AddToWishlist"),
    ("generate_lead", "Lead"),
    ("page_view", "PageView"),
    ("complete_registration", "CompleteRegistration"),
    ("contact", "Contact"),
    ("customize_product", "CustomizeProduct"),
    ("donate", "Donate"),
    ("find_location", "FindLocation"),
    ("schedule", "Schedule"),
    ("search", "Search"),
    ("start_trial", "StartTrial"),
    ("submit_application", "SubmitApplication"),
    ("subscribe", "Subscribe"),
]


@pytest.mark.parametrize(("source", "standard"), SEED_EVENT_TABLE)
def test_seed_event_table(source: str, standard: str) -> None:
    assert one(event(source, amount=25, currency="EUR")) == {
        "event_name": standard,
        "event_time": EVENT_TIME,
        "event_id": f"tc-{source}",
        "action_source": "physical_store",
        "user_data": {"em": [sha("toto@domain.fr")]},
        # no order id: an item_number from the event id keeps Meta's offline dedup key distinct
        "custom_data": {
            "value": 25.0,
            "currency": "EUR",
            "content_type": "product",
            "item_number": dedup_item_number(f"tc-{source}"),
        },
    }


# Every row of the seed's property table, in one purchase.
PROPERTY_TABLE_EVENT: dict[str, Any] = {
    "event_name": "purchase",
    "id": "ORD-1001",
    "amount": 89.9,
    "currency": "eur",
    "name": "Spring order",
    "category": "Shoes",
    "status": "completed",
    "items": [
        {
            "id": "SKU-1",
            "quantity": 2,
            "price": 29.95,
            "product": {"id": "SKU-1", "name": "Runner", "category_1": "Running"},
        },
        {"id": "SKU-2", "quantity": 1, "price": 30.0, "product": {"name": "Socks"}},
    ],
    "user": {
        "id": "CUST-42",
        "email": " Alex@Example.com ",
        "phone": "+33 6 12 34 56 78",
        "gender": "Female",
        "birthdate": "1990-05-17",
        "firstname": "Zoé",
        "lastname": "O'Brien",
        "city": "Paris",
        "state": "Île-de-France",
        "zipcode": "75001",
        "country": "France",
        "consent_categories": [1, 3],
    },
    "browser": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
    "integrations": {
        "facebook": {
            "event_id": "tc-uid-1",
            "fbc": "fb.1.1772449200000.AbCdEf",
            "fbp": "fb.1.1772449200000.1234567890",
        }
    },
    "context": {"event_timestamp": str(EVENT_MS)},
}
PROPERTY_TABLE_OUTPUT: ServerEvent = {
    "event_name": "Purchase",
    "event_time": EVENT_TIME,
    "event_id": "tc-uid-1",
    "action_source": "physical_store",
    "user_data": {
        "external_id": [sha("cust-42")],  # lower-cased first (external_id_normalization)
        "em": [sha("alex@example.com")],
        "ph": [sha("33612345678")],  # region from the event's country (France)
        "ge": [sha("f")],
        "db": [sha("19900517")],
        "fn": [sha("zoé")],
        "ln": [sha("obrien")],
        "ct": [sha("paris")],
        "st": [sha("îledefrance")],
        "zp": [sha("75001")],
        "country": [sha("fr")],
        "client_ip_address": "203.0.113.7",
        "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "fbc": "fb.1.1772449200000.AbCdEf",
        "fbp": "fb.1.1772449200000.1234567890",
    },
    "custom_data": {
        "value": 89.9,
        "currency": "EUR",
        "contents": [
            {"id": "SKU-1", "quantity": 2, "item_price": 29.95},
            {"id": "SKU-2", "quantity": 1, "item_price": 30.0},
        ],
        "content_name": "Spring order",
        "content_category": "Shoes",
        "content_type": "product",
        "order_id": "ORD-1001",
        "status": "completed",
    },
}


def test_seed_property_table() -> None:
    assert one(PROPERTY_TABLE_EVENT) == PROPERTY_TABLE_OUTPUT


def test_a_transform_leaves_no_cyclic_garbage() -> None:
    assert cyclic_garbage(lambda: run(PROPERTY_TABLE_EVENT)) == 0


def test_email_sha256_is_already_hashed() -> None:
    hashed = sha("toto@domain.fr")
    payload = event("purchase", amount=1, user={"email_sha256": hashed.upper()})
    assert one(payload)["user_data"] == {"em": [hashed]}
    both = event("purchase", amount=1, user={"email": "Toto@Domain.fr", "email_sha256": hashed})
    assert one(both)["user_data"] == {"em": [hashed]}


def test_contents_only_when_every_item_is_complete_else_content_ids() -> None:
    items = [
        {"id": "A", "quantity": 1, "price": 5},
        {"id": "B", "price": 7},
        {"product": {"id": "C", "name": "Cap", "category_2": "Hats"}},
        "junk",
    ]
    custom = one(event("view_item_list", items=items))["custom_data"]
    assert custom == {
        "content_ids": ["A", "B", "C"],
        "content_name": "Cap",
        "content_category": "Hats",
        "content_type": "product",
        "item_number": dedup_item_number("tc-view_item_list"),
    }
    # ids and prices may sit under items[].product
    complete = [{"quantity": 3, "product": {"id": "P1", "price": 2.5}}]
    assert one(event("add_to_cart", items=complete))["custom_data"]["contents"] == [
        {"id": "P1", "quantity": 3, "item_price": 2.5}
    ]


def test_events_without_an_order_id_keep_distinct_dedup_keys() -> None:
    # no event_id either: the record's hash is the event id, so the item_number follows it
    first = event("purchase", amount=5, currency="EUR")
    del first["integrations"]["facebook"]["event_id"]
    second = {**first, "session_id": "s-2"}
    a, b = one(first), one(second)
    assert a["event_time"] == b["event_time"]
    assert a["custom_data"]["item_number"] != b["custom_data"]["item_number"]
    assert one(copy.deepcopy(first)) == a  # the same record: the same key
    # an order id (or an explicit item_number) is the key
    assert "item_number" not in one(event("purchase", amount=5, id="O-9"))["custom_data"]
    explicit = event("purchase", amount=5)
    explicit["integrations"]["facebook"]["custom_data"] = {"item_number": "L-2"}
    assert one(explicit)["custom_data"]["item_number"] == "L-2"


def test_a_quantity_beyond_2_to_53_is_not_a_count() -> None:
    """Found by the fuzz test: 1.8e19 is a whole float, but int() of it is beyond what JSON (and
    orjson) can encode, so the whole batch would fail to serialise."""
    items = [{"id": "A", "quantity": 1.8446744073709552e19, "price": 5}]
    ev = one(event("add_to_cart", items=items))
    assert ev["custom_data"]["content_ids"] == ["A"]
    assert "contents" not in ev["custom_data"]
    orjson.dumps(ev)


def test_overrides_from_integrations_facebook() -> None:
    payload = event(
        "add_to_cart",
        amount=10,
        currency="EUR",
        id="O-1",
        user={"email": "old@domain.fr", "phone": "+33 6 12 34 56 78"},
    )
    payload["integrations"]["facebook"].update(
        {
            "event_name": "AddToWishlist",
            "user_data": {
                "em": ["New@Domain.fr", sha("x@y.io")],
                "client_ip_address": "198.51.100.1",
                "ph": None,
            },
            "custom_data": {
                "value": "12.5",
                "content_type": "product_group",
                "order_id": None,
                "loyalty_tier": "gold",
            },
        }
    )
    assert one(payload) == {
        "event_name": "AddToWishlist",
        "event_time": EVENT_TIME,
        "event_id": "tc-add_to_cart",
        "action_source": "physical_store",
        "user_data": {
            "em": [sha("new@domain.fr"), sha("x@y.io")],
            "ph": [sha("33612345678")],  # an empty override keeps the event's value
            "client_ip_address": "198.51.100.1",
        },
        "custom_data": {
            "value": 12.5,
            "currency": "EUR",
            "content_type": "product_group",
            "loyalty_tier": "gold",
            # the override removed the order id
            "item_number": dedup_item_number("tc-add_to_cart"),
        },
    }


def test_event_name_override_custom_and_unmapped_policy() -> None:
    payload = event("newsletter_signup")
    payload["integrations"]["facebook"]["event_name"] = "NewsletterSignup"
    assert one(payload)["event_name"] == "NewsletterSignup"
    assert one(payload, dest(unmapped_events="other"))["event_name"] == "Other"
    with pytest.raises(Rejected) as exc:
        run(payload, dest(unmapped_events="reject"))
    assert exc.value.reason == "unmapped_event"
    # a standard name in the override is sent as is, whatever unmapped_events says
    payload["integrations"]["facebook"]["event_name"] = "Lead"
    assert one(payload, dest(unmapped_events="reject"))["event_name"] == "Lead"


def test_unlisted_names_pass_through_by_default() -> None:
    assert one(event("newsletter_signup"))["event_name"] == "newsletter_signup"
    assert one(event("newsletter_signup"), dest(unmapped_events="other"))["event_name"] == "Other"


def test_event_id_defaults_to_a_stable_hash_of_the_record() -> None:
    payload = event("page_view")
    del payload["integrations"]
    expected = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert one(payload)["event_id"] == expected
    assert one(copy.deepcopy(payload))["event_id"] == expected


def test_event_time_sources() -> None:
    iso = event("page_view", context={"event_timestamp": "2026-03-02T10:30:00Z"})
    assert one(iso)["event_time"] == NOW - 5400
    top = event("page_view", event_timestamp=EVENT_MS - 1000)
    del top["context"]
    assert one(top)["event_time"] == EVENT_TIME - 1
    for context in ({}, {"event_timestamp": "yesterday"}):  # absent or not a time: Kafka's
        none = event("page_view", context=context)
        assert run(none, kafka_ms=(NOW - 10) * 1000)[0].event["event_time"] == NOW - 10


def test_action_source_offline_type_wins_over_destination() -> None:
    web = dest(action_source="website")
    payload = event("page_view", url="https://shop.example/p?id=1", browser={"user_agent": "UA/1.0"})
    sent = one(payload, web)
    assert sent["action_source"] == "website"
    assert sent["event_source_url"] == "https://shop.example/p?id=1"
    assert sent["user_data"]["client_user_agent"] == "UA/1.0"
    assert one({**payload, "type": "offline"}, web)["action_source"] == "physical_store"


def test_fan_out_each_event_has_its_own_name() -> None:
    d = dest(
        event_mapping={"purchase": ["Purchase", "Lead"]},
        event_sets={"Purchase": ["111", "222"], "Lead": ["333"]},
    )
    outputs = run(event("purchase", amount=3), d)
    assert [(o.event_set_id, o.event["event_name"]) for o in outputs] == [
        ("111", "Purchase"),
        ("222", "Purchase"),
        ("333", "Lead"),
    ]
    for o in outputs:
        assert o.event["custom_data"]["content_type"] == "product"
    assert outputs[0].event is not outputs[2].event
    # a name with no event set is skipped; none at all → no_event_set
    only_lead = run(
        event("purchase", amount=3),
        dest(
            event_mapping={"purchase": ["Purchase", "Lead"]},
            event_sets={"Lead": ["333"]},
            default_event_sets=[],
        ),
    )
    assert [(o.event_set_id, o.event["event_name"]) for o in only_lead] == [("333", "Lead")]


def test_upload_tag_from_destination() -> None:
    assert run(event("page_view"), dest(upload_tag="store-2026"))[0].upload_tag == "store-2026"


@pytest.mark.parametrize("consents", [[1, 3], ["1", "3"], "1,3", 3])
def test_consent_given(consents: Any) -> None:
    payload = event("page_view")
    payload["user"]["consent_categories"] = consents
    assert one(payload, dest(consent_category="3"))["event_name"] == "PageView"


@pytest.mark.parametrize("where", ["user", "top", "absent"])
def test_consent_missing_is_filtered(where: str) -> None:
    payload = event("page_view")
    if where == "user":
        payload["user"]["consent_categories"] = [1, 2]
    elif where == "top":
        payload["consent_categories"] = ["1"]
    with pytest.raises(Filtered) as exc:
        run(payload, dest(consent_category="3"))
    assert exc.value.reason == "no_consent"
    assert one(payload)["event_name"] == "PageView"  # no consent_category: not checked


def test_top_level_consent_categories_count() -> None:
    payload = event("page_view", consent_categories=[3])
    assert one(payload, dest(consent_category="3"))["event_name"] == "PageView"


def user_only(**user: Any) -> dict[str, Any]:
    return {"event_name": "page_view", "user": user, "context": {"event_timestamp": EVENT_MS}}


def test_match_policy_commandersact_is_the_default() -> None:
    three = one(user_only(firstname="Ann", lastname="Lee", city="Lyon"))
    assert set(three["user_data"]) == {"fn", "ln", "ct"}
    fbp_only = {
        "event_name": "page_view",
        "context": {"event_timestamp": EVENT_MS},
        "integrations": {"facebook": {"fbp": "fb.1.1.2"}},
    }
    assert one(fbp_only)["user_data"] == {"fbp": "fb.1.1.2"}
    with pytest.raises(Rejected) as exc:
        run(user_only(firstname="Ann", lastname="Lee"))
    assert exc.value.reason == "insufficient_match_keys"
    # meta_baseline accepts {fn, ln}; Meta's weak sets stay rejected under every policy
    assert set(
        one(user_only(firstname="Ann", lastname="Lee"), dest(match_policy="meta_baseline"))["user_data"]
    ) == {"fn", "ln"}
    with pytest.raises(Rejected) as exc:
        run(user_only(city="Lyon", state="Rhône", zipcode="69001"))
    assert exc.value.reason == "insufficient_match_keys"


def test_hashing_off_drops_plaintext_keeps_hashes() -> None:
    payload = event("page_view", user={"email": "a@b.co", "email_sha256": sha("a@b.co"), "id": "C-1"})
    # external_id counts as hashed (hash_external_id on), so its plaintext is dropped too
    assert one(payload, dest(hashing=False))["user_data"] == {"em": [sha("a@b.co")]}


def test_limited_data_use() -> None:
    payload = event("page_view")
    assert "data_processing_options" not in one(payload)
    assert one(payload, dest(limited_data_use=True))["data_processing_options"] == []
    payload["integrations"]["facebook"].update(
        {
            "data_processing_options": ["LDU"],
            "data_processing_options_country": 1,
            "data_processing_options_state": 1000,
        }
    )
    sent = one(payload, dest(limited_data_use=True))
    assert (
        sent["data_processing_options"],
        sent["data_processing_options_country"],
        sent["data_processing_options_state"],
    ) == (["LDU"], 1, 1000)


@pytest.mark.parametrize(
    ("payload", "d", "reason"),
    [
        ({"user": {"email": "a@b.co"}}, None, "missing_event"),
        ({**event("x"), "event_name": "  "}, None, "missing_event"),
        (event("purchase"), None, "missing_value"),
        (event("purchase", amount="n/a"), None, "missing_value"),
        (event("purchase", amount=5, currency="euro"), None, "invalid_currency"),
        (event("page_view", context={"event_timestamp": (NOW - 8 * 86400) * 1000}), None, "event_too_old"),
        (event("page_view", context={"event_timestamp": (NOW + 120) * 1000}), None, "event_in_future"),
        ({"event_name": "page_view", "user": {"gender": "m"}}, None, "insufficient_match_keys"),
        ({"event_name": "page_view", "user": {"email": "not-an-email"}}, None, "insufficient_match_keys"),
        (event("newsletter_signup"), dest(unmapped_events="reject"), "unmapped_event"),
        (event("page_view"), dest(default_event_sets=[], event_sets={"Purchase": ["1"]}), "no_event_set"),
    ],
)
def test_rejections(payload: dict[str, Any], d: DestinationSettings | None, reason: str) -> None:
    with pytest.raises(Rejected) as exc:
        run(payload, d)
    assert exc.value.reason == reason
    assert "@" not in exc.value.message  # no PII in messages


def test_purchase_value_defaults_currency_to_usd() -> None:
    assert one(event("purchase", amount=5))["custom_data"]["currency"] == "USD"
    assert "currency" not in one(event("page_view"))["custom_data"]


def test_registered_with_its_defaults() -> None:
    dialect = get_dialect("commandersact")
    assert (dialect.default_unmapped, dialect.default_match_policy) == ("passthrough", "commandersact")


def strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_none(v) for v in value]
    return value


SEED_PAYLOADS = [PROPERTY_TABLE_EVENT, *(event(s, amount=25, currency="EUR") for s, _ in SEED_EVENT_TABLE)]


@pytest.mark.parametrize("payload", SEED_PAYLOADS)
def test_avro_round_trip(payload: dict[str, Any]) -> None:
    decoded = SCHEMA.decode_body(SCHEMA.encode(payload))
    assert strip_none(decoded) == payload
    assert run(decoded) == run(payload)


def test_avro_keeps_custom_properties() -> None:
    payload = {
        **PROPERTY_TABLE_EVENT,
        "properties": {"store_id": "S-9", "tags": ["a", 1]},
        "items": [{**PROPERTY_TABLE_EVENT["items"][0], "properties": '{"gift": true}'}],
    }
    payload["user"] = {**payload["user"], "loyalty": {"tier": "gold"}}
    assert strip_none(SCHEMA.decode_body(SCHEMA.encode(payload))) == payload


# ---- fuzzing: transform returns outputs or raises Rejected / Filtered, nothing else ----

KEYS = [
    "event_name",
    "type",
    "id",
    "amount",
    "currency",
    "name",
    "category",
    "status",
    "items",
    "user",
    "browser",
    "integrations",
    "facebook",
    "user_data",
    "custom_data",
    "event_id",
    "product",
    "quantity",
    "price",
    "email",
    "email_sha256",
    "phone",
    "consent_categories",
    "context",
    "event_timestamp",
    "country",
    "birthdate",
    "value",
    "fbp",
    "em",
]
JSON = json_values(
    KEYS,
    [
        "purchase",
        "offline",
        "1e400",
        "nan",
        "3",
        "2026-03-02T10:00:00Z",
        str(EVENT_MS),
        "+33 6 12 34 56 78",
        "a@b.co",
        sha("x"),
    ],
)
DESTS = st.sampled_from(
    [
        dest(),
        dest(consent_category="3", limited_data_use=True),
        dest(unmapped_events="reject", hashing=False),
        dest(
            event_mapping={"purchase": ["Purchase", "Lead"]},
            category_content_types={"Shoes": "product_group"},
        ),
    ]
)


def check_transform(payload: dict[str, Any], d: DestinationSettings) -> None:
    try:
        outputs = run(payload, d)
    except (Rejected, Filtered):
        return
    for out in outputs:
        orjson.dumps(out.event)  # serialisable
        assert out.event["event_name"]
        assert out.event["user_data"]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(
        [
            {},
            {
                "event_name": "purchase",
                "amount": 1,
                "user": {"email": "a@b.co"},
                "context": {"event_timestamp": EVENT_MS},
            },
        ]
    ),
    st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), JSON, max_size=8),
    DESTS,
)
def test_fuzz_arbitrary_objects(
    base: dict[str, Any], payload: dict[str, Any], d: DestinationSettings
) -> None:
    check_transform({**base, **payload}, d)


VALID_PATHS = paths(PROPERTY_TABLE_EVENT)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(VALID_PATHS), st.booleans(), JSON), min_size=1, max_size=4), DESTS)
def test_fuzz_mutations_of_a_valid_event(
    mutations: list[tuple[tuple[Any, ...], bool, Any]], d: DestinationSettings
) -> None:
    payload = copy.deepcopy(PROPERTY_TABLE_EVENT)
    mutate(payload, [(path, DELETE if delete else value) for path, delete, value in mutations])
    check_transform(payload, d)


def test_preview_lines_with_fixed_now() -> None:
    config = parse_settings(
        {
            "sources": [
                {
                    "name": "tc",
                    "topic": "events.tc",
                    "dialect": "commandersact",
                    "destination": "main",
                    "schema": str(ROOT / "schemas" / "commandersact_event.avsc"),
                }
            ],
            "destinations": [{"name": "main", "default_event_sets": ["111"], "consent_category": "3"}],
        },
        {},
    )
    no_consent = {**PROPERTY_TABLE_EVENT, "user": {"email": "a@b.co", "consent_categories": [1]}}
    lines = [
        orjson.dumps(PROPERTY_TABLE_EVENT).decode(),
        "",
        orjson.dumps(no_consent).decode(),
        "{not json",
        orjson.dumps({"user": {"consent_categories": [3]}}).decode(),
    ]
    out = [
        orjson.loads(line) for line in preview_lines(config, "tc", NOW, io.StringIO("\n".join(lines) + "\n"))
    ]
    assert out == [
        {"index": 0, "event_set_id": "111", "event": PROPERTY_TABLE_OUTPUT},
        {"index": 2, "filtered": {"reason": "no_consent"}},
        {"index": 3, "rejected": {"reason": "invalid_json", "message": "the line is not JSON"}},
        {"index": 4, "rejected": {"reason": "missing_event", "message": "the event has no event_name"}},
    ]
