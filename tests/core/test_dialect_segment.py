"""The segment / rudderstack dialect (docs/dialects.md#segment).

Golden tests use the seed pages' own sample track calls and tables (RudderStack and Segment);
every hash is computed here from the normalised plaintext, so a reader sees what was hashed.
Where the seeds disagree with docs/dialects.md, the docs decide and the test says so.
"""

from __future__ import annotations

import copy
import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.adapters.codec import AvroSchema
from consumer.config.settings import DestinationSettings, Settings, parse_settings
from consumer.core.capi.event import Output, RecordContext, ServerEvent
from consumer.core.dialects import get_dialect
from consumer.core.dialects.common import dedup_item_number
from consumer.core.dialects.segment import transform as bare_transform
from consumer.errors import Filtered, Rejected
from consumer.ops.cli import preview_lines
from consumer.sandbox.validate import SUB_MISSING, check_event
from tests.fuzz import DELETE, json_values, mutate, paths
from tests.garbage import cyclic_garbage

# What the service runs: the dialect's events screened and checked on the way out.
transform = get_dialect("segment").transform

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "schemas" / "segment_track.avsc"
SCHEMA = AvroSchema.from_file(SCHEMA_PATH)
NOW = 1_772_452_800  # 2026-03-02T12:00:00Z
EVENT_ISO = "2026-03-02T11:00:00.000Z"
EVENT_TIME = NOW - 3600
KAFKA_MS = (NOW - 60) * 1000  # the Kafka record's timestamp, used when the call has none
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sha(plain: str) -> str:
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def digest(payload: dict[str, Any]) -> str:
    """The stable event_id of a call without messageId: sha256 of its canonical JSON."""
    return sha(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode())


def config(**destination: Any) -> Settings:
    return parse_settings(
        {
            "sources": [
                {
                    "name": "web",
                    "topic": "events.track",
                    "dialect": "segment",
                    "destination": "main",
                    "schema": str(SCHEMA_PATH),
                }
            ],
            "destinations": [{"name": "main", "default_event_sets": ["111"], **destination}],
        },
        {},
    )


def dest(**destination: Any) -> DestinationSettings:
    return config(**destination).destination("main")


DEFAULT = dest()


def run(
    payload: dict[str, Any], d: DestinationSettings | None = None, kafka_ms: int = KAFKA_MS, now: int = NOW
) -> list[Output]:
    return transform(payload, RecordContext(kafka_ms, payload), d or DEFAULT, now)


def one(payload: dict[str, Any], d: DestinationSettings | None = None) -> ServerEvent:
    outputs = run(payload, d)
    assert len(outputs) == 1
    assert outputs[0].event_set_id == "111"
    return outputs[0].event


def track(event: str = "Product Viewed", **fields: Any) -> dict[str, Any]:
    """A small valid track call: a user id, an hour old."""
    return {
        "type": "track",
        "event": event,
        "messageId": "msg-1",
        "timestamp": EVENT_ISO,
        "userId": "user-1",
        **fields,
    }


def reason_of(payload: dict[str, Any], d: DestinationSettings | None = None) -> str:
    with pytest.raises(Rejected) as info:
        run(payload, d)
    return info.value.reason


# -- golden tests from the seed pages --------------------------------------------------------

# RudderStack's sample track call, as the page shows it; `type`, `messageId` and `timestamp`
# are what the SDK adds to every call.
RUDDERSTACK_TRACK: dict[str, Any] = {
    "type": "track",
    "messageId": "rs-msg-1",
    "timestamp": EVENT_ISO,
    "userId": "user@1",
    "event": "Product Added",
    "properties": {
        "products": [{"id": 1, "category": "Games", "brand": "Hasbro", "price": 18.99, "quantity": 1}],
        "order_id": "cart1234",
        "price": 18.99,
        "currency": "USD",
    },
    "traits": {
        "email": "alex@example.com",
        "phone": "+1-202-555-0146",
        "gender": "male",
        "firstName": "Alex",
        "lastName": "Keener",
        "address": {"city": "New Orleans", "state": "Louisiana", "postalCode": "90009", "country": "USA"},
    },
    "context": {"dataProcessingOptions": [["LDU"], 1, 1000]},
}
# In the order the dialect writes it (the preview test compares bytes).
RUDDERSTACK_OUTPUT: ServerEvent = {
    "event_name": "AddToCart",  # Product Added (built-in table)
    "event_time": EVENT_TIME,
    "event_id": "rs-msg-1",
    "action_source": "physical_store",
    "user_data": {
        "em": [sha("alex@example.com")],
        "ph": [sha("12025550146")],  # +1-202-555-0146: digits with country code
        "fn": [sha("alex")],
        "ln": [sha("keener")],
        "ge": [sha("m")],  # male
        "ct": [sha("neworleans")],
        "st": [sha("la")],  # Louisiana
        "zp": [sha("90009")],
        "country": [sha("us")],  # USA
        "external_id": [sha("user@1")],  # userId
    },
    "data_processing_options": ["LDU"],  # context.dataProcessingOptions, LDU on
    "data_processing_options_country": 1,
    "data_processing_options_state": 1000,
    "custom_data": {
        "value": 18.99,  # pre-purchase: value_field `value` absent, then value, then price
        "currency": "USD",
        "contents": [{"id": "1", "quantity": 1, "item_price": 18.99, "brand": "Hasbro", "category": "Games"}],
        "content_ids": ["1"],
        "content_type": "product",
        "order_id": "cart1234",
    },
}


def test_rudderstack_sample_track_call() -> None:
    outputs = run(RUDDERSTACK_TRACK, dest(limited_data_use=True))
    assert outputs == [Output("111", RUDDERSTACK_OUTPUT, None)]
    assert check_event(outputs[0].event, NOW) is None  # Meta would accept it


def test_a_transform_leaves_no_cyclic_garbage() -> None:
    # the segment transform's closures once kept every record alive until the collector ran
    assert cyclic_garbage(lambda: run(RUDDERSTACK_TRACK, dest(limited_data_use=True))) == 0


def test_rudderstack_sample_without_limited_data_use() -> None:
    expected = {k: v for k, v in RUDDERSTACK_OUTPUT.items() if not k.startswith("data_processing_options")}
    assert one(RUDDERSTACK_TRACK) == expected


# Segment's first example, as the page shows it (a track call's type is `track`).
SEGMENT_ORDER: dict[str, Any] = {
    "type": "track",
    "userId": "019mr8mf4r",
    "event": "Order Completed",
    "properties": {"revenue": 39.95, "shippingMethod": "2-day"},
}


def test_segment_order_completed_example() -> None:
    assert one(SEGMENT_ORDER) == {
        "event_name": "Purchase",
        "event_time": NOW - 60,  # no timestamp: the Kafka record's
        "event_id": digest(SEGMENT_ORDER),  # no messageId: a stable hash of the record
        "action_source": "physical_store",
        "user_data": {"external_id": [sha("019mr8mf4r")]},  # a userId alone is enough
        "custom_data": {
            "shippingMethod": "2-day",  # any remaining property
            "value": 39.95,  # Order Completed uses properties.revenue
            "currency": "USD",  # default
            "content_type": "product",
            # no order_id: an item_number from the event id keeps Meta's offline dedup key
            # distinct from the same customer's other purchases in that second
            "item_number": dedup_item_number(digest(SEGMENT_ORDER)),
        },
    }


