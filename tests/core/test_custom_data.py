"""Customer data never leaves outside user_data: consumer.core.capi.custom and the screening every
dialect's events pass (consumer.core.dialects.screening)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.config.settings import DestinationSettings
from consumer.core.capi import custom
from consumer.core.capi.custom import REASONS, Screen, is_customer_name, screen_event
from consumer.core.capi.event import Output
from consumer.core.dialects import screening
from consumer.core.dialects.common import dedup_item_number
from consumer.core.dialects.screening import finish, screen_for
from consumer.errors import Rejected
from consumer.telemetry.metrics import METRICS

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCREEN = Screen()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def screened(
    custom: dict[str, Any], user_data: dict[str, Any] | None = None, screen: Screen = SCREEN, **event: Any
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    out, drops = screen_event(
        {"event_name": "Purchase", "user_data": user_data or {"em": ["x"]}, "custom_data": custom, **event},
        screen,
    )
    return out, list(drops)


def kept(custom: dict[str, Any], **options: Any) -> dict[str, Any]:
    custom_data: dict[str, Any] = screened(custom, **options)[0]["custom_data"]
    return custom_data


# --- names ----------------------------------------------------------------------------------------

CUSTOMER_NAMES = [
    # the names found sent on main
    "customer_email",
    "contactEmail",
    "billing_phone",
    "mobile_phone",
    "shipping_address",
    "surname",
    "givenName",
    "ip_address",
    # any case or separator style, camelCase, mParticle's `$`
    "email",
    "E-Mail",
    "e_mail",
    "EMAIL_ADDRESS",
    "$Email",
    "mail",
    "Phone Number",
    "phone",
    "telephone",
    "tel",
    "tel_no",
    "Mobile",
    "msisdn",
    "MSISDN",
    "fax",
    "first_name",
    "FirstName",
    "firstname",
    "last name",
    "lastName",
    "family_name",
    "fullName",
    "FULL-NAME",
    "middle_name",
    "customer_name",
    "cardholderName",
    "userName",
    "name",
    "Name",
    "fname",
    "lname",
    "address",
    "address1",
    "Address Line 2",
    "street",
    "streetAddress",
    "city",
    "billingCity",
    "billing_city",
    "town",
    "zip",
    "$zip",
    "ZIP",
    "zipCode",
    "zip_code",
    "postcode",
    "post_code",
    "postalCode",
    "state",
    "country",
    "province",
    "birthday",
    "birthdate",
    "date_of_birth",
    "dateOfBirth",
    "dob",
    "DOB",
    "userDOB",
    "birth_year",
    "ip",
    "IP",
    "clientIp",
    "client_ip",
    "IPAddress",
    "ipv4",
    "ssn",
    "SSN",
    "social_security_number",
    "national_id",
    "passport_number",
    "gender",
    "Gender",
    "sex",
    "iban",
    "credit_card",
    "latitude",
    "lng",
    "em",
    "ph",
    "fn",
    "ln",
    "db",
    "zp",
    "external_id",
    "madid",
]
OTHER_NAMES = [
    "store_id",
    "register",
    "loyalty_tier",
    "gift",
    "basket_score",
    "product_name",
    "campaign_name",
    "velocity",
    "hotel",
    "shipping_method",
    "tip",
    "description",
    "membership",
    "classname",
    "zipper_color",
    "coupon",
    "category",
    "sku",
    "channel",
    "status",
    "order_id",
    "app_version",
    "cellar",
    "ipad_model",
    "nameless",
]


@pytest.mark.parametrize("name", CUSTOMER_NAMES)
def test_customer_names_are_dropped(name: str) -> None:
    assert is_customer_name(name)
    out, drops = screened({name: "x1", "store_id": "S-1"})
    assert out["custom_data"] == {"store_id": "S-1"}
    assert drops == [(f"custom_data.{name}", "name")]


def test_a_name_that_is_an_address_itself_is_dropped() -> None:
    out, drops = screened({"pat@example.com": 1, "+1 202-555-0146": 2, "ok": 3})
    assert out["custom_data"] == {"ok": 3}
    assert sorted(reason for _, reason in drops) == ["email_value", "phone_value"]


@pytest.mark.parametrize("name", OTHER_NAMES)
def test_other_names_are_kept(name: str) -> None:
    assert not is_customer_name(name)
    assert kept({name: "x1"}) == {name: "x1"}


def test_fbocs_own_fields_are_not_judged_by_name() -> None:
    """content_name and contents' title are no person's names."""
    custom = {
        "content_name": "Runner",
        "contents": [{"id": "A", "title": "Socks", "quantity": 1}],
        "content_category": "Shoes",
        "order_id": "O-1",
    }
    assert kept(custom) == custom
    # ... but only where fboc puts them: a nested content_name is a custom property again
    assert kept({"extra": {"content_name": "x", "name": "Pat"}}) == {"extra": {"content_name": "x"}}


# --- values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "pat@example.com",
        "PAT.DOE+shop@Example.CO.UK",
        "contact: pat@example.com, thanks",
        "mailto:pat@example.com",
        "pat%40example.com",
        "x@shop.xn--11b4c3d",
    ],
)
def test_email_values_are_dropped(value: str) -> None:
    out, drops = screened({"note": value, "contents": [{"id": "A", "brand": value}], "order_id": value})
    assert out["custom_data"] == {"contents": [{"id": "A"}]}
    assert sorted(drops) == [
        ("custom_data.contents[].brand", "email_value"),
        ("custom_data.note", "email_value"),
        ("custom_data.order_id", "email_value"),
    ]


@pytest.mark.parametrize(
    "value",
    [
        "+1 202-555-0146",
        "(650) 555-1212",
        "650.555.1212",
        "+44 20 7946 0958",
        "0044 20 7946 0958",
        "tel:+49-30-123456",
        "call +33 6 12 34 56 78 today",
        "16505551212",
        "+4915112345678",
        16505551212,
        4915112345678,
    ],
)
def test_phone_values_are_dropped(value: str | int) -> None:
    out, drops = screened({"note": value, "content_ids": [value, "A"], "store_id": "S-1"})
    if isinstance(value, str) and not value.isdigit():  # formatted: dropped from ids too
        assert out["custom_data"] == {"content_ids": ["A"], "store_id": "S-1"}
    else:  # a plain run of digits in an id field is an id
        assert out["custom_data"] == {"content_ids": [value, "A"], "store_id": "S-1"}
    assert ("custom_data.note", "phone_value") in drops


def test_hex_ids_are_ids_even_when_their_digits_look_like_a_phone_number() -> None:
    """fboc's own item_number (16 hex digits of a hash) once lost to the phone check: its digit
    run 590823125003 reads as a Guadeloupe number, and Meta's dedup key lost its distinct part."""
    ids = [dedup_item_number(f"tc-{i}") for i in range(300)] + ["a590823125003bfd"]
    for value in ids:
        custom = {"item_number": value, "order_id": value, "content_ids": [value]}
        assert kept(dict(custom)) == custom
    assert ("custom_data.item_number", "phone_value") in screened({"item_number": "a+590 823 125 003"})[1]


