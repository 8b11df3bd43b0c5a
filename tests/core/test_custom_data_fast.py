"""The screen's fast walk (consumer/core/capi/custom.py: cached judgements, a set prefilter before the
customer comparison, paths built only for what is dropped) decides exactly as the reference
walk it replaced (tests/core/screen_reference.py) on generated events: the same event out,
the same drops in the same order."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.core.capi import custom
from consumer.core.capi.custom import CONTENT_KEYS, CUSTOMER_KEYS, STANDARD_KEYS, Screen, screen_event
from consumer.core.capi.normalize import normalize_field
from consumer.core.capi.recent import MAX_SETTINGS
from tests.core import screen_reference

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# a customer's own values, and texts that are them (or another key's) written otherwise: a
# text's form for one key can be the customer's value of another ("94025-1234" is zp 94025,
# the external_id 94025 is not it), which only the comparison key by key tells apart
POOL = {
    "fn": ["Alex", "Zoë", "Jean-Luc", "usd", "Acme", "Books"],
    "ln": ["O'Brien", "Nguyen", "García", "product"],
    "ct": ["New Orleans", "Menlo Park", "Paris", "jeanluc"],
    "db": ["1990-05-17", "17.05.1990", "1975-01-02"],
    "zp": ["70112", "94025-1234", "SW1A 1AA"],
    "external_id": ["cust-42", "Customer-7", "70112", "sku-1", "94025", "jeanluc", "19900517"],
}
customers = st.fixed_dictionaries({key: st.sampled_from(values) for key, values in POOL.items()})
anyones = st.sampled_from(sorted({value for values in POOL.values() for value in values}))
variants = st.sampled_from([str, str.upper, str.lower, lambda t: f"  {t} ", lambda t: t.replace(" ", "")])
ordinary = st.sampled_from(
    ["USD", "Acme", "Books", "product", "sku-1", "order-12", "store-3", "WINTER", "F", "US", "LA", "", " "]
)
contacts = st.sampled_from(
    [
        "pat@example.com",
        "Pat%40example.com",
        "+1 202-555-0146",
        "(202) 555-0146",
        "020 7946 0958",
        "a+590 823 125 003",
    ]
)
names = st.sampled_from(
    [
        *sorted(STANDARD_KEYS),
        *sorted(CONTENT_KEYS),
        "store_id",
        "coupon",
        "note",
        "billingEmail",
        "first_name",
        "zip",
        "phone_model",
        "pat@example.com",
        "Alex",
    ]
)


def user_data_of(person: dict[str, str], region: str, plain_id: bool) -> dict[str, Any]:
    user_data: dict[str, Any] = {"em": [sha("pat@example.com")], "country": [sha(region.lower())]}
    for key in CUSTOMER_KEYS:
        normalised = normalize_field(key, person[key], region=region, max_year=9999)
        if normalised is not None:
            user_data[key] = [normalised if key == "external_id" and plain_id else sha(normalised)]
    user_data["ge"] = [sha("f")]
    user_data["client_ip_address"] = "10.0.0.1"
    return user_data


@st.composite
def events(draw: st.DrawFn) -> tuple[dict[str, Any], Screen]:
    person = draw(customers)
    region = draw(st.sampled_from(["US", "GB", "FR"]))
    user_data = user_data_of(person, region, draw(st.booleans()))
    own = st.builds(lambda key, shape: shape(person[key]), st.sampled_from(CUSTOMER_KEYS), variants)
    own = own | st.builds(lambda text, shape: shape(text), anyones, variants)
    hashes = st.sampled_from([v[0] for v in user_data.values() if isinstance(v, list)]).map(str.upper)
    texts = own | ordinary | contacts | hashes | st.text(max_size=12)
    urls = st.builds(
        lambda name, value, fragment: f"https://shop.example/p?{quote(name)}={quote(value)}#{fragment}",
        names,
        texts,
        st.sampled_from(["", "top", "email=x", quote("pat@example.com")]),
    )
    scalars = texts | urls | st.integers(0, 10**12) | st.floats(allow_nan=False) | st.booleans() | st.none()
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=4),
        max_leaves=12,
    )
    event: dict[str, Any] = {
        "event_name": "Purchase",
        "user_data": user_data,
        "custom_data": draw(st.dictionaries(names, values, max_size=8)),
    }
    if draw(st.booleans()):
        event["event_source_url"] = draw(urls)
    allowed = frozenset(draw(st.lists(names, max_size=2)))
    screen = Screen(allowed, default_country=draw(st.sampled_from(["US", "GB"])), date_order="dmy")
    return event, screen


@PROPERTY
@given(events())
def test_the_fast_walk_decides_as_the_reference(example: tuple[dict[str, Any], Screen]) -> None:
    event, screen = example
    expected = screen_reference.screen_event(event, screen)
    assert screen_event(event, screen) == expected
    assert screen_event(event, screen) == expected  # again, from its caches
    assert custom._NOT_BUILT == {}  # what the deciding walk returns is never written to


def test_the_caches_stay_bounded() -> None:
    """A stream of distinct texts and names does not grow the caches past MAX_CACHED each."""
    for i in range(custom.MAX_CACHED + 50):
        screen_event({"event_name": "X", "custom_data": {f"name-{i}": f"text {i}"}}, Screen())
    assert len(custom._NAMES) <= custom.MAX_CACHED
    assert all(len(cache) <= custom.MAX_CACHED for cache in custom._JUDGED.values())
    assert len(custom._JUDGED) <= MAX_SETTINGS