# Segment's node.js example with user data in context.traits.
SEGMENT_PRODUCT_ADDED: dict[str, Any] = {
    "type": "track",
    "userId": "hamsolo813",
    "event": "Product Added",
    "properties": {
        "cart_id": "cart1234",
        "product_id": "product12356",
        "sku": "G-32",
        "category": "Games",
        "name": "Monopoly: 3rd Edition",
        "brand": "Hasbro",
        "variant": "200 pieces",
        "price": 18.99,
        "quantity": 1,
        "coupon": "MAYDEALS",
        "position": 3,
    },
    "context": {
        "traits": {
            "email": "hamsolo813@hamsolo813.com",
            "phone": "4011234567",
            "gender": "m",
            "name": "ham solo",
            "address": {"city": "East Greenwich", "state": "RI", "postalCode": "02818", "country": "USA"},
        }
    },
}


def test_segment_context_traits_example() -> None:
    assert one(SEGMENT_PRODUCT_ADDED) == {
        "event_name": "AddToCart",
        "event_time": NOW - 60,
        "event_id": digest(SEGMENT_PRODUCT_ADDED),
        "action_source": "physical_store",
        "user_data": {
            "em": [sha("hamsolo813@hamsolo813.com")],
            # no ph: 401-123-4567 is not a valid US number (an exchange cannot start with 1),
            # so that field alone is dropped (docs/dialects.md#normalisation)
            "fn": [sha("ham")],  # name "ham solo": first word
            "ln": [sha("solo")],  # last word
            "ge": [sha("m")],
            "ct": [sha("eastgreenwich")],
            "st": [sha("ri")],
            "zp": [sha("02818")],
            "country": [sha("us")],
            "external_id": [sha("hamsolo813")],
        },
        "custom_data": {
            # the remaining properties; `name` is left out (docs/dialects.md: a property named name may be
            # PII), and the top-level product_id is not a `products` entry, so no contents
            "cart_id": "cart1234",
            "product_id": "product12356",
            "sku": "G-32",
            "category": "Games",
            "brand": "Hasbro",
            "variant": "200 pieces",
            "quantity": 1,
            "coupon": "MAYDEALS",
            "position": 3,
            "value": 18.99,  # pre-purchase: value absent, so price
            "currency": "USD",
            "content_type": "product",
            "item_number": dedup_item_number(digest(SEGMENT_PRODUCT_ADDED)),
        },
    }


def test_segment_limited_data_use_example() -> None:
    """Segment's LDU example: options in integrations."Facebook Offline Conversions"."""
    payload = {
        "type": "track",
        "event": "Membership Upgraded",
        "userId": "97234974",
        "integrations": {"Facebook Offline Conversions": {"dataProcessingOptions": [[], 1, 1000]}},
    }
    assert one(payload, dest(limited_data_use=True)) == {
        "event_name": "Other",  # no standard name: unmapped_events `other` (the default)
        "event_time": NOW - 60,
        "event_id": digest(payload),
        "action_source": "physical_store",
        "user_data": {"external_id": [sha("97234974")]},
        "data_processing_options": [],
        "data_processing_options_country": 1,
        "data_processing_options_state": 1000,
        "custom_data": {
            "currency": "USD",
            "content_type": "product",
            "item_number": dedup_item_number(digest(payload)),
        },
    }
    passthrough = one(payload, dest(limited_data_use=True, unmapped_events="passthrough"))
    assert passthrough["event_name"] == "Membership Upgraded"


def test_lead_id_from_the_seed_examples() -> None:
    # RudderStack: context.externalId entry of type LeadId
    rudder = track(context={"externalId": [{"id": "leadId-value", "type": "LeadId"}]})
    assert one(rudder)["user_data"]["lead_id"] == "leadId-value"  # never hashed
    # Segment: integration options; fboc reads them from integrations.<FB>.leadId
    for key in ("Facebook Offline Conversions", "FacebookOfflineConversions"):
        segment = track(integrations={key: {"leadId": "<LEAD ADS ID>"}})
        assert one(segment)["user_data"]["lead_id"] == "<LEAD ADS ID>"
    # the externalId entry wins over the integration option
    both = track(
        context={"externalId": [{"id": "lead-1", "type": "leadid"}]},
        integrations={"FacebookOfflineConversions": {"leadId": "lead-2"}},
    )
    assert one(both)["user_data"]["lead_id"] == "lead-1"
    # Segment's page puts it under context."Facebook Offline Conversions": not one of fboc's paths
    seed_placement = track(context={"Facebook Offline Conversions": {"leadId": "x"}})
    assert "lead_id" not in one(seed_placement)["user_data"]


# Segment's table of event names (RudderStack's page uses the same names).
SEED_EVENT_TABLE = [
    ("Products Searched", "Search"),
    ("Product Viewed", "ViewContent"),
    ("Product List Viewed", "ViewContent"),
    ("Product Added to Wishlist", "AddToWishlist"),
    ("Product Added", "AddToCart"),
    ("Checkout Started", "InitiateCheckout"),
    ("Payment Info Entered", "AddPaymentInfo"),
    ("Order Completed", "Purchase"),
]


@pytest.mark.parametrize(("source", "standard"), SEED_EVENT_TABLE)
def test_seed_event_name_table(source: str, standard: str) -> None:
    payload = track(source, properties={"value": 25, "currency": "eur"})
    assert one(payload) == {
        "event_name": standard,
        "event_time": EVENT_TIME,
        "event_id": "msg-1",
        "action_source": "physical_store",
        "user_data": {"external_id": [sha("user-1")]},
        "custom_data": {
            "value": 25.0,
            "currency": "EUR",
            # Product List Viewed without products is a product group (docs/dialects.md#segment)
            "content_type": "product_group" if source == "Product List Viewed" else "product",
            "item_number": dedup_item_number("msg-1"),
        },
    }