def test_text_with_many_number_runs_costs_bounded_time() -> None:
    """Each run of digits is parsed as a phone number: past 16 of them the text is dropped."""
    many = " / ".join(f"ref 100{i:04d}" for i in range(17))  # no valid number among them
    assert kept({"note": many[: len(many) - 14]}) == {"note": many[: len(many) - 14]}
    assert kept({"note": many}) == {}
    huge = "1234567 x " * 100_000
    assert kept({"note": huge}) == {}


def cache_sizes() -> tuple[int, int]:
    return custom._is_customer_name.cache_info().currsize, custom._has_phone.cache_info().currsize


def walk_cache_sizes() -> tuple[int, int]:
    return len(custom._NAMES), sum(len(judged) for judged in custom._JUDGED.values())


def test_long_names_and_values_are_checked_but_never_cached() -> None:
    """A stream of distinct long strings must not fill memory through the caches."""
    before, walk_before = cache_sizes(), walk_cache_sizes()
    long = {"x" * 300 + "_email": 1, "y" * 300: "z" * 300 + " +1 650 555 1212", "w" * 300: "ok" * 200}
    assert kept(long) == {"w" * 300: "ok" * 200}
    assert cache_sizes() == before
    assert walk_cache_sizes() == walk_before
    kept({"cache_probe_name": "cache probe value"})  # the name is checked as a value too
    assert cache_sizes() == (before[0] + 1, before[1] + 2)


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-02",
        "02/03/2026",
        "17.05.1990",
        "2026-03-02T11:00:00Z",
        "1234",
        "12.50",
        "SKU-12345",
        "v1.2.3",
        "1999.99",
        42,
        1999,
        12.5,
        True,
        "order 555-1212",  # too short for a phone number
    ],
)
def test_ordinary_values_are_kept(value: Any) -> None:
    assert kept({"note": value, "value": 12025550146}) == {"note": value, "value": 12025550146}


