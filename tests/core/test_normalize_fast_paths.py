"""normalize.py's fast paths against what they skip: _keep's (ASCII, letters only) against the
per-character rule, _customer's (one string in a list) against _values, _birthdate's (YYYY-MM-DD)
against the reading of any date."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    assert _customer(raw) == tuple(tuple(_values(raw, key)) for key in HASHED_KEYS)


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