# RudderStack's property table, first path of every row (the precedence of the other paths is
# tested below), plus fboc's additions (context.ip).
PROPERTY_TABLE: dict[str, Any] = {
    "type": "track",
    "messageId": "msg-table",
    "userId": "user-42",
    "originalTimestamp": EVENT_ISO,
    "event": "Order Completed",
    "properties": {
        "currency": "eur",
        "total": 120.5,
        "price": 99.0,
        "upload_tag": "store-sales",
        "item_number": "item-7",
        "order_id": "order-42",
        "email": "other@example.com",  # a later path than traits.email: unused, not custom
        "shippingMethod": "2-day",
        "products": [
            {
                "product_id": "sku-1",
                "quantity": 2,
                "price": 50.25,
                "brand": "Acme",
                "category": "Shoes",
                "variant": "red",
            },
            {"sku": "G-32", "price": "20"},
            {"name": "a product without an id is skipped", "price": 1},
        ],
    },
    "traits": {
        "email": " Alex@Example.com ",
        "phone": "+1-202-555-0146",
        "gender": "Female",
        "birthday": "1990-05-17",
        "firstName": "Zoé",
        "lastName": "O'Brien",
        "state": "Louisiana",
        "zip": "70112-1234",
        "country": "USA",
        "address": {"city": "New Orleans"},
        "action_source": "phone_call",
    },
    "context": {
        "device": {"advertisingId": "607258d9-c28b-43ad-95ed-e9593025d5a1"},
        "userAgent": "Mozilla/5.0 (iPhone)",
        "ip": "203.0.113.7",
        "page": {"url": "https://shop.example.com/checkout?step=done"},
        "fbc": "fb.1.1772449200000.AbCdEf",
        "fbp": "fb.1.1772449200000.1234567890",
        "externalId": [{"id": "lead-123", "type": "LeadId"}],
    },
}
PROPERTY_TABLE_OUTPUT: ServerEvent = {
    "event_name": "Purchase",
    "event_time": EVENT_TIME,  # originalTimestamp
    "event_id": "msg-table",
    "action_source": "phone_call",  # traits.action_source, an allowed value
    "event_source_url": "https://shop.example.com/checkout?step=done",
    "user_data": {
        "em": [sha("alex@example.com")],
        "ph": [sha("12025550146")],
        "fn": [sha("zoé")],
        "ln": [sha("obrien")],
        "ge": [sha("f")],
        "db": [sha("19900517")],
        "ct": [sha("neworleans")],
        "st": [sha("la")],
        "zp": [sha("70112")],
        "country": [sha("us")],
        "external_id": [sha("user-42")],
        "client_ip_address": "203.0.113.7",
        "client_user_agent": "Mozilla/5.0 (iPhone)",
        "fbc": "fb.1.1772449200000.AbCdEf",
        "fbp": "fb.1.1772449200000.1234567890",
        "madid": "607258d9-c28b-43ad-95ed-e9593025d5a1",
        "lead_id": "lead-123",
    },
    "custom_data": {
        "shippingMethod": "2-day",
        "value": 120.5,  # Purchase: revenue absent, so total
        "currency": "EUR",
        "contents": [
            {"id": "sku-1", "quantity": 2, "item_price": 50.25, "brand": "Acme", "category": "Shoes"},
            {"id": "G-32", "quantity": 1, "item_price": 20.0},
        ],
        "content_ids": ["sku-1", "G-32"],
        "content_type": "product",
        "order_id": "order-42",
        "item_number": "item-7",
    },
}


def test_rudderstack_property_table() -> None:
    outputs = run(PROPERTY_TABLE)
    assert outputs == [Output("111", PROPERTY_TABLE_OUTPUT, "store-sales")]  # upload_tag


# -- every path of every user_data key: the first non-empty one wins ---------------------------


def under(prefixes: tuple[str, ...], names: tuple[str, ...]) -> list[str]:
    return [f"{p}.{n}" for p in prefixes for n in names]


TRAITS = ("traits", "context.traits")
PLACES = ("traits", "context.traits", "traits.address", "context.traits.address")
ZIPS = ("zip", "zipcode", "zip_code", "zipCode", "postalcode", "postal_code", "postalCode")
STATES = [("Louisiana", "la"), ("CA", "ca"), ("Texas", "tx"), ("ny", "ny")]
COUNTRIES = [("USA", "us"), ("France", "fr"), ("DEU", "de"), ("gb", "gb")]
# key → (its paths in docs/dialects.md order, j → (raw value for path j, normalised value))
USER_PATHS: dict[str, tuple[list[str], Callable[[int], tuple[str, str]]]] = {
    "external_id": (
        ["userId", "traits.userId", "traits.id", "context.traits.userId", "context.traits.id", "anonymousId"],
        lambda j: (f"id-{j}", f"id-{j}"),
    ),
    "em": (
        ["traits.email", "context.traits.email", "properties.email"],
        lambda j: (f" Person{j}@Example.com", f"person{j}@example.com"),
    ),
    "ph": (
        ["traits.phone", "context.traits.phone", "properties.phone"],
        lambda j: (f"(202) 555-01{j:02d}", f"120255501{j:02d}"),
    ),
    "ge": (under(TRAITS, ("gender",)), lambda j: [("Male", "m"), ("woman", "f")][j]),
    "db": (
        under(TRAITS, ("birthday", "dateOfBirth", "dateofbirth", "dob", "DOB")),
        lambda j: (f"1990-05-{10 + j}", f"199005{10 + j}"),
    ),
    "fn": (
        under(TRAITS, ("firstName", "firstname", "first_name")),
        lambda j: (f"Ann {chr(65 + j)}.", f"ann{chr(97 + j)}"),
    ),
    "ln": (
        under(TRAITS, ("lastName", "lastname", "last_name")),
        lambda j: (f"Lee-{chr(65 + j)}", f"lee{chr(97 + j)}"),
    ),
    "ct": (under(PLACES, ("city",)), lambda j: (f"New Orleans {chr(65 + j)}", f"neworleans{chr(97 + j)}")),
    "st": (under(PLACES, ("state",)), lambda j: STATES[j]),
    "zp": (under(PLACES, ZIPS), lambda j: (f"{70100 + j}-1234", f"{70100 + j}")),
    "country": (under(PLACES, ("country",)), lambda j: COUNTRIES[j]),
}
PATH_CASES = [(key, i) for key, (paths, _) in USER_PATHS.items() for i in range(len(paths))]