def test_values_equal_to_the_events_customer_fields_are_dropped() -> None:
    user_data = {
        "fn": [sha("alex")],
        "ln": [sha("obrien")],
        "ct": [sha("neworleans")],
        "zp": [sha("70112")],
        "db": [sha("19900517")],
        "external_id": [sha("cust-42")],
        "ge": [sha("f")],
        "country": [sha("us")],
        "st": [sha("la")],
    }
    custom = {
        "greeting": "ALEX",
        "family": "O'Brien",
        "where": "New Orleans",
        "code": "70112-1234",
        "born": "17.05.1990",
        "ref": " CUST-42 ",
        "ref_number": 70112,
        "hashed": sha("alex").upper(),
        # too coarse to compare: gender, state and country ("F", "LA", "US")
        "size": "F",
        "region_code": "LA",
        "market": "US",
        "sku": "CUST-43",
    }
    out, drops = screened(custom, user_data)
    assert out["custom_data"] == {"size": "F", "region_code": "LA", "market": "US", "sku": "CUST-43"}
    assert {reason for _, reason in drops} == {"customer_value"}
    assert len(drops) == 8


def test_external_id_sent_plain_is_compared_plain() -> None:
    out, _ = screened({"ref": "Cust-42", "other": "cust-7"}, {"external_id": ["cust-42"]})
    assert out["custom_data"] == {"other": "cust-7"}
    # with external_id_normalization exact, only the exact id is the customer's
    exact = Screen(external_id="exact")
    assert kept({"ref": "Cust-42"}, user_data={"external_id": [sha("cust-42")]}, screen=exact) == {
        "ref": "Cust-42"
    }


def test_ids_are_not_compared_with_the_customer() -> None:
    user_data = {"external_id": [sha("70112")], "zp": [sha("70112")]}
    custom = {"order_id": "70112", "content_ids": ["70112"], "contents": [{"id": "70112"}]}
    assert kept(custom, user_data=user_data) == custom


def test_a_phone_number_is_read_in_the_events_country() -> None:
    national = {"note": "020 7946 0958"}  # a London number, written nationally
    assert kept(national) == national  # not a valid US number
    assert kept(national, user_data={"country": [sha("gb")]}) == {}
    assert kept(national, screen=Screen(default_country="GB")) == {}


@pytest.mark.parametrize("depth", [1, 5, 20])
def test_nested_objects_and_lists_at_any_depth(depth: int) -> None:
    inner: Any = {"email": "x", "ok": 1, "list": ["pat@example.com", "fine", {"phone": "1"}]}
    for _ in range(depth):
        inner = {"level": [inner]}
    expected: Any = {"ok": 1, "list": ["fine", {}]}
    for _ in range(depth):
        expected = {"level": [expected]}
    out, drops = screened({"data": inner})
    assert out["custom_data"] == {"data": expected}
    assert sorted(reason for _, reason in drops) == ["email_value", "name", "name"]


def test_beyond_max_depth_is_dropped() -> None:
    deep: Any = "leaf"
    for _ in range(200):
        deep = {"d": deep}
    out, drops = screened({"deep": deep, "ok": 1})
    assert out["custom_data"]["ok"] == 1
    assert [reason for _, reason in drops] == ["too_deep"]


def test_nothing_dropped_returns_the_event_itself() -> None:
    event = {
        "event_name": "Purchase",
        "user_data": {"em": [sha("a@b.co")]},
        "custom_data": {"value": 1.0, "currency": "USD", "store": "S-1"},
        "event_source_url": "https://shop.example/p?utm_source=x&fbclid=AbC#top",
    }
    out, drops = screen_event(event, SCREEN)
    assert out is event
    assert drops == ()


def test_the_allow_list_keeps_a_named_property_as_it_is() -> None:
    screen = Screen(allowed=frozenset({"phone_model", "support_phone"}))
    custom = {
        "phone_model": "Pixel",
        "support_phone": "+1 202-555-0146",
        "phone": "x",
        "nested": {"phone_model": "Pixel 9"},
    }
    assert kept(custom, screen=screen) == {
        "phone_model": "Pixel",
        "support_phone": "+1 202-555-0146",
        "nested": {"phone_model": "Pixel 9"},
    }
    assert kept(custom) == {"nested": {}}


