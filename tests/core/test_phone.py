"""Tests for consumer.core.capi.phone: the fast path gives libphonenumber's result, or defers to it.

`phone._library` is the reference (libphonenumber's parse and validation of the candidate
readings, as normalize.py did before the fast path); `phone._fast` must agree with it whenever it
answers, and must answer on the common shapes.
"""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.core.capi import phone
from consumer.core.capi.phone import phone_e164

PROPERTY = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
FORMATS = (
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
)
SEPARATORS = st.sampled_from(("", " ", "  ", "-", ".", " - ", "("))


def examples() -> list[tuple[str, phonenumbers.PhoneNumber]]:
    """(region, number) for every region's example number of every type."""
    found = []
    for region in REGIONS:
        for kind in phonenumbers.PhoneNumberType.values():
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.append((region, number))
    return found


EXAMPLES = examples()


def test_examples_cover_enough_regions() -> None:
    assert len({region for region, _ in EXAMPLES}) >= 200


def idd(region: str) -> str:
    md = phonenumbers.PhoneMetadata.metadata_for_region(region)
    assert md is not None
    prefix = md.preferred_international_prefix or md.international_prefix or "00"
    return str(prefix) if str(prefix).isdigit() else "00"


@st.composite
def written(draw: st.DrawFn) -> tuple[str, str]:
    """(text, region of the event): an example number written in one of the usual ways."""
    region, number = draw(st.sampled_from(EXAMPLES))
    nsn = phonenumbers.national_significant_number(number)
    code = str(number.country_code)
    shape = draw(
        st.sampled_from(
            ("e164", "international", "national", "00", "idd", "trunk", "digits", "code_digits", "nsn")
        )
    )
    if shape in ("e164", "international", "national"):
        text = phonenumbers.format_number(number, FORMATS[("e164", "international", "national").index(shape)])
    elif shape == "00":
        text = "00" + code + " " + nsn
    elif shape == "idd":  # dialled from another region, with that region's international prefix
        region = draw(st.sampled_from(REGIONS))
        text = idd(region) + " " + code + " " + nsn
    elif shape == "trunk":
        text = "+" + code + " (0)" + nsn
    elif shape == "digits":
        text = "0" + nsn
    elif shape == "code_digits":
        text = code + nsn
    else:
        text = nsn
    # reformat: every space or dash may become other separators, and some go in between digits
    out = []
    for char in text:
        if char in " -":
            out.append(draw(SEPARATORS).replace("(", "()"))
        else:
            out.append(char)
            if char.isdigit() and draw(st.integers(0, 9)) == 0:
                out.append(draw(SEPARATORS).replace("(", ")"))
    text = "".join(out)
    if shape != "idd" and draw(st.booleans()):  # read in its own region, or in another one
        region = draw(st.sampled_from(REGIONS))
    return draw(st.sampled_from(("", " ", "\t"))) + text, region


@PROPERTY
@given(written())
def test_fast_path_agrees_with_libphonenumber(case: tuple[str, str]) -> None:
    text, region = case
    fast = phone._fast(text, region)
    assert fast == phone._UNSURE or fast == phone._library(text, region)
    assert phone_e164(text, region) == phone._library(text, region)


@PROPERTY
@given(st.from_regex(r"(\+|00)?[0-9 ()\-.]{0,24}", fullmatch=True), st.sampled_from(REGIONS))
def test_fast_path_agrees_on_any_digits(text: str, region: str) -> None:
    fast = phone._fast(text, region)
    assert fast == phone._UNSURE or fast == phone._library(text, region)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=30), st.sampled_from((*REGIONS[:20], "US", "GB", "ZZ", "", "usa")))
def test_any_text_gives_libphonenumbers_result(text: str, region: str) -> None:
    assert phone_e164(text, region) == phone._library(text, region)


@pytest.mark.parametrize("fmt", FORMATS)
def test_fast_path_answers_for_every_example_in_its_own_region(fmt: int) -> None:
    unsure = [
        (region, phonenumbers.format_number(number, fmt))
        for region, number in EXAMPLES
        if phone._fast(phonenumbers.format_number(number, fmt), region) == phone._UNSURE
    ]
    assert unsure == []


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("(202) 555-0146", "US", "12025550146"),
        ("+1-202-555-0146", "US", "12025550146"),
        ("12025550146", "US", "12025550146"),
        ("202.555.0146", "US", "12025550146"),
        ("+44 20 7946 0958", "US", "442079460958"),
        ("+44 (0)20 7946 0958", "US", "442079460958"),  # the trunk 0 in parentheses
        ("0044 20 7946 0958", "US", "442079460958"),
        ("011 44 20 7946 0958", "US", "442079460958"),
        ("442079460958", "US", "442079460958"),
        ("020 7946 0958", "GB", "442079460958"),
        ("030 123456", "DE", "4930123456"),
        ("+39 06 1234 5678", "US", "390612345678"),  # Italian leading zero kept
        ("(650) 555-1212", "CA", "16505551212"),  # a NANPA number read from Canada
        ("555-1212", "US", None),
    ],
)
def test_golden_cases_take_the_fast_path(value: str, region: str, expected: str | None) -> None:
    assert phone._fast(value, region) == expected
    assert phone._library(value, region) == expected


@pytest.mark.parametrize(
    ("value", "region"),
    [
        ("+1 650 555 1212 ext. 7", "US"),  # letters: extensions, vanity numbers
        ("1-800-FLOWERS", "US"),
        ("+800 1234 5678", "US"),  # a non-geographic country code
        ("+0 20 7946 0958", "GB"),  # no country code starts with 0: the library retries
        ("0000000000", "US"),  # so does its last reading, "+0000000000"
        ("+999 123 456", "US"),  # and so after an unknown country code
        ("(650) 555-1212", "ZZ"),  # no region metadata
        ("\uff0b44 20 7946 0958", "US"),  # full-width plus
        ("\u0660\u0662\u0660 \u0667\u0669\u0664\u0666 \u0660\u0669\u0665\u0668", "GB"),  # Arabic-Indic digits
        ("+44 20 7946 0958 / +1 650 555 1212", "US"),
        ("tel:+44-20-7946-0958", "US"),
        ("1" * 41, "US"),
        ("12", "US"),
    ],
)
def test_other_shapes_go_to_libphonenumber(value: str, region: str) -> None:
    assert phone._fast(value, region) == phone._UNSURE
    assert phone_e164(value, region) == phone._library(value, region)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "+",
        "00",
        "()",
        "+-",
        "(((((((((((",
        "0" * 300,
        "+" + "9" * 300,
        "1" * 10_000,
        "\x00",
        "+1\n650 555 1212",
    ],
)
def test_hostile_values_never_raise(value: str) -> None:
    assert phone_e164(value, "US") == phone._library(value, "US")