def set_path(payload: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = payload
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def anchored() -> dict[str, Any]:
    """A call whose only other key is the IP address (not a match key Meta refuses alone)."""
    return {
        "type": "track",
        "event": "Product Viewed",
        "messageId": "m",
        "timestamp": EVENT_ISO,
        "context": {"ip": "203.0.113.9"},
    }


@pytest.mark.parametrize(
    ("key", "index"), PATH_CASES, ids=[f"{k}-{USER_PATHS[k][0][i]}" for k, i in PATH_CASES]
)
def test_first_non_empty_path_wins(key: str, index: int) -> None:
    paths, value = USER_PATHS[key]
    payload = anchored()
    for j in range(index, len(paths)):  # this path and every later one hold a value
        set_path(payload, paths[j], value(j)[0])
    if index > 0:
        set_path(payload, paths[index - 1], "  ")  # an earlier path that is blank is skipped
    user_data = one(payload)["user_data"]
    assert user_data == {key: [sha(value(index)[1])], "client_ip_address": "203.0.113.9"}


def test_email_from_context_external_id_entries() -> None:
    ids = [
        {"id": "a@b.co", "type": "email"},
        {"id": "lead", "type": "LeadId"},
        {"id": "C@D.co", "type": "Email"},
        {"type": "email"},
        "junk",
    ]
    assert one(anchored() | {"context": {"externalId": ids}})["user_data"] == {
        "em": [sha("a@b.co"), sha("c@d.co")],
        "lead_id": "lead",
    }
    # a traits email comes first: the entries are then not used
    payload = track(traits={"email": "t@t.co"}, context={"externalId": ids})
    assert one(payload)["user_data"]["em"] == [sha("t@t.co")]


@pytest.mark.parametrize(
    ("traits", "fn", "ln"),
    [
        ({"name": "ham solo"}, "ham", "solo"),
        ({"name": "  Mary  Ann   Smith "}, "mary", "smith"),  # first word, last word
        ({"name": "Cher"}, "cher", None),  # one word is a first name only
        ({"firstName": "Alex", "name": "Alexander Keener"}, "alex", "keener"),
        ({"lastName": "Lee", "name": "Ann Marie Smith"}, "ann", "lee"),
        ({"firstName": "Alex", "lastName": "Lee", "name": "Other Person"}, "alex", "lee"),
    ],
)
def test_fn_and_ln_fall_back_to_name(traits: dict[str, Any], fn: str, ln: str | None) -> None:
    user_data = one(track(context={"traits": traits}))["user_data"]
    assert user_data["fn"] == [sha(fn)]
    assert user_data.get("ln") == ([sha(ln)] if ln else None)


def test_a_value_that_cannot_be_normalised_drops_that_field_only() -> None:
    payload = track(
        traits={
            "email": "not-an-email",
            "phone": "12",
            "gender": "x",
            "birthday": "1890-01-01",
            "country": "Atlantis",
            "firstName": "Ann",
        }
    )
    assert one(payload)["user_data"] == {"fn": [sha("ann")], "external_id": [sha("user-1")]}


def test_phone_region_comes_from_the_event_country_else_default_country() -> None:
    uk = track(traits={"phone": "020 7946 0958", "country": "United Kingdom"})
    assert one(uk)["user_data"]["ph"] == [sha("442079460958")]
    de = track(traits={"phone": "030 901820"})
    assert one(de, dest(default_country="DE"))["user_data"]["ph"] == [sha("4930901820")]


def test_hashing_off_sends_only_values_that_are_hashed_already() -> None:
    payload = track(traits={"email": "a@b.co", "phone": sha("12025550146").upper()})
    assert one(payload, dest(hashing=False))["user_data"] == {"ph": [sha("12025550146")]}
    plain_id = one(payload, dest(hashing=False, hash_external_id=False))["user_data"]
    assert plain_id == {"ph": [sha("12025550146")], "external_id": ["user-1"]}


# -- context fields, action_source, URLs ----------------------------------------------------


def test_fbc_is_built_from_fbclid_in_the_page_url() -> None:
    url = "https://shop.example.com/p?utm_source=fb&fbclid=IwAR1abc"
    payload = track(timestamp="2026-03-02T11:00:00.123Z", context={"page": {"url": url}})
    sent = one(payload)
    assert sent["user_data"]["fbc"] == "fb.1.1772449200123.IwAR1abc"  # the event's ms
    assert sent["event_source_url"] == url
    # context.fbc wins
    given_fbc = track(context={"page": {"url": url}, "fbc": "fb.1.1.given"})
    assert one(given_fbc)["user_data"]["fbc"] == "fb.1.1.given"


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/?fbclid=x",  # malformed: ignored, never an error
        "https://shop.example.com/p?fbclid=",
        "https://shop.example.com/p?id=fbclid",
        12345,
        {"href": "https://shop.example.com/?fbclid=x"},
    ],
)
def test_no_fbc_without_a_usable_fbclid(url: Any) -> None:
    assert "fbc" not in one(track(context={"page": {"url": url}}))["user_data"]


def test_event_source_url_from_page_then_properties() -> None:
    assert one(track(properties={"url": "https://a.example/"}))["event_source_url"] == "https://a.example/"
    both = track(properties={"url": "https://a.example/"}, context={"page": {"url": "https://b.example/"}})
    assert one(both)["event_source_url"] == "https://b.example/"
    assert "url" not in one(both)["custom_data"]


WEB_CONTEXT = {"userAgent": "Mozilla/5.0", "page": {"url": "https://shop.example/p"}}


@pytest.mark.parametrize(
    ("fields", "destination", "expected"),
    [
        ({}, {}, "physical_store"),
        ({"context": WEB_CONTEXT}, {"action_source": "website"}, "website"),
        ({"traits": {"action_source": "email"}}, {}, "email"),
        ({"context": {**WEB_CONTEXT, "traits": {"action_source": "website"}}}, {}, "website"),
        ({"properties": {"action_source": "chat"}}, {}, "chat"),
        ({"traits": {"action_source": "email"}, "properties": {"action_source": "chat"}}, {}, "email"),
        ({"properties": {"action_source": "in_store"}}, {"action_source": "other"}, "other"),
        ({"properties": {"action_source": "Website"}}, {}, "physical_store"),  # exact values only
    ],
)
def test_action_source(fields: dict[str, Any], destination: dict[str, Any], expected: str) -> None:
    sent = one(track(**fields), dest(**destination))
    assert sent["action_source"] == expected
    assert "action_source" not in sent["custom_data"]


@pytest.mark.parametrize(
    ("fields", "destination", "missing"),
    [
        ({}, {"action_source": "website"}, "user_data.client_user_agent, event_source_url"),
        ({"context": {"userAgent": "Mozilla/5.0"}}, {"action_source": "website"}, "event_source_url"),
        (
            {"context": {"page": {"url": "https://shop.example/"}, "traits": {"action_source": "website"}}},
            {},
            "user_data.client_user_agent",
        ),
        # Segment carries no app_data or messaging_channel: such events cannot be sent
        ({"context": {"traits": {"action_source": "app"}}}, {}, "app_data"),
        ({}, {"action_source": "app"}, "app_data"),
        ({"properties": {"action_source": "business_messaging"}}, {}, "messaging_channel"),
    ],
)
def test_action_source_requirements(
    fields: dict[str, Any], destination: dict[str, Any], missing: str
) -> None:
    with pytest.raises(Rejected, match="missing_required_field") as info:
        run(track(**fields), dest(**destination))
    assert info.value.message.endswith(f"needs {missing}")


# -- value, currency, contents, content_type --------------------------------------------------

ALL_VALUES = {"value": 1, "price": 2, "revenue": 3, "total": 4}


@pytest.mark.parametrize(
    ("value_field", "expected"),
    [
        ("value", 1.0),
        ("price", 2.0),
        ("revenue", 3.0),
        ("total", 4.0),
        ("properties.value", 1.0),
        ("properties.price", 2.0),
        ("properties.revenue", 3.0),
        ("properties.total", 4.0),
    ],
)
def test_value_field_for_pre_purchase_events(value_field: str, expected: float) -> None:
    d = dest(value_field=value_field)
    assert one(track("Product Added", properties=ALL_VALUES), d)["custom_data"]["value"] == expected
    # Purchase ignores value_field: revenue first
    assert one(track("Order Completed", properties=ALL_VALUES), d)["custom_data"]["value"] == 3.0


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"total": 4, "value": "7.5", "price": 2}, 4.0),  # the value_field first
        ({"revenue": 5, "value": "7.5", "price": 2}, 7.5),  # then value (numeric text counts)
        ({"revenue": 5, "value": "n/a", "price": 2}, 2.0),  # then price
        ({"revenue": 5}, None),  # revenue is for Purchase only: no value
    ],
)
def test_value_field_falls_back_to_value_then_price(
    properties: dict[str, Any], expected: float | None
) -> None:
    custom = one(track("Product Added", properties=properties), dest(value_field="total"))["custom_data"]
    assert custom.get("value") == expected


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        (ALL_VALUES, 3.0),
        ({"total": 4, "value": 1, "price": 2}, 4.0),
        ({"value": 1, "price": 2}, 1.0),
        ({"price": 2, "revenue": "n/a"}, 2.0),
        ({"revenue": 0}, 0.0),  # zero is a value
        (
            {
                "products": [
                    {"price": 10.25, "quantity": 3},
                    {"price": 5},
                    {"quantity": 4},
                    {"price": "2.5", "quantity": "2"},
                    {"price": 9, "quantity": 0},
                ]
            },
            40.75,
        ),
        ({"revenue": None, "products": [{"id": "a", "price": 1.1, "quantity": 3}]}, 3.3),
    ],
)
def test_purchase_value(properties: dict[str, Any], expected: float) -> None:
    assert one(track("Order Completed", properties=properties))["custom_data"]["value"] == expected