# --- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected", "reasons"),
    [
        (
            "https://shop.example/p?email=pat%40example.com&utm_source=mail&fbclid=AbC",
            "https://shop.example/p?utm_source=mail&fbclid=AbC",
            ["name"],
        ),
        ("https://shop.example/p?ref=pat%40example.com&x=1", "https://shop.example/p?x=1", ["email_value"]),
        ("https://shop.example/p?c=%2B1+202-555-0146&x=1", "https://shop.example/p?x=1", ["phone_value"]),
        ("https://shop.example/p?first_name=Pat&lastName=Doe", "https://shop.example/p", ["name", "name"]),
        (
            "https://shop.example/checkout#email=pat@example.com",
            "https://shop.example/checkout",
            ["email_value"],
        ),
        ("https://shop.example/checkout#/step?phone=1", "https://shop.example/checkout", ["name"]),
        ("https://shop.example/u/pat@example.com/orders", None, ["email_value"]),
        ("https://shop.example/call/+12025550146", None, ["phone_value"]),
        ("http://[::1/p?ref=pat@example.com", None, ["email_value"]),  # not a URL: judged as text
        ("http://[::1/p?email=x", "http://[::1/p?email=x", []),
    ],
)
def test_urls(url: str, expected: str | None, reasons: list[str]) -> None:
    out, drops = screened({}, event_source_url=url)
    assert out.get("event_source_url") == expected
    assert [reason for _, reason in drops] == reasons
    # a URL inside custom_data is screened the same way
    inner, inner_drops = screened({"page": url})
    assert inner["custom_data"].get("page") == expected
    assert [reason for _, reason in inner_drops] == reasons


# --- the dialects' wrapper ------------------------------------------------------------------------


def dest(**options: Any) -> DestinationSettings:
    return DestinationSettings(name="main", **options)


def counted(reason: str) -> float:
    value = METRICS.registry.get_sample_value("fboc_custom_data_dropped_total", {"reason": reason})
    return value or 0.0


def test_finish_counts_each_dropped_property_once_per_record() -> None:
    """Fan-out gives several outputs (event names, event sets) of one record: counted once."""

    def event(name: str) -> dict[str, Any]:
        return {
            "event_name": name,
            "action_source": "physical_store",
            "user_data": {"em": ["x"]},
            "custom_data": {"email": "x", "note": "pat@example.com", "ok": 1},
        }

    shared = event("Purchase")
    outputs = [Output("1", shared), Output("2", shared), Output("1", event("Lead"))]
    before = (counted("name"), counted("email_value"))
    result = finish(outputs, dest())
    assert (counted("name"), counted("email_value")) == (before[0] + 1, before[1] + 1)
    assert [o.event["custom_data"] for o in result] == [{"ok": 1}] * 3
    assert result[0].event is result[1].event  # still one event object for its event sets
    assert result[0].event is not shared
    assert shared["custom_data"]["email"] == "x"  # the dialect's event is not mutated


def test_finish_drops_an_upload_tag_holding_customer_data() -> None:
    event = {"event_name": "Lead", "action_source": "email", "custom_data": {}}
    outputs = [Output("1", event, "pat@example.com"), Output("2", event, "pat@example.com")]
    before = counted("email_value")
    assert [o.upload_tag for o in finish(outputs, dest())] == [None, None]
    assert counted("email_value") == before + 1
    assert finish([Output("1", event, "+1 202-555-0146")], dest())[0].upload_tag is None
    assert finish([Output("1", event, "store-7 2026-03")], dest())[0].upload_tag == "store-7 2026-03"


def test_finish_keeps_outputs_that_need_nothing_dropped() -> None:
    outputs = [Output("1", {"event_name": "Lead", "action_source": "email", "user_data": {}})]
    assert finish(outputs, dest())[0] is outputs[0]


def test_finish_applies_the_destinations_allow_list() -> None:
    event = {"event_name": "Lead", "action_source": "email", "custom_data": {"mobile": True}}
    assert finish([Output("1", event)], dest())[0].event["custom_data"] == {}
    allowed = DestinationSettings.model_validate({"name": "m", "custom_data_allow": ["mobile"]})
    assert allowed.allowed_custom_properties == frozenset({"mobile"})
    assert finish([Output("1", event)], allowed)[0].event["custom_data"] == {"mobile": True}


