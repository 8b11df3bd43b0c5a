"""normalize.py's fast paths against what they skip: _keep's (ASCII, letters only) against the
per-character rule, _customer's (one string in a list) against _values, _birthdate's (YYYY-MM-DD)
against the reading of any date, _hashed_user_data's (one value a key, kinds decided once, plain
keys read in place) against the loop it replaced."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.capi import normalize as nz
from consumer.core.capi.normalize import HASHED_KEYS, _birthdate, _birthdate_read, _customer, _keep, _values


def reference(value: str, categories: str) -> str:
    """The rule itself: NFC, keep the characters of the categories, NFC again."""
    text = unicodedata.normalize("NFC", value.lower())
    kept = "".join(c for c in text if unicodedata.category(c)[0] in categories)
    return unicodedata.normalize("NFC", kept)


# letters, marks, digits and punctuation of several scripts, Hangul jamo (NFC composes them
# once the space between them is gone) and the characters whose lower case is special
alphabet = st.sampled_from(
    list(
        "aZéÉøß '-.,0९٣①ⅣÅİKΣςДжא\u0131\u03c3漢字ー\u0301\u0308\u0327\u00a0\u200b\u1100\u1161\u11a8가"
        "\U0001d400\U0001f600"
    )
)
texts = st.one_of(st.text(alphabet, max_size=16), st.text(max_size=16))


@settings(max_examples=2000, deadline=None)
@given(texts, st.sampled_from(("LM", "LMN")))
def test_keep_is_the_rule(value: str, categories: str) -> None:
    assert _keep(value, categories) == reference(value, categories)


@pytest.mark.parametrize(
    ("value", "categories", "expected"),
    [("Jean-Luc O'Brien", "LM", "jeanlucobrien"), ("Zoë Marélo", "LM", "zoëmarélo"),
     ("\u1100 \u1161", "LM", "가"), ("NY 10", "LMN", "ny10"), ("NY 10", "LM", "ny"),
     ("Ze\u0301 phyr", "LM", "zéphyr"), ("Łódź-2", "LM", "łódź"),
     ("ΟΔΥΣΣΕΥΣ", "LM", "οδυσσευς"), ("Σ", "LM", "\u03c3")],  # final sigma, compiled too
)  # fmt: skip
def test_keep_examples(value: str, categories: str, expected: str) -> None:
    assert _keep(value, categories) == expected


class Text(str):
    """A str subclass: not the usual shape, so _customer leaves it to _values."""


raw_values = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=4),
    st.builds(Text, st.text(max_size=4)),
    st.lists(st.one_of(st.none(), st.integers(), st.text(" a\t", max_size=4)), max_size=3),
    st.tuples(st.text(" b", max_size=3)),
)


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.sampled_from((*HASHED_KEYS, "client_ip_address")), raw_values))
def test_customer_is_values_of_every_hashed_key(raw: dict[str, Any]) -> None:
    assert _customer(raw)[0] == tuple(tuple(_values(raw, key)) for key in HASHED_KEYS)


texts = st.text("a\0 ", max_size=3)


@settings(max_examples=2000, deadline=None)
@given(
    st.dictionaries(st.sampled_from(HASHED_KEYS[:3]), st.lists(texts, max_size=2)),
    st.dictionaries(st.sampled_from(HASHED_KEYS[:3]), st.lists(texts, max_size=2)),
)
def test_customer_cache_keys_are_one_customers_alone(first: dict[str, Any], second: dict[str, Any]) -> None:
    """Two customers share a cache key only when their values are the same (NULs in values, and
    keys with two values, take no key)."""
    (values, key), (other_values, other_key) = _customer(first), _customer(second)
    if key is not None and key == other_key:
        assert values == other_values
    if key is not None:
        assert all(len(found) <= 1 and "\0" not in "".join(found) for found in values)


# digits of other scripts (fullwidth, Arabic-Indic) are not dates' digits
OTHER_DIGITS = ("\uff11\uff19\uff19\uff10", "199a", "19 0", "\u0660\u0665", "5-", " 5", "1T", "+1")
iso_like = st.builds(
    lambda y, m, d, sep: f"{y}{sep}{m}{sep}{d}",
    st.text("0123456789", min_size=4, max_size=4) | st.sampled_from(OTHER_DIGITS),
    st.text("0123456789", min_size=2, max_size=2) | st.sampled_from(OTHER_DIGITS),
    st.text("0123456789", min_size=2, max_size=2) | st.sampled_from(OTHER_DIGITS),
    st.sampled_from(["-", "-", "/", "."]),
)


@settings(max_examples=2000, deadline=None)
@given(
    iso_like | st.text(max_size=12),
    st.sampled_from([1899, 1990, 2026, 9999]),
    st.sampled_from(["mdy", "dmy"]),
)
def test_birthdate_fast_path_reads_as_the_general_one(value: str, max_year: int, date_order: str) -> None:
    assert _birthdate(value, max_year, date_order) == _birthdate_read(value.strip(), max_year, date_order)


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def hashed_user_data_reference(
    customer: tuple[tuple[str, ...], ...],
    hashing: bool,
    hash_external_id: bool,
    default_country: str,
    max_year: int,
    date_order: str,
    external_id: str,
) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], tuple[str, ...]]:
    """_hashed_user_data as it was before its fast path and its caches: the rule, key by key."""
    raw = dict(zip(HASHED_KEYS, customer, strict=True))
    region = default_country.strip().upper()
    if hashing:
        for value in raw["country"]:
            if not _HEX64.fullmatch(value) and (code := nz._country(value)):
                region = code.upper()
                break
    us_region = "US" if region == "US" else ""
    hashed: list[tuple[str, tuple[str, ...]]] = []
    dropped: list[str] = []
    for key in HASHED_KEYS:
        hash_it = hash_external_id or key != "external_id"
        key_region = region if key == "ph" else us_region if key in ("st", "zp") else ""
        key_year = max_year if key == "db" else 0
        option = date_order if key == "db" else external_id if key == "external_id" else ""
        out: list[str] = []
        for value in raw[key]:
            result: str | None
            if len(value) == 64 and _HEX64.fullmatch(value):
                result = value.lower()
            elif hashing or not hash_it:
                result = nz._hashed(key, value, key_region, key_year, option, hash_it)
            else:
                result = None
            if result is None:
                if key not in dropped:
                    dropped.append(key)
            elif result not in out:
                out.append(result)
        if out:
            hashed.append((key, tuple(out)))
    return tuple(hashed), tuple(dropped)


HEX = "0123456789abcdefABCDEF"
customer_values = st.one_of(
    st.sampled_from(
        ["a@b.co", "A@B.CO", "x@y", "+1 650 555 1212", "6505551212", "07700 900123", "Zoë",
         "ΟΔΥΣΣΕΥΣ", "Jean-Luc", "M", "female", "x", "1990-02-03", "03/04/1990", "CA",
         "California", "ON", "94105-1234", "SW1A 1AA", "US", "France", "Deutschland", "gb",
         " Cust 1 ", "!!"]
    ),
    st.text(HEX, min_size=64, max_size=64),
    st.text(max_size=8).map(str.strip).filter(bool),
)  # fmt: skip
customers = st.tuples(*[st.lists(customer_values, max_size=3).map(tuple) for _ in HASHED_KEYS])


@settings(max_examples=1500, deadline=None)
@given(
    customers,
    st.booleans(),
    st.booleans(),
    st.sampled_from(["US", " gb ", "FR"]),
    st.sampled_from([1990, 2026]),
    st.sampled_from(["mdy", "dmy"]),
    st.sampled_from(["lowercase", "exact"]),
)
def test_hashed_user_data_is_the_key_by_key_rule(
    customer: tuple[tuple[str, ...], ...],
    hashing: bool,
    hash_external_id: bool,
    default_country: str,
    max_year: int,
    date_order: str,
    external_id: str,
) -> None:
    settings_ = (hashing, hash_external_id, default_country, max_year, date_order, external_id)
    expected = hashed_user_data_reference(customer, *settings_)
    flat, dropped = nz._hashed_user_data(customer, nz._settings(*settings_))
    keys = [key for key in flat[::2] if isinstance(key, str)]
    assert len(keys) * 2 == len(flat)
    pairs = tuple(
        (key, (result,) if isinstance(result, str) else result)
        for key, result in zip(keys, flat[1::2], strict=True)
    )
    assert (pairs, dropped) == expected
    # and through build_user_data, its caches (the second call reads them)
    raw = dict(zip(HASHED_KEYS, map(list, customer), strict=True))
    options = {"hashing": hashing, "hash_external_id": hash_external_id, "default_country": default_country}
    options |= {"max_year": max_year, "date_order": date_order, "external_id": external_id}
    for _ in range(2):
        user_data, dropped = nz.build_user_data(raw, **options)  # type: ignore[arg-type]
        assert (tuple((key, tuple(user_data[key])) for key, _ in pairs), dropped) == expected
        assert set(user_data) == {key for key, _ in pairs}


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.sampled_from((*HASHED_KEYS, *nz.PLAIN_KEYS)), raw_values))
def test_build_user_data_reads_plain_keys_as_values_does(raw: dict[str, Any]) -> None:
    user_data, _ = nz.build_user_data(raw, max_year=2026)
    plain = {key: user_data[key] for key in nz.PLAIN_KEYS if key in user_data}
    assert plain == {key: found[0] for key in nz.PLAIN_KEYS if (found := _values(raw, key))}


_ZIP_STRIP = re.compile(r"[\s\-\u2010-\u2015\u2212]+")
_US_ZIP = re.compile(r"([0-9]{5})(?:[0-9]{4})?")


def zip_reference(value: str, region: str) -> str | None:
    """_zip as two regexes: strip spaces and dashes, then a US ZIP or ZIP+4 is its five digits."""
    text = _ZIP_STRIP.sub("", value.lower())
    if region == "US" and (m := _US_ZIP.fullmatch(text)):
        return m.group(1)
    return text or None


zip_alphabet = st.sampled_from(list("0123456789 -\u2011\u2212\u00a0\t\x1caAsW٣९①"))


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.text(zip_alphabet, max_size=12), st.text(max_size=12)), st.sampled_from(("US", "GB")))
def test_zip_is_the_two_regexes(value: str, region: str) -> None:
    assert nz._zip(value, region) == zip_reference(value, region)