@pytest.mark.parametrize(
    "properties",
    [
        {},
        {"revenue": "n/a", "currency": "USD"},
        {"products": [{"id": "a", "quantity": 2}]},  # no prices
        {"products": [{"price": 1e308, "quantity": 10}]},  # the sum is not a finite number
        {"products": "not a list"},
    ],
)
def test_purchase_without_value_is_rejected(properties: dict[str, Any]) -> None:
    assert reason_of(track("Order Completed", properties=properties)) == "missing_value"
    # the same properties on a pre-purchase event: sent without a value
    assert "value" not in one(track("Checkout Started", properties=properties))["custom_data"]


@pytest.mark.parametrize(
    ("currency", "expected"),
    [
        (None, "USD"),
        ("", "USD"),
        ("eur", "EUR"),
        (" gbp ", "GBP"),
        ("USD", "USD"),
    ],
)
def test_currency(currency: Any, expected: str) -> None:
    payload = track(properties={"currency": currency, "value": 1})
    assert one(payload)["custom_data"]["currency"] == expected


@pytest.mark.parametrize("currency", ["EURO", "XYZ", "ÄÖÜ", "us", 978, ["USD"], {"code": "USD"}, True])
def test_invalid_currency_is_rejected(currency: Any) -> None:
    assert reason_of(track(properties={"currency": currency})) == "invalid_currency"


def test_contents_from_products() -> None:
    products = [
        {
            "product_id": "p1",
            "id": "ignored",
            "sku": "ignored",
            "quantity": 2,
            "price": 3.5,
            "brand": "Acme",
            "category": "Toys",
            "name": "dropped",
            "coupon": "dropped",
        },
        {"id": 42, "quantity": "3"},
        {"sku": "S-1", "quantity": 2.9, "price": "n/a"},
        {"id": "p1", "quantity": 1e300},  # an absurd quantity counts as 1
        {"product_id": "  ", "id": "p5"},  # blank product_id: the next name
        {"price": 4},  # no id: skipped
        "junk",
        None,
    ]
    custom = one(track(properties={"products": products}))["custom_data"]
    assert custom["contents"] == [
        {"id": "p1", "quantity": 2, "item_price": 3.5, "brand": "Acme", "category": "Toys"},
        {"id": "42", "quantity": 3},
        {"id": "S-1", "quantity": 2},
        {"id": "p1", "quantity": 1},
        {"id": "p5", "quantity": 1},
    ]
    assert custom["content_ids"] == ["p1", "42", "S-1", "p5"]  # each id once


@pytest.mark.parametrize(
    ("properties", "content_ids", "content_type"),
    [
        ({"category": "Games"}, ["Games"], "product_group"),
        ({}, None, "product_group"),
        ({"category": "Games", "products": [{"product_id": "g1"}, {"id": "g2"}]}, ["g1", "g2"], "product"),
        ({"category": "Games", "products": [{"name": "no id"}]}, ["Games"], "product_group"),
    ],
)
def test_product_list_viewed(
    properties: dict[str, Any], content_ids: list[str] | None, content_type: str
) -> None:
    custom = one(track("Product List Viewed", properties=properties))["custom_data"]
    assert custom.get("content_ids") == content_ids
    assert custom["content_type"] == content_type
    assert custom.get("category") == properties.get("category")  # still a custom property


def test_content_ids_from_category_only_for_product_list_viewed() -> None:
    custom = one(track("Product Viewed", properties={"category": "Games"}))["custom_data"]
    assert "content_ids" not in custom
    assert custom["content_type"] == "product"


FB_SEGMENT, FB_RUDDER = "Facebook Offline Conversions", "FacebookOfflineConversions"


GAMES = {"category": "Games"}


@pytest.mark.parametrize(
    ("event", "fields", "destination", "expected"),
    [
        # 1. integrations.<FB>.contentType, either key (Segment's first)
        (
            "Product List Viewed",
            {"properties": GAMES, "integrations": {FB_RUDDER: {"contentType": "vehicle"}}},
            {"category_content_types": {"Games": "hotel"}},
            "vehicle",
        ),
        (
            "Product Added",
            {"integrations": {FB_SEGMENT: {"contentType": "flight"}, FB_RUDDER: {"contentType": "vehicle"}}},
            {},
            "flight",
        ),
        # 2. category_content_types for properties.category, else the first product's category
        (
            "Product List Viewed",
            {"properties": GAMES},
            {"category_content_types": {"Games": "hotel"}},
            "hotel",
        ),
        (
            "Product Added",
            {
                "properties": {
                    "products": [{"id": "a", "category": "Games"}, {"id": "b", "category": "Books"}]
                }
            },
            {"category_content_types": {"Games": "hotel", "Books": "flight"}},
            "hotel",
        ),
        (
            "Product Added",
            {"properties": {"category": "Books", "products": [{"id": "a", "category": "Games"}]}},
            {"category_content_types": {"Games": "hotel"}},
            "product",
        ),  # properties.category is the category: Books has no entry
        ("Product Added", {"properties": GAMES}, {"category_content_types": {"Books": "hotel"}}, "product"),
        # 3. Product List Viewed: product_group without products
        ("Product List Viewed", {"properties": GAMES}, {}, "product_group"),
        ("Product List Viewed", {"properties": {"products": [{"id": "a"}]}}, {}, "product"),
        # 4. mapped to ViewContent through event_mapping
        ("Viewed Shelf", {}, {"event_mapping": {"Viewed Shelf": "ViewContent"}}, "product_group"),
        (
            "Viewed Shelf",
            {"properties": {"products": [{"id": "a"}]}},
            {"event_mapping": {"Viewed Shelf": "ViewContent"}},
            "product",
        ),
        ("Product Viewed", {}, {"event_mapping": {"Product Viewed": "ViewContent"}}, "product_group"),
        # 5. otherwise product; RudderStack sends product_group for an unmapped Product Viewed
        # without products, docs/dialects.md says product
        ("Product Viewed", {}, {}, "product"),
        ("Order Completed", {"properties": {"revenue": 1}}, {}, "product"),
    ],
)
def test_content_type_precedence(
    event: str, fields: dict[str, Any], destination: dict[str, Any], expected: str
) -> None:
    payload = track(event, **fields)
    assert one(payload, dest(**destination))["custom_data"]["content_type"] == expected


# -- custom_data ------------------------------------------------------------------------------