def test_each_destination_keeps_its_own_screen() -> None:
    """screen_for remembers a destination's Screen by identity, bounded, never another's."""
    first, other = dest(default_country="gb"), dest(date_order="dmy")
    assert screen_for(first) is screen_for(first)
    assert (screen_for(first).default_country, screen_for(other).date_order) == ("GB", "dmy")
    many = [dest(default_country="fr") for _ in range(screening.MAX_SCREENS + 10)]
    assert all(screen_for(d).default_country == "FR" for d in many)
    assert len(screening._SCREENS) <= screening.MAX_SCREENS
    assert screen_for(first).default_country == "GB"


@pytest.mark.parametrize("currency", ["XYZ", "usd", "EURO", "", 840])
def test_finish_rejects_a_currency_not_in_iso_4217(currency: Any) -> None:
    event = {"event_name": "Lead", "action_source": "email", "custom_data": {"currency": currency}}
    with pytest.raises(Rejected, match="invalid_currency"):
        finish([Output("1", event)], dest())


def test_finish_screens_before_checking_website_requirements() -> None:
    """A website event whose only URL held an e-mail address cannot be sent without it."""
    event = {
        "event_name": "Lead",
        "action_source": "website",
        "user_data": {"client_user_agent": "Mozilla/5.0"},
        "event_source_url": "https://shop.example/u/pat@example.com",
    }
    with pytest.raises(Rejected, match="missing_required_field") as info:
        finish([Output("1", event)], dest())
    assert info.value.message == "action_source website needs event_source_url"
    assert "pat" not in info.value.message


# --- properties -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@PROPERTY
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_screening_never_raises_and_reports_known_reasons(custom: dict[str, Any]) -> None:
    event = {"event_name": "X", "custom_data": custom}
    out, drops = screen_event(event, SCREEN)
    assert all(reason in REASONS for _, reason in drops)
    assert (out is event) == (not drops)
    again, more = screen_event(out, SCREEN)  # screening its own output finds nothing more
    assert again == out
    assert more == ()


@PROPERTY
@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_- $", max_size=20),
    st.sampled_from(["email", "phone", "first_name", "birthdate", "zip", "ip", "address"]),
    st.sampled_from(["{p}{n}", "{n}{p}", "{p}_{n}", "{n}_{p}", "{P}{N}"]),
)
def test_a_customer_word_anywhere_in_a_name_is_caught(prefix: str, word: str, shape: str) -> None:
    """e.g. `billingEmail`, `email_2`, `shipping_zip`, `ip_v4`, whatever surrounds the word."""
    words = {"first_name": "FirstName", "birthdate": "BirthDate"}
    name = shape.format(
        p=prefix,
        n=word,
        P=prefix.capitalize() if prefix[:1].islower() else prefix,
        N=words.get(word, word.capitalize()),
    )
    if word in ("zip", "ip") and shape in ("{p}{n}", "{n}{p}"):
        return  # short words are words only when separated (tip, zipper)
    assert is_customer_name(name), name


def test_clear_caches_forgets_every_value_a_new_customer_would_miss() -> None:
    """What `bench/transform.py --customers distinct` relies on: after clear_caches, a record's
    values (its order id too) are judged, normalised and hashed again."""
    from consumer.core.capi import normalize

    kept({"order_id": "clear-probe +1 650 555 1212", "note": "clear probe"})
    normalize.build_user_data({"em": ["clear.probe@example.com"]}, max_year=2026)
    assert walk_cache_sizes()[1] > 0
    assert custom._has_phone.cache_info().currsize > 0
    custom.clear_caches()
    assert walk_cache_sizes()[1] == 0
    assert custom._has_phone.cache_info().currsize == 0
    assert (len(normalize._VALUES), len(normalize._CUSTOMERS)) == (0, 0)
    names = len(custom._NAMES)
    kept({"note": "clear probe"})  # property names do not depend on the customer: kept
    assert len(custom._NAMES) == names


def test_a_greek_external_id_is_found_as_cpython_lower_cases_it() -> None:
    """Σ at a word end lower-cases to ς (CPython's rule, compiled too): the screen's form of
    the text must be the hash the event's user_data holds."""
    greek = "ΟΔΥΣΣΕΥΣ-7"
    user_data = {"external_id": [sha(greek.lower())]}
    assert "ς" in greek.lower()
    assert kept({"ref": greek, "other": "ΑΛΛΟΣ-8"}, user_data=user_data) == {"other": "ΑΛΛΟΣ-8"}
