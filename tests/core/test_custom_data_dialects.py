"""For every dialect: no e-mail address or phone number put anywhere in a record's custom
properties, products or URLs reaches custom_data, contents or event_source_url (Meta's rule:
customer data only in user_data, hashed)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus, urlencode

import orjson
import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.config.settings import DestinationSettings
from consumer.core.capi.event import Output, RecordContext
from consumer.core.dialects import get_dialect

NOW = 1_772_452_800  # 2026-03-02T12:00:00Z
EVENT_MS = (NOW - 3600) * 1000
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEST = DestinationSettings(name="main", default_event_sets=["1"])
SITE = "https://shop.example/p"
FORMATS = (
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.RFC3966,
)
REGIONS = ("US", "GB", "DE", "FR", "IT", "ES", "NL", "IN", "BR", "JP", "AU", "MX")
KINDS = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)


@st.composite
def phones(draw: st.DrawFn) -> str:
    """A phone number as people write it: any country with its code, a US one nationally too
    (the destination's default_country is US)."""
    region = draw(st.sampled_from(REGIONS))
    number = phonenumbers.example_number_for_type(region, draw(st.sampled_from(KINDS)))
    assert number is not None
    formats = (*FORMATS, phonenumbers.PhoneNumberFormat.NATIONAL) if region == "US" else FORMATS
    text = str(phonenumbers.format_number(number, draw(st.sampled_from(formats))))
    return text.removeprefix("tel:") if draw(st.booleans()) else text


secrets = st.one_of(st.emails(), phones())
names = st.one_of(
    st.sampled_from(["note", "ref", "email", "contact", "x", "customer", "phone", "brand", "data", "items"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10),
)


@st.composite
def planted(draw: st.DrawFn) -> tuple[str, Any, str]:
    """(name, value, secret): the secret alone, inside text, or nested in objects and lists."""
    secret = draw(secrets)
    value: Any = draw(st.sampled_from(["{}", "contact: {} (home)", "{}, or later"])).format(secret)
    for _ in range(draw(st.integers(0, 3))):
        value = draw(st.sampled_from([[value], {draw(names): value}, [1, {"k": value}]]))
    return draw(names), value, secret


def url_with(name: str, secret: str) -> str:
    return f"{SITE}?{urlencode({'utm_source': 'mail', name: secret})}"


def segment(name: str, value: Any, secret: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "messageId": "m-1",
        "userId": "u-1",
        "timestamp": "2026-03-02T11:00:00Z",
        "context": {"page": {"url": url_with(name, secret)}},
        "properties": {
            "revenue": 10,
            name: value,
            "nested": {name: value},
            "products": [{"product_id": "P1", "brand": secret, name: value}],
        },
    }


def mparticle(name: str, value: Any, secret: str) -> dict[str, Any]:
    return {
        "user_identities": {"email": "a@b.co"},
        "events": [
            {
                "event_type": "commerce_event",
                "data": {
                    "timestamp_unixtime_ms": EVENT_MS,
                    "source_message_id": "m-1",
                    "custom_attributes": {name: value, "page": url_with(name, secret)},
                    "product_action": {
                        "action": "purchase",
                        "total_amount": 10,
                        "transaction_id": secret,
                        "products": [{"id": "P1", "brand": secret, "category": secret}],
                    },
                },
            }
        ],
    }


def commandersact(name: str, value: Any, secret: str) -> dict[str, Any]:
    return {
        "event_name": "purchase",
        "amount": 10,
        "currency": "EUR",
        "id": secret,
        "name": secret,
        "status": secret,
        "url": url_with(name, secret),
        "user": {"email": "a@b.co"},
        "context": {"event_timestamp": EVENT_MS},
        "items": [{"id": "P1", "quantity": 1, "price": 10, "product": {"name": secret}}],
        "integrations": {
            "facebook": {
                "custom_data": {
                    name: value,
                    "contents": [{"id": "P1", "quantity": 1, "brand": secret, name: value}],
                }
            }
        },
    }


def amperity(name: str, value: Any, secret: str) -> dict[str, Any]:
    return {
        "order_id": "O-1",
        "quantity": 1,
        "price": 10,
        "currency": "USD",
        "email": "a@b.co",
        "timestamp": NOW - 3600,
        "event_source_url": url_with(name, secret),
        f"col_{name}": value,
        "custom": {name: value},
    }


RECORDS = {"segment": segment, "mparticle": mparticle, "commandersact": commandersact, "amperity": amperity}


def transform(dialect: str, payload: dict[str, Any]) -> list[Output]:
    return get_dialect(dialect).transform(payload, RecordContext(EVENT_MS, payload), DEST, NOW)


def sent_outside_user_data(outputs: list[Output]) -> str:
    """custom_data (with contents) and event_source_url of every output, URL-decoded."""
    assert outputs
    texts = []
    for out in outputs:
        texts.append(orjson.dumps(out.event.get("custom_data", {})).decode())
        texts.append(unquote_plus(str(out.event.get("event_source_url", ""))))
    return "\n".join(texts)


@pytest.mark.parametrize("dialect", RECORDS)
@PROPERTY
@given(planted())
def test_no_email_or_phone_number_leaves_outside_user_data(dialect: str, plant: tuple[str, Any, str]) -> None:
    name, value, secret = plant
    sent = sent_outside_user_data(transform(dialect, RECORDS[dialect](name, value, secret)))
    assert secret not in sent
    assert secret.lower() not in sent.lower()


@pytest.mark.parametrize("dialect", RECORDS)
def test_the_records_here_are_sent_with_their_other_properties(dialect: str) -> None:
    """The records above are valid: what the property test checks is what would be sent."""
    outputs = transform(dialect, RECORDS[dialect]("note", "kept", "also kept"))
    sent = sent_outside_user_data(outputs)
    assert "kept" in sent
    assert "utm_source=mail" in sent