def test_custom_data_carries_the_remaining_properties_without_pii() -> None:
    props = {
        # mapped to fields of their own
        "value": 1,
        "revenue": 2,
        "total": 3,
        "price": 4,
        "currency": "usd",
        "products": [],
        "order_id": "o-1",
        "orderId": "o-2",
        "item_number": "i-1",
        "upload_tag": "t",
        "url": "https://x.example/",
        "action_source": "chat",
        # PII (any case or separator)
        "email": "a@b.co",
        "Email Address": "a@b.co",
        "phone": "1",
        "phone_number": "1",
        "name": "Ann Lee",
        "firstName": "Ann",
        "last_name": "Lee",
        "birthday": "1990-01-01",
        "DOB": "1990-01-01",
        "address": {"street": "1 Main St"},
        "street": "1 Main St",
        "city": "Paris",
        "state": "CA",
        "zipCode": "1",
        "postal_code": "1",
        "country": "US",
        "gender": "f",
        # custom: kept, PII removed at any depth, nulls and empties dropped
        "store_id": "S-9",
        "register": 3,
        "gift": True,
        "score": 0.5,
        "tags": ["a", 1, None],
        "customer": {"tier": "gold", "email": "a@b.co", "billing": {"zip": "1", "vat": "x"}},
        "empty": "",
        "nothing": None,
        "no_list": [],
        "no_object": {},
        "order": {"lines": [{"sku": "x", "phone": "1"}]},
    }
    custom = one(track(properties=props))["custom_data"]
    assert custom == {
        "store_id": "S-9",
        "register": 3,
        "gift": True,
        "score": 0.5,
        "tags": ["a", 1, None],
        "customer": {"tier": "gold", "billing": {"vat": "x"}},
        "order": {"lines": [{"sku": "x"}]},
        "value": 1.0,
        "currency": "USD",
        "content_type": "product",
        "order_id": "o-1",
        "item_number": "i-1",
    }


def test_value_field_property_is_not_also_custom() -> None:
    props = {"amount": 12.5, "value": 3}
    custom = one(track(properties=props), dest(value_field="properties.amount"))["custom_data"]
    assert custom == {
        "value": 12.5,
        "currency": "USD",
        "content_type": "product",
        "item_number": dedup_item_number("msg-1"),
    }


def test_item_number_separates_records_without_an_order_id() -> None:
    # one customer, same event and second, no order id: Meta's offline dedup key would be the
    # same; the item_number (from the event id) keeps the two conversions apart
    first, second = (one(track(messageId=f"m-{i}", properties={"value": 5})) for i in (1, 2))
    assert first["event_time"] == second["event_time"]
    assert first["custom_data"]["item_number"] != second["custom_data"]["item_number"]
    # pinned: a changed derivation would make replays of old records count again
    assert first["custom_data"]["item_number"] == hashlib.sha256(b"m-1").hexdigest()[:16]
    assert one(track(messageId="m-1", properties={"value": 5})) == first  # a replay: same key
    # an order id or an explicit item_number is the key; website events are not deduplicated so
    assert "item_number" not in one(track(properties={"order_id": "o-1"}))["custom_data"]
    explicit = one(track(properties={"item_number": "line-2"}))["custom_data"]["item_number"]
    assert explicit == "line-2"
    web = one(
        track(
            properties={"action_source": "website", "url": "https://shop.example/"},
            context={"userAgent": "UA/1"},
        )
    )
    assert (web["action_source"], "item_number" in web["custom_data"]) == ("website", False)


def test_order_id_falls_back_to_order_id_camel_case() -> None:
    assert one(track(properties={"orderId": 9001}))["custom_data"]["order_id"] == "9001"


def test_deep_custom_properties_are_cut_and_stay_encodable() -> None:
    deep: Any = "bottom"
    for _ in range(300):
        deep = [deep]
    sent = one(track(properties={"deep": deep, "huge": 2**70, "fine": 2**63}))
    orjson.dumps(sent)
    assert "huge" not in sent["custom_data"]  # beyond what a JSON encoder writes
    assert sent["custom_data"]["fine"] == 2**63
    with pytest.raises(Rejected) as info:  # no messageId: no stable hash of such a record
        run({**track(properties={"deep": deep}), "messageId": None})
    assert info.value.reason == "invalid_payload"


# -- upload_tag -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "destination", "expected"),
    [
        ({}, {}, None),
        ({}, {"upload_tag": "store-2026"}, "store-2026"),
        ({"upload_tag": "promo"}, {"upload_tag": "store-2026"}, "promo"),
        ({"upload_tag": " "}, {"upload_tag": "store-2026"}, "store-2026"),
    ],
)
def test_upload_tag(properties: dict[str, Any], destination: dict[str, Any], expected: str | None) -> None:
    (output,) = run(track(properties=properties), dest(**destination))
    assert output.upload_tag == expected
    assert "upload_tag" not in output.event["custom_data"]


# -- limited data use -------------------------------------------------------------------------

LDU_CA = {
    "data_processing_options": ["LDU"],
    "data_processing_options_country": 1,
    "data_processing_options_state": 1000,
}


@pytest.mark.parametrize(
    ("mode", "fields", "expected"),
    [
        (False, {"context": {"dataProcessingOptions": [["LDU"], 1, 1000]}}, {}),
        ("never", {"context": {"dataProcessingOptions": [["LDU"], 1, 1000]}}, {}),
        (True, {}, {"data_processing_options": []}),  # on but absent: explicitly no LDU
        ("always", {}, {"data_processing_options": []}),
        ("when_location_known", {}, {}),
        ("when_location_known", {"context": {"dataProcessingOptions": [["LDU"], 1, 1000]}}, LDU_CA),
        (True, {"context": {"dataProcessingOptions": [["LDU"], 1, 1000]}}, LDU_CA),
        (True, {"integrations": {FB_SEGMENT: {"dataProcessingOptions": [["LDU"], 1, 1000]}}}, LDU_CA),
        (
            True,
            {"integrations": {FB_RUDDER: {"dataProcessingOptions": [["LDU"], 0, 0]}}},
            {**LDU_CA, "data_processing_options_country": 0, "data_processing_options_state": 0},
        ),
        (
            True,
            {
                "integrations": {FB_RUDDER: {"dataProcessingOptions": [["LDU"], 1, 1000]}},
                "context": {"dataProcessingOptions": [[], 0, 0]},
            },
            LDU_CA,
        ),  # integrations first
        (
            True,
            {
                "integrations": {FB_RUDDER: {"dataProcessingOptions": []}},
                "context": {"dataProcessingOptions": [["LDU"], 1, 1000]},
            },
            LDU_CA,
        ),  # empty: next
        (True, {"context": {"dataProcessingOptions": ["LDU", 1, 1000]}}, LDU_CA),  # flat: a list
        (True, {"context": {"dataProcessingOptions": [["LDU"]]}}, {"data_processing_options": ["LDU"]}),
        (
            True,
            {"context": {"dataProcessingOptions": [["LDU", None], "1", 1.5]}},
            {"data_processing_options": ["LDU"], "data_processing_options_country": 1},
        ),
        (
            True,
            {"context": {"dataProcessingOptions": [["LDU"], 1e300, -1]}},
            {"data_processing_options": ["LDU"]},
        ),  # codes that are no codes are left out
        (True, {"context": {"dataProcessingOptions": "LDU"}}, {"data_processing_options": []}),
    ],
)
def test_limited_data_use(mode: Any, fields: dict[str, Any], expected: dict[str, Any]) -> None:
    sent = one(track(**fields), dest(limited_data_use=mode))
    assert {k: v for k, v in sent.items() if k.startswith("data_processing")} == expected


# -- event time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"timestamp": EVENT_ISO, "originalTimestamp": "2026-03-02T10:00:00Z"}, EVENT_TIME),
        ({"timestamp": None, "originalTimestamp": "2026-03-02T10:00:00Z"}, NOW - 7200),
        ({"timestamp": "yesterday", "originalTimestamp": "2026-03-02T10:00:00Z"}, NOW - 7200),
        ({"timestamp": "2026-03-02T12:30:00+02:00"}, NOW - 5400),  # offsets honoured
        ({"timestamp": "2026-03-02T11:30:00"}, NOW - 1800),  # naive is UTC
        ({"timestamp": None}, NOW - 60),  # the Kafka record's
        ({"timestamp": "9" * 400, "originalTimestamp": "²"}, NOW - 60),  # not times
    ],
)
def test_event_time(fields: dict[str, Any], expected: int) -> None:
    assert one(track(**fields))["event_time"] == expected


def test_physical_store_events_may_be_62_days_old_when_configured() -> None:
    old = track(timestamp="2026-01-01T12:00:00Z")  # 60 days before NOW
    assert reason_of(old) == "event_too_old"  # default max_event_age_days 7
    assert one(old, dest(max_event_age_days=62))["event_time"] == NOW - 60 * 86400
    # Meta's limit for other action sources stays 7 days
    website = track(timestamp="2026-01-01T12:00:00Z", traits={"action_source": "website"})
    assert reason_of(website, dest(max_event_age_days=62)) == "event_too_old"


# -- names, event sets, fan-out ---------------------------------------------------------------


def test_each_fanned_out_event_has_its_own_name_and_content_type() -> None:
    """docs/dialects.md#routing: RudderStack sends the last mapped name to every event set; here each output
    has its own event_name, content_type and value."""
    d = dest(
        default_event_sets=[],
        event_mapping={
            "Product Viewed": ["ViewContent", "Search"],
            "Order Completed": ["Purchase", "AddToCart"],
        },
        event_sets={
            "ViewContent": ["1", "2"],
            "Search": ["3"],
            "Purchase": ["4", "5"],
            "AddToCart": ["2", "6"],
        },
    )
    viewed = run(track("Product Viewed"), d)
    assert [
        (o.event_set_id, o.event["event_name"], o.event["custom_data"]["content_type"]) for o in viewed
    ] == [
        ("1", "ViewContent", "product_group"),
        ("2", "ViewContent", "product_group"),
        ("3", "Search", "product"),
    ]
    assert viewed[0].event is not viewed[2].event
    assert {o.event["event_id"] for o in viewed} == {"msg-1"}
    order = run(track("Order Completed", properties={"revenue": 50, "price": 20}), d)
    assert [(o.event_set_id, o.event["event_name"], o.event["custom_data"]["value"]) for o in order] == [
        ("4", "Purchase", 50.0),
        ("5", "Purchase", 50.0),
        ("2", "AddToCart", 20.0),
        ("6", "AddToCart", 20.0),
    ]


def test_names_without_an_event_set_are_skipped() -> None:
    d = dest(
        default_event_sets=[],
        event_mapping={"Product Viewed": ["ViewContent", "Search"]},
        event_sets={"Search": ["3"]},
    )
    assert [(o.event_set_id, o.event["event_name"]) for o in run(track(), d)] == [("3", "Search")]


def test_unmapped_events_policy() -> None:
    payload = track("Signed Up")
    assert one(payload)["event_name"] == "Other"
    assert one(payload, dest(unmapped_events="passthrough"))["event_name"] == "Signed Up"
    assert reason_of(payload, dest(unmapped_events="reject")) == "unmapped_event"
    mapped = dest(unmapped_events="reject", event_mapping={"Signed Up": ["Lead", "Subscribe"]})
    assert [o.event["event_name"] for o in run(payload, mapped)] == ["Lead", "Subscribe"]
    # event_mapping is exact and case-sensitive; it wins over the built-in table
    assert reason_of(track("signed up"), mapped) == "unmapped_event"
    assert one(track("Product Added"), dest(event_mapping={"Product Added": "Lead"}))["event_name"] == "Lead"


def test_event_sets_per_name_and_default() -> None:
    d = dest(event_sets={"Purchase": ["7", "8"]}, default_event_sets=["9"])
    order = run(track("Order Completed", properties={"revenue": 1}), d)
    assert [o.event_set_id for o in order] == ["7", "8"]
    assert [o.event_set_id for o in run(track(), d)] == ["9"]


def test_both_dialect_names_are_this_dialect() -> None:
    assert get_dialect("segment").transform.inner is bare_transform  # type: ignore[attr-defined]
    assert get_dialect("rudderstack").transform.inner is bare_transform  # type: ignore[attr-defined]
    dialect = get_dialect("rudderstack")
    assert (dialect.default_unmapped, dialect.default_match_policy) == ("other", "meta_baseline")


# -- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "destination", "reason"),
    [
        ({**track(), "type": "identify"}, {}, "unsupported_type"),
        ({**track(), "type": "Track"}, {}, "unsupported_type"),
        ({k: v for k, v in track().items() if k != "type"}, {}, "unsupported_type"),
        ({k: v for k, v in track().items() if k != "event"}, {}, "missing_event"),
        (track("  "), {}, "missing_event"),
        ({**track(), "event": None}, {}, "missing_event"),
        (track(properties={"currency": "dollars"}), {}, "invalid_currency"),
        (track("Order Completed", properties={"currency": "USD"}), {}, "missing_value"),
        (track(timestamp="2026-02-23T11:59:00Z"), {}, "event_too_old"),
        (track(timestamp="2025-12-29T11:59:59Z"), {"max_event_age_days": 62}, "event_too_old"),
        (track(timestamp="2026-03-02T12:01:01Z"), {}, "event_in_future"),
        ({**track(), "userId": None}, {}, "insufficient_match_keys"),
        ({**track(), "userId": None, "traits": {"email": "not-an-email"}}, {}, "insufficient_match_keys"),
        (
            {**track(), "userId": None, "traits": {"gender": "f", "firstName": "Ann"}},
            {},
            "insufficient_match_keys",
        ),
        (
            {
                **track(),
                "userId": None,
                "traits": {"address": {"city": "Paris", "country": "FR"}},
                "context": {"userAgent": "UA/1.0"},
            },
            {},
            "insufficient_match_keys",
        ),
        (track("Signed Up"), {"unmapped_events": "reject"}, "unmapped_event"),
        (track(), {"default_event_sets": [], "event_sets": {"Purchase": ["1"]}}, "no_event_set"),
    ],
)
def test_rejections(payload: dict[str, Any], destination: dict[str, Any], reason: str) -> None:
    with pytest.raises(Rejected) as info:
        run(payload, dest(**destination))
    assert info.value.reason == reason
    assert "@" not in info.value.message  # no PII in messages
    assert "user-1" not in info.value.message


def test_event_time_limits_are_exact() -> None:
    assert one(track(timestamp="2026-03-02T12:01:00Z"))["event_time"] == NOW + 60
    assert one(track(timestamp="2026-02-23T12:00:00Z"))["event_time"] == NOW - 7 * 86400


# -- determinism ------------------------------------------------------------------------------


def encoded(outputs: list[Output]) -> list[bytes]:
    return [orjson.dumps([o.event_set_id, o.event, o.upload_tag]) for o in outputs]


@pytest.mark.parametrize("payload", [RUDDERSTACK_TRACK, SEGMENT_ORDER, SEGMENT_PRODUCT_ADDED, PROPERTY_TABLE])
def test_same_input_gives_byte_identical_output(payload: dict[str, Any]) -> None:
    d = dest(limited_data_use=True, event_sets={"Purchase": ["2", "3"]})
    first = encoded(run(payload, d))
    assert encoded(run(copy.deepcopy(payload), d)) == first
    decoded = SCHEMA.decode_body(SCHEMA.encode(payload))  # as the service reads it
    assert encoded(transform(decoded, RecordContext(KAFKA_MS, decoded), d, NOW)) == first


def test_event_id_is_message_id_else_a_stable_hash() -> None:
    assert one(track(messageId="abc-123"))["event_id"] == "abc-123"
    payload = {k: v for k, v in track().items() if k != "messageId"}
    expected = digest(payload)
    assert one(payload)["event_id"] == expected
    # the same record with its keys in another order, or with nulls (Avro) has the same id
    reordered = dict(reversed(list(payload.items())))
    assert one(reordered)["event_id"] == expected
    assert one({**payload, "messageId": None, "anonymousId": None})["event_id"] == expected
    assert one({**payload, "messageId": "  "})["event_id"] == digest({**payload, "messageId": "  "})
    # a different record, a different id
    assert one({**payload, "userId": "user-2"})["event_id"] != expected


# -- Avro -------------------------------------------------------------------------------------


def strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_none(v) for k, v in value.items() if v is not None}
    return value


@pytest.mark.parametrize("payload", [RUDDERSTACK_TRACK, SEGMENT_ORDER, SEGMENT_PRODUCT_ADDED, PROPERTY_TABLE])
def test_avro_round_trip_keeps_every_property(payload: dict[str, Any]) -> None:
    decoded = SCHEMA.decode_body(SCHEMA.encode(payload))
    assert strip_none(decoded) == payload
    assert run(decoded) == run(payload)


# -- fuzzing: transform gives outputs or raises Rejected / Filtered, nothing else --------------

KEYS = [
    "type",
    "event",
    "messageId",
    "userId",
    "anonymousId",
    "timestamp",
    "originalTimestamp",
    "properties",
    "context",
    "traits",
    "integrations",
    "products",
    "price",
    "quantity",
    "revenue",
    "value",
    "total",
    "currency",
    "category",
    "email",
    "phone",
    "name",
    "address",
    "page",
    "url",
    "externalId",
    "dataProcessingOptions",
    FB_SEGMENT,
    FB_RUDDER,
    "contentType",
    "leadId",
    "id",
    "product_id",
    "action_source",
    "upload_tag",
    "fbc",
]
JSON = json_values(
    KEYS,
    [
        "track",
        "Order Completed",
        "Product List Viewed",
        "LeadId",
        "email",
        "website",
        "1e400",
        "9" * 400,
        "²",
        EVENT_ISO,
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "http://[::1/?fbclid=x",
        "https://x/?fbclid=y",
        "+1 202 555 0146",
        "a@b.co",
        "USD",
        "eur",
        sha("x"),
    ],
)
DESTS = [
    DEFAULT,
    dest(limited_data_use=True, hashing=False, value_field="properties.revenue"),
    dest(
        limited_data_use="when_location_known",
        unmapped_events="reject",
        category_content_types={"Games": "product_group"},
    ),
    dest(
        event_mapping={"Order Completed": ["Purchase", "ViewContent"]},
        default_event_sets=[],
        event_sets={"Purchase": ["1", "2"], "ViewContent": ["3"]},
        action_source="website",
        max_event_age_days=62,
    ),
]


def check_transform(payload: dict[str, Any], d: DestinationSettings) -> None:
    try:
        outputs = run(payload, d)
    except (Rejected, Filtered):
        return
    assert outputs
    for out in outputs:
        sent = orjson.loads(orjson.dumps(out.event))  # what the pipeline sends
        assert sent == out.event
        problem = check_event(sent, NOW)
        # Meta accepts it, except a website event without a user agent or URL (not the dialect's to
        # check for this dialect: delivery isolates such an event)
        assert problem is None or (sent["action_source"] == "website" and problem[0] == SUB_MISSING)
        assert out.upload_tag is None or isinstance(out.upload_tag, str)


@FUZZ
@given(
    st.sampled_from([{}, track(), track("Order Completed", properties={"revenue": 1})]),
    st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), JSON, max_size=8),
    st.sampled_from(DESTS),
)
def test_fuzz_arbitrary_objects(
    base: dict[str, Any], payload: dict[str, Any], d: DestinationSettings
) -> None:
    check_transform({**base, **payload}, d)


VALID = {
    **PROPERTY_TABLE,
    "integrations": {
        FB_SEGMENT: {"contentType": "product", "leadId": "l-1", "dataProcessingOptions": [["LDU"], 1, 1000]}
    },
}
VALID_PATHS = paths(VALID)


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from(VALID_PATHS), st.booleans(), JSON), min_size=1, max_size=4),
    st.sampled_from(DESTS),
)
def test_fuzz_mutations_of_a_valid_track_call(
    mutations: list[tuple[tuple[Any, ...], bool, Any]], d: DestinationSettings
) -> None:
    payload = copy.deepcopy(VALID)
    mutate(payload, [(path, DELETE if delete else value) for path, delete, value in mutations])
    check_transform(payload, d)


# -- fboc preview -----------------------------------------------------------------------------


def test_preview_lines_with_fixed_now() -> None:
    cfg = config(
        limited_data_use=True,
        default_event_sets=[],
        event_sets={"AddToCart": ["111", "222"], "Purchase": ["333"]},
    )
    identify = {**RUDDERSTACK_TRACK, "type": "identify"}
    no_value = track("Order Completed", properties={"currency": "EUR"})
    lines = [
        orjson.dumps(RUDDERSTACK_TRACK).decode(),
        "",
        orjson.dumps(identify).decode(),
        "{not json",
        "[1, 2]",
        orjson.dumps(no_value).decode(),
        orjson.dumps(SEGMENT_ORDER).decode(),
    ]
    out = preview_lines(cfg, "web", NOW, io.StringIO("\n".join(lines) + "\n"))
    order_event = {
        "event_name": "Purchase",
        "event_time": NOW,
        "event_id": digest(SEGMENT_ORDER),
        "action_source": "physical_store",
        "user_data": {"external_id": [sha("019mr8mf4r")]},
        "data_processing_options": [],
        "custom_data": {
            "shippingMethod": "2-day",
            "value": 39.95,
            "currency": "USD",
            "content_type": "product",
            "item_number": dedup_item_number(digest(SEGMENT_ORDER)),
        },
    }
    assert out == [
        orjson.dumps(line)
        for line in [
            {"index": 0, "event_set_id": "111", "event": RUDDERSTACK_OUTPUT},
            {"index": 0, "event_set_id": "222", "event": RUDDERSTACK_OUTPUT},
            {"index": 2, "rejected": {"reason": "unsupported_type", "message": "only track calls are sent"}},
            {"index": 3, "rejected": {"reason": "invalid_json", "message": "the line is not JSON"}},
            {"index": 4, "rejected": {"reason": "invalid_json", "message": "a line must hold a JSON object"}},
            {
                "index": 5,
                "rejected": {
                    "reason": "missing_value",
                    "message": "a Purchase needs revenue, total, value, price or priced products",
                },
            },
            # no timestamp: preview's record time is --now
            {"index": 6, "event_set_id": "333", "event": order_event},
        ]
    ]
