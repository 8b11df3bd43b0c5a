"""Tests for consumer.core.capi.normalize (docs/dialects.md#normalisation, #hashing).

The official SDK (facebook-business) serves as an oracle where fboc's rule agrees with it; where fboc
follows Meta's documentation instead, a test shows the difference explicitly.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import phonenumbers
import pycountry
import pytest
from facebook_business.adobjects.serverside.normalize import Normalize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.core.capi import normalize as nz
from consumer.core.capi.normalize import HASHED_KEYS, PLAIN_KEYS, build_user_data, normalize_field
from consumer.core.capi.recent import MAX_CACHED_LENGTH

YEAR = 2026
HEX64 = re.compile(r"[0-9a-f]{64}")
REGIONS = ("US", "GB", "DE", "FR", "IT", "IN", "BR", "JP", "AU", "CA", "MX", "ZZ")
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def norm(key: str, value: str, region: str = "US", **options: str) -> str | None:
    return normalize_field(key, value, region=region, max_year=YEAR, **options)


def one(key: str, value: str, **options: Any) -> list[str] | str | None:
    """What build_user_data sends for a single raw value of ``key`` (None: key left out)."""
    user_data, _ = build_user_data({key: [value]}, max_year=YEAR, **options)
    result: list[str] | str | None = user_data.get(key)
    return result


def sdk(key: str, value: str) -> str:
    result = Normalize.normalize_field(key, value)
    assert isinstance(result, str)
    return result


# --- docs/dialects.md#normalisation examples, each exactly ------------------------------------

DOC_EXAMPLES = [
    ("em", " Alex@Example.com ", "alex@example.com"),
    ("ph", "+1-202-555-0146", "12025550146"),
    ("ph", "(650) 555-1212", "16505551212"),
    ("ph", "+44 20 7946 0958", "442079460958"),
    ("fn", "O'Brien", "obrien"),
    ("ln", "O'Brien", "obrien"),
    ("fn", "Valéry", "valéry"),
    ("ge", "Male", "m"),
    ("db", "1990-05-17", "19900517"),
    ("ct", "New Orleans", "neworleans"),
    ("st", "Louisiana", "la"),
    ("st", "CA", "ca"),
    ("zp", "90009-1234", "90009"),
    ("zp", "94025 1234", "94025"),
    ("zp", "M1 1AE", "m11ae"),
    ("country", "USA", "us"),
    ("country", "United States", "us"),
    ("country", "Deutschland", "de"),
    ("db", "17.05.1990", "19900517"),
    ("db", "02/03/1990", "19900203"),  # mdy, the default date_order
    ("external_id", " Cust-42 ", "cust-42"),
]


@pytest.mark.parametrize(("key", "value", "expected"), DOC_EXAMPLES)
def test_spec_example_normalised(key: str, value: str, expected: str) -> None:
    assert norm(key, value) == expected


@pytest.mark.parametrize(("key", "value", "expected"), DOC_EXAMPLES)
def test_spec_example_hashed(key: str, value: str, expected: str) -> None:
    assert one(key, value) == [sha(expected)]


# --- rules in detail ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["", "   ", "alex", "alex@", "@example.com", "alex@example", "a b@example.com",
              "alex@@example.com", "alex@example..com", "alex@.example.com", "alex@example.com."],
)  # fmt: skip
def test_email_must_look_like_local_at_domain_tld(value: str) -> None:
    assert norm("em", value) is None


def test_email_unicode_whitespace_trimmed() -> None:
    assert norm("em", "\u00a0\tAlex@Example.CO.uk\n") == "alex@example.co.uk"


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("020 7946 0958", "GB", "442079460958"),  # national number, region's country code added
        ("0044 20 7946 0958", "US", "442079460958"),  # leading 00 is an international prefix
        ("011 44 20 7946 0958", "US", "442079460958"),  # the region's own international prefix
        ("442079460958", "US", "442079460958"),  # digits that already hold a foreign country code
        ("12025550146", "US", "12025550146"),  # already in the output form
        ("+39 06 1234 5678", "US", "390612345678"),  # Italian leading zero kept
        ("030 123456", "DE", "4930123456"),
        ("+1 650 555 1212 ext. 7", "US", "16505551212"),
    ],
)
def test_phone(value: str, region: str, expected: str) -> None:
    assert norm("ph", value, region) == expected


@pytest.mark.parametrize("value", ["", "abc", "12", "555-1212", "+999 123 456", "0000000000"])
def test_phone_not_a_valid_number_is_dropped(value: str) -> None:
    assert norm("ph", value) is None


def test_phone_unknown_region_needs_country_code() -> None:
    assert norm("ph", "(650) 555-1212", "ZZ") is None
    assert norm("ph", "+1 650 555 1212", "ZZ") == "16505551212"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("  JEAN-luc ", "jeanluc"), ("Mary Ann", "maryann"), ("D'Angelo-Smith Jr.", "dangelosmithjr"),
     ("Zoë", "zoë"), ("Ze\u0301phyr", "zéphyr"), ("José", "josé"), ("Łukasz", "łukasz"),
     ("Müller", "müller"), ("ΑΘΗΝΆ", "αθηνά"), ("R2D2", "rd"), ("'-. ", None)],
)  # fmt: skip
def test_names(value: str, expected: str | None) -> None:
    assert norm("fn", value) == expected
    assert norm("ln", value) == expected


def test_names_are_nfc() -> None:
    decomposed, composed = "Vale\u0301ry", "val\u00e9ry"
    assert norm("fn", decomposed) == composed
    # punctuation between a letter and its combining accent: the result is still composed
    assert norm("fn", "e.\u0301") == "\u00e9"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("m", "m"), ("M", "m"), ("male", "m"), ("MALE", "m"), (" Man ", "m"), ("f", "f"),
     ("Female", "f"), ("WOMAN", "f"), ("x", None), ("unknown", None), ("", None), ("mf", None)],
)  # fmt: skip
def test_gender(value: str, expected: str | None) -> None:
    assert norm("ge", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("19900517", "19900517"), ("1990-05-17", "19900517"), ("05/17/1990", "19900517"),
     ("5/7/1990", "19900507"), ("1990-05-17T10:30:00", "19900517"),
     ("1990-05-17T23:30:00-05:00", "19900517"),  # the date as written, no time-zone shift
     ("1990-05-17T10:30:00Z", "19900517"), ("1990-05-17 10:30:00.123", "19900517"),
     (" 2000-02-29 ", "20000229"), ("1900-01-01", "19000101"), (f"{YEAR}-12-31", f"{YEAR}1231"),
     ("1899-12-31", None), (f"{YEAR + 1}-01-01", None), ("1990-02-30", None), ("1990-13-01", None),
     # day first: unambiguous when the day is over 12, with any one separator or none
     ("17/05/1990", "19900517"), ("16/02/1997", "19970216"), ("17.05.1990", "19900517"),
     ("17-05-1990", "19900517"), ("17 05 1990", "19900517"), ("17051990", "19900517"),
     ("5.17.1990", "19900517"), ("05171990", "19900517"),
     # year first is year-month-day, with any one separator or none
     ("1990/05/17", "19900517"), ("1990.5.7", "19900507"), ("1990 05 17", "19900517"),
     # ambiguous: month first (date_order mdy, the default)
     ("03/04/1990", "19900304"), ("03041990", "19900304"), ("3.4.1990", "19900304"),
     ("13/13/1990", None), ("17/05-1990", None), ("1990/05-17", None), ("32.01.1990", None),
     ("1990-05-17Tgarbage", None), ("May 17 1990", None), ("1990", None), ("17/05/90", None),
     ("1990517", None), ("17/05/1990/1", None), ("", None)],
)  # fmt: skip
def test_birthdate(value: str, expected: str | None) -> None:
    assert norm("db", value) == expected


@pytest.mark.parametrize(
    ("value", "mdy", "dmy"),
    [("03/04/1990", "19900304", "19900403"), ("03.04.1990", "19900304", "19900403"),
     ("03041990", "19900304", "19900403"), ("12-12-1990", "19901212", "19901212"),
     # unambiguous ones whatever the order
     ("16/02/1997", "19970216", "19970216"), ("02/16/1997", "19970216", "19970216"),
     ("1990-03-04", "19900304", "19900304"), ("19900304", "19900304", "19900304")],
)  # fmt: skip
def test_birthdate_date_order_decides_ambiguous_dates_only(value: str, mdy: str, dmy: str) -> None:
    assert norm("db", value, date_order="mdy") == mdy
    assert norm("db", value, date_order="dmy") == dmy
    assert one("db", value, date_order="dmy") == [sha(dmy)]


def test_birthdate_date_order_is_part_of_the_cache_key() -> None:
    raw = {"db": ["03/04/1991"], "em": ["order.probe@example.com"]}
    mdy, _ = build_user_data(raw, max_year=YEAR)
    dmy, _ = build_user_data(raw, max_year=YEAR, date_order="dmy")
    assert (mdy["db"], dmy["db"]) == ([sha("19910304")], [sha("19910403")])


def test_birthdate_upper_bound_is_max_year() -> None:
    assert normalize_field("db", "2010-01-01", region="US", max_year=2009) is None
    assert normalize_field("db", "2010-01-01", region="US", max_year=2010) == "20100101"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("San Francisco", "sanfrancisco"), ("St. Louis", "stlouis"), ("Winston-Salem", "winstonsalem"),
     ("Coeur d'Alene", "coeurdalene"), ("São Paulo", "sãopaulo"), ("Paris 75001", "paris"),
     ("12345", None)],
)  # fmt: skip
def test_city(value: str, expected: str | None) -> None:
    assert norm("ct", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("ca", "ca"), (" NY ", "ny"), ("new york", "ny"), ("NEW-YORK", "ny"), ("N.Y.", "ny"),
     ("District of Columbia", "dc"), ("Puerto Rico", "pr"), ("US-TX", "tx"),
     # not a US state: the generic rule (e.g. a Canadian province with default_country US)
     ("Ontario", "ontario"), ("", None)],
)  # fmt: skip
def test_state_us(value: str, expected: str | None) -> None:
    assert norm("st", value, "US") == expected


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [("Louisiana", "CA", "louisiana"),  # names are mapped in the US only
     ("Île-de-France", "FR", "îledefrance"), ("NSW", "AU", "nsw"), ("Baden-Württemberg", "DE",
     "badenwürttemberg"), ("Tokyo-to 13", "JP", "tokyoto13")],
)  # fmt: skip
def test_state_elsewhere(value: str, region: str, expected: str) -> None:
    assert norm("st", value, region) == expected


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [("94025", "US", "94025"), ("900091234", "US", "90009"), (" 90009 - 1234 ", "US", "90009"),
     ("SW1A 1AA", "US", "sw1a1aa"), ("SW1A 1AA", "GB", "sw1a1aa"),
     ("90009-1234", "GB", "900091234"),  # first 5 digits in the US only
     ("K1A 0B1", "CA", "k1a0b1"), ("10115", "DE", "10115"), (" - ", "US", None)],
)  # fmt: skip
def test_zip(value: str, region: str, expected: str | None) -> None:
    assert norm("zp", value, region) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("us", "us"), ("US", "us"), ("GBR", "gb"), ("United Kingdom", "gb"), ("germany", "de"),
     ("Côte d'Ivoire", "ci"), ("Cote d\u2019Ivoire", "ci"), ("United States of America", "us"),
     ("Bolivia", "bo"), ("XX", None), ("Atlantis", None), ("", None),
     # CLDR's names in other languages, any case and accents
     ("Deutschland", "de"), ("ALLEMAGNE", "de"), ("Alemania", "de"), ("Österreich", "at"),
     ("oesterreich", None), ("Espagne", "es"), ("España", "es"), ("Espana", "es"),
     ("Royaume-Uni", "gb"), ("Vereinigtes Königreich", "gb"), ("Nederland", "nl"),
     ("Schweiz", "ch"), ("Suisse", "ch"), ("Svizzera", "ch"), ("Polska", "pl"), ("Italia", "it"),
     ("Россия", "ru"), ("日本", "jp"), ("Ελλάδα", "gr"), ("Türkiye", "tr"), ("Brasil", "br"),
     ("Estados Unidos", "us"), ("Stati Uniti", "us"),
     # CLDR's code aliases, and fboc's alias list for the parts of the United Kingdom
     ("UK", "gb"), ("uk", "gb"), ("England", "gb"), ("Scotland", "gb"), ("Wales", "gb"),
     ("Northern Ireland", "gb"), ("Great Britain", "gb"), ("great-britain", "gb"),
     # codes win over names; regions and names meaning two countries are not countries
     ("DE", "de"), ("Europe", None), ("EU", None), ("Kongo", None), ("Amérique du Nord", None)],
)  # fmt: skip
def test_country(value: str, expected: str | None) -> None:
    assert norm("country", value) == expected


def test_country_name_in_any_language_sets_the_phone_region() -> None:
    """ "UK" used to drop the country and with it a national-format phone number."""
    for country in ("UK", "England", "Great Britain", "Royaume-Uni"):
        user_data, dropped = build_user_data({"ph": ["020 7946 0958"], "country": [country]}, max_year=YEAR)
        assert user_data == {"ph": [sha("442079460958")], "country": [sha("gb")]}, country
        assert dropped == ()


def test_country_table_holds_the_cldr_names_of_every_country() -> None:
    from babel import Locale

    codes = {str(c.alpha_2) for c in pycountry.countries}
    table = nz._countries()
    for locale in ("en", "de", "fr", "es", "pt", "ja", "ru", "ar", "hi", "sr_Latn"):
        for code, name in Locale.parse(locale).territories.items():
            if code in codes:
                assert table.get(nz._fold(name)) == code.lower(), (locale, code)


def test_external_id_lower_cased_without_whitespace_by_default() -> None:
    """As Meta's parameter builder does, so that the same id matches across channels."""
    assert norm("external_id", "  Cust-ABC 42 ") == "cust-abc42"
    assert norm("external_id", "\tCUST\u00a042\n") == "cust42"
    assert norm("external_id", "   ") is None
    assert one("external_id", "Cust-42") == one("external_id", "cust-42 ") == [sha("cust-42")]


def test_external_id_exact_only_trims() -> None:
    assert norm("external_id", "  Cust-ABC 42 ", external_id="exact") == "Cust-ABC 42"
    assert norm("external_id", "   ", external_id="exact") is None
    assert one("external_id", " Cust-42 ", external_id="exact") == [sha("Cust-42")]
    # the mode is part of the cache key
    assert one("external_id", " Cust-42 ") == [sha("cust-42")]


def test_unknown_key_raises_without_pii() -> None:
    with pytest.raises(ValueError, match="not a hashed user_data key") as info:
        normalize_field("alex@example.com", "alex@example.com", region="US", max_year=YEAR)
    assert "alex" not in str(info.value)
    with pytest.raises(ValueError, match="not a hashed user_data key"):
        normalize_field("fbc", "fb.1.2.3", region="US", max_year=YEAR)


# --- build_user_data ------------------------------------------------------------------------------


def test_build_user_data_full_event() -> None:
    raw = {
        "client_user_agent": [" Mozilla/5.0 "],
        "em": ["Alex@Example.com", " alex@example.com", "sam@example.com"],
        "ph": ["(650) 555-1212"],
        "country": ["United States"],
        "fbc": ["", "fb.1.1554763741205.AbCdEfGh"],
        "external_id": ["Cust-1"],
        "unknown_key": ["whatever"],
    }
    user_data, dropped = build_user_data(raw, max_year=YEAR)
    assert user_data == {
        "em": [sha("alex@example.com"), sha("sam@example.com")],  # de-duplicated, input order
        "ph": [sha("16505551212")],
        "country": [sha("us")],
        "external_id": [sha("cust-1")],
        "client_user_agent": "Mozilla/5.0",
        "fbc": "fb.1.1554763741205.AbCdEfGh",  # first non-empty value, never hashed
    }
    assert list(user_data) == ["em", "ph", "country", "external_id", "client_user_agent", "fbc"]
    assert dropped == ()


def test_empty_keys_left_out_and_empty_values_not_dropped() -> None:
    raw = {"em": [], "fn": ["", "  "], "fbp": [""], "client_ip_address": ["  "]}
    assert build_user_data(raw, max_year=YEAR) == ({}, ())


def test_dropped_names_keys_once_and_keeps_other_values() -> None:
    raw = {"em": ["nope", "also nope", "a@b.co"], "ge": ["x"], "db": ["1990-05-17"]}
    user_data, dropped = build_user_data(raw, max_year=YEAR)
    assert user_data == {"em": [sha("a@b.co")], "db": [sha("19900517")]}
    assert dropped == ("em", "ge")


def test_non_string_values_and_bare_strings_are_safe() -> None:
    raw: dict[str, Any] = {"em": [None, 42, b"a@b.co", "a@b.co"], "ph": None, "ct": "Paris",
                           "fn": 7, "fbp": [None, "fb.1.2.3"]}  # fmt: skip
    user_data, dropped = build_user_data(raw, max_year=YEAR)
    assert user_data == {"em": [sha("a@b.co")], "ct": [sha("paris")], "fbp": "fb.1.2.3"}
    assert dropped == ()


def test_phone_region_is_the_events_first_normalisable_country() -> None:
    raw = {"ph": ["020 7946 0958"], "country": ["Atlantis", "United Kingdom", "fr"]}
    assert build_user_data(raw, max_year=YEAR)[0]["ph"] == [sha("442079460958")]
    # without a country the destination's default_country decides
    assert build_user_data({"ph": ["020 7946 0958"]}, max_year=YEAR, default_country="GB")[0] == {
        "ph": [sha("442079460958")]
    }
    # ... and that is US by default, where this is no valid number
    assert build_user_data({"ph": ["020 7946 0958"]}, max_year=YEAR) == ({}, ("ph",))


def test_state_and_zip_follow_the_events_country() -> None:
    raw = {"st": ["Louisiana"], "zp": ["90009-1234"]}
    us, _ = build_user_data(raw, max_year=YEAR)
    assert us == {"st": [sha("la")], "zp": [sha("90009")]}
    ca, _ = build_user_data({**raw, "country": ["CA"]}, max_year=YEAR)
    assert ca == {"st": [sha("louisiana")], "zp": [sha("900091234")], "country": [sha("ca")]}
    gb, _ = build_user_data(raw, max_year=YEAR, default_country="gb")
    assert gb == {"st": [sha("louisiana")], "zp": [sha("900091234")]}


def test_max_year_reaches_birthdates() -> None:
    raw = {"db": ["2020-01-01"]}
    assert build_user_data(raw, max_year=2019) == ({}, ("db",))
    assert build_user_data(raw, max_year=2020) == ({"db": [sha("20200101")]}, ())


@pytest.mark.parametrize("key", HASHED_KEYS)
def test_already_hashed_passes_through_lower_cased(key: str) -> None:
    digest = sha("anything").upper()
    for options in ({}, {"hashing": False}, {"hash_external_id": False}):
        assert one(key, f" {digest} ", **options) == [digest.lower()]


def test_32_hex_digits_are_not_taken_as_hashed() -> None:
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    assert one("external_id", md5) == [sha(md5)]


def test_hashing_off_drops_plaintext() -> None:
    digest = sha("alex@example.com")
    raw = {"em": ["alex@example.com", digest], "fn": ["Alex"], "external_id": ["Cust-1"],
           "client_ip_address": ["10.0.0.1"]}  # fmt: skip
    user_data, dropped = build_user_data(raw, hashing=False, max_year=YEAR)
    assert user_data == {"em": [digest], "client_ip_address": "10.0.0.1"}
    assert dropped == ("em", "fn", "external_id")


def test_hash_external_id_off_sends_it_normalised() -> None:
    assert one("external_id", " Cust-1 ", hash_external_id=False) == ["cust-1"]
    assert one("external_id", " Cust-1 ", hash_external_id=False, external_id="exact") == ["Cust-1"]
    # external_id is then not a hashed key, so hashing=False does not drop it either
    assert one("external_id", " Cust-1 ", hash_external_id=False, hashing=False) == ["cust-1"]
    assert one("em", "a@b.co", hash_external_id=False) == [sha("a@b.co")]


def test_results_are_cached_and_the_caches_are_bounded() -> None:
    nz.clear_caches()
    raw = {"em": ["cache.probe@example.com"], "ph": ["+1 650 555 1212"]}
    first, _ = build_user_data(raw, max_year=YEAR)
    second, _ = build_user_data({**raw, "client_ip_address": ["10.0.0.1"]}, max_year=YEAR)
    assert second == {**first, "client_ip_address": "10.0.0.1"}
    # the same customer again: the customer cache answers, no value is hashed again
    assert (len(nz._CUSTOMERS), len(nz._VALUES)) == (1, 2)
    assert (nz._CUSTOMERS.half, nz._VALUES.half) == (16384 // 2, 65536 // 2)
    # another customer with the same email: the value cache answers for it (a planted answer
    # shows that it is read, not computed again)
    (email_key,) = [key for key in nz._VALUES.current if key.endswith("cache.probe@example.com")]
    nz._VALUES.set(email_key, "f" * 64)
    user_data, _ = build_user_data({"em": ["cache.probe@example.com"], "fn": ["Ann"]}, max_year=YEAR)
    assert user_data["em"] == ["f" * 64]
    assert (len(nz._CUSTOMERS), len(nz._VALUES)) == (2, 3)
    nz.clear_caches()


def test_values_too_long_to_cache_are_computed_each_time() -> None:
    nz.clear_caches()
    name = "A" * (MAX_CACHED_LENGTH + 1)  # too long for the value cache
    user_data, _ = build_user_data({"fn": [name]}, max_year=YEAR)
    assert user_data == {"fn": [sha(name.lower())]}
    assert (len(nz._CUSTOMERS), len(nz._VALUES)) == (1, 0)
    name = "B" * (nz.MAX_CUSTOMER_KEY + 1)  # and for the customer cache
    user_data, _ = build_user_data({"fn": [name]}, max_year=YEAR)
    assert user_data == {"fn": [sha(name.lower())]}
    assert (len(nz._CUSTOMERS), len(nz._VALUES)) == (1, 0)


def test_a_customer_with_two_values_of_a_key_is_not_cached_as_a_whole() -> None:
    nz.clear_caches()
    user_data, _ = build_user_data({"em": ["a@b.co", "c@d.co"]}, max_year=YEAR)
    assert user_data == {"em": [sha("a@b.co"), sha("c@d.co")]}
    assert (len(nz._CUSTOMERS), len(nz._VALUES)) == (0, 2)


def test_a_cached_customer_comes_back_as_fresh_lists() -> None:
    raw = {"em": ["fresh.lists@example.com"]}
    first, _ = build_user_data(raw, max_year=YEAR)
    first["em"].append("changed by a caller")
    second, _ = build_user_data(raw, max_year=YEAR)
    assert second == {"em": [hashlib.sha256(b"fresh.lists@example.com").hexdigest()]}


# --- properties -----------------------------------------------------------------------------------

texts = st.text(max_size=40)
phone_like = st.from_regex(r"\+?[0-9 ()\-.]{1,20}", fullmatch=True)
# letters, combining marks and punctuation: exercises NFC around removed characters
name_like = st.text(alphabet="aeEoOÅ\u0131İß.'- \u0301\u0308\u0327\u030a", max_size=12)
hex64 = st.text(alphabet="0123456789abcdefABCDEF", min_size=64, max_size=64)


@PROPERTY
@given(st.sampled_from(HASHED_KEYS), st.one_of(texts, phone_like, name_like), st.sampled_from(REGIONS))
def test_normalising_twice_changes_nothing(key: str, value: str, region: str) -> None:
    once = norm(key, value, region)
    if once is None:
        return
    assert once
    assert once == once.strip()
    if key == "ph" and not once.startswith(str(phonenumbers.country_code_for_region(region))):
        # A foreign number written without "+" is ambiguous in Meta's digits-only form; it is
        # stable in its own country (test_phone_normalising_twice_changes_nothing).
        return
    assert norm(key, once, region) == once


@PROPERTY
@given(st.sampled_from(("fn", "ln", "ct", "st")), name_like, st.sampled_from(("US", "FR")))
def test_normalising_names_twice_changes_nothing(key: str, value: str, region: str) -> None:
    once = norm(key, value, region)
    if once is not None:
        assert norm(key, once, region) == once


@PROPERTY
@given(st.sampled_from(("US", "GB", "DE", "FR", "IT", "IN", "BR", "JP", "AU", "MX")),
       st.sampled_from(list(phonenumbers.PhoneNumberType.values())), st.data())  # fmt: skip
def test_phone_normalising_twice_changes_nothing(region: str, kind: int, data: st.DataObject) -> None:
    number = phonenumbers.example_number_for_type(region, kind)
    if number is None:
        return
    fmt = phonenumbers.PhoneNumberFormat
    formats = [fmt.NATIONAL, fmt.E164, fmt.INTERNATIONAL, fmt.RFC3966]
    text = phonenumbers.format_number(number, data.draw(st.sampled_from(formats)))
    once = norm("ph", text, region)
    assert once == phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    assert norm("ph", once, region) == once


@PROPERTY
@given(st.sampled_from(HASHED_KEYS), hex64, st.booleans(), st.booleans())
def test_already_hashed_values_pass_through(key: str, digest: str, hashing: bool, ext: bool) -> None:
    assert one(key, digest, hashing=hashing, hash_external_id=ext) == [digest.lower()]


raw_user_data = st.dictionaries(st.sampled_from(HASHED_KEYS), st.lists(st.one_of(texts, phone_like),
                                max_size=4), max_size=len(HASHED_KEYS))  # fmt: skip


@PROPERTY
@given(raw_user_data, st.booleans(), st.sampled_from(REGIONS))
def test_no_plaintext_in_output(raw: dict[str, list[str]], hashing: bool, country: str) -> None:
    user_data, dropped = build_user_data(raw, hashing=hashing, default_country=country,
                                         max_year=YEAR)  # fmt: skip
    assert set(user_data) <= set(raw)
    assert set(dropped) <= set(raw)
    inputs = [v.strip() for values in raw.values() for v in values]
    passed_through = {v.lower() for v in inputs if HEX64.fullmatch(v.lower())}
    plain = {v.lower() for v in inputs}
    plain |= {n for k, vs in raw.items() for v in vs if (n := norm(k, v, country)) is not None}
    for key, values in user_data.items():
        assert values, key
        for value in values:
            assert HEX64.fullmatch(value), key
            assert value not in plain or value in passed_through, key
        assert len(values) == len(set(values))


@PROPERTY
@given(st.dictionaries(st.sampled_from((*HASHED_KEYS, *PLAIN_KEYS, "other")),
       st.lists(st.one_of(texts, st.none(), st.integers())), max_size=8), st.booleans())  # fmt: skip
def test_never_raises_and_reports_keys_only(raw: dict[str, Any], hash_ext: bool) -> None:
    user_data, dropped = build_user_data(raw, hash_external_id=hash_ext, max_year=YEAR)
    assert all(key in HASHED_KEYS for key in dropped)
    assert len(dropped) == len(set(dropped))
    for key in PLAIN_KEYS:
        if key in user_data:
            assert user_data[key] == next(v.strip() for v in raw[key] if isinstance(v, str)
                                          and v.strip())  # fmt: skip


# --- the official SDK as an oracle ----------------------------------------------------------------

SDK_AGREES = [
    ("em", "alex@example.com"), ("em", " Alex@Example.COM "), ("em", "first.last+tag@mail.co.uk"),
    ("fn", "alex"), ("fn", "Mary"), ("ln", "SMITH"), ("fn", "Valéry"), ("ln", "Müller"),
    ("ge", "m"), ("ge", "F"), ("ct", "menlopark"), ("ct", "New York"), ("ct", "St. Louis"),
    ("st", "CA"), ("st", "ny"), ("zp", "94025"), ("zp", "90009-1234"), ("country", "US"),
    ("country", "gb"), ("ph", "+1 650 555 1212"), ("ph", "16505551212"),
    ("ph", "+44 20 7946 0958"), ("ph", "0044 20 7946 0958"), ("db", "19900517"),
    ("external_id", "cust42"), ("external_id", "Cust-42"), ("external_id", " CUST-42 "),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value"), SDK_AGREES)
def test_hash_matches_sdk(key: str, value: str) -> None:
    assert one(key, value) == [sdk(key, value)]


# Where fboc follows Meta's documentation (docs/meta-api.md#user-data-and-hashing) instead of the SDK.
SDK_DIFFERS = [
    ("ph", "(650) 555-1212", "16505551212"),  # SDK adds no country code: "6505551212"
    ("fn", "O'Brien", "obrien"),  # SDK keeps punctuation: "o'brien"
    ("ln", "Smith-Jones", "smithjones"),  # SDK keeps the hyphen
    ("st", "Louisiana", "la"),  # SDK does not map state names: "louisiana"
    ("zp", "94025 1234", "94025"),  # SDK cuts ZIP+4 only at a dash: "940251234"
    ("db", "1990-05-17", "19900517"),  # SDK does not reformat dates: "1990-05-17"
    ("ge", "Male", "m"),  # SDK hashes "male"
    ("ct", "Coeur d'Alene", "coeurdalene"),  # SDK keeps the apostrophe
    ("external_id", " Cust 42 ", "cust42"),  # SDK keeps inner whitespace: "cust 42"
    ("db", "16/02/1997", "19970216"),  # SDK does not reformat dates
    ("db", "17.05.1990", "19900517"),
    ("db", "1990/05/17", "19900517"),
]


@pytest.mark.parametrize(("key", "value", "documented"), SDK_DIFFERS)
def test_documented_rule_differs_from_sdk(key: str, value: str, documented: str) -> None:
    assert one(key, value) == [sha(documented)]
    assert sdk(key, value) != sha(documented)


def test_md5_looking_value_differs_from_sdk() -> None:
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    assert sdk("external_id", md5) == md5  # the SDK sends it as it is
    assert one("external_id", md5) == [sha(md5)]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("United States", "us"),
        ("UK", "gb"),
        ("England", "gb"),
        ("Great Britain", "gb"),
        ("Deutschland", "de"),
    ],
)
def test_country_names_differ_from_sdk(value: str, code: str) -> None:
    # The SDK rejects names (and puts the value in its exception message); fboc maps them.
    with pytest.raises(TypeError, match=value):
        Normalize.normalize_field("country", value)
    assert one("country", value) == [sha(code)] == [sdk("country", code)]


def test_the_country_table_does_not_keep_babels_locales() -> None:
    """Building the table loads ~390 CLDR locales; babel caches each one it loads (~170 MB of
    resident memory for all of them), which fboc does not need once the names are read."""
    from babel import localedata

    from consumer.core.capi import normalize

    normalize._countries.cache_clear()
    localedata._cache.clear()
    normalize.warm()
    assert len(localedata._cache) < 5
    assert normalize._countries()["deutschland"] == "de"


# Compiled by mypyc, `str.lower()` maps characters one by one: a capital sigma at the end of a word
# would become the medial small sigma, not ς. This module is plain Python, so `.lower()` here is
# CPython's: the expected result.
GREEK = "ΟΔΥΣΣΕΥΣ"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("em", f"{GREEK}@example.gr", f"{GREEK}@example.gr".lower()),
        ("em", f"Ο.{GREEK}@example.gr", f"Ο.{GREEK}@example.gr".lower()),  # noqa: RUF001
        ("external_id", f"{GREEK} 7", f"{GREEK}7".lower()),
        ("external_id", f"ID-{GREEK}", f"ID-{GREEK}".lower()),
        ("ct", f"{GREEK} ΠΟΛΙΣ", f"{GREEK} ΠΟΛΙΣ".lower().replace(" ", "")),
        ("ct", f"Νέα {GREEK}", f"Νέα {GREEK}".lower().replace(" ", "")),
        ("zp", f"ΤΚ{GREEK}-1", f"ΤΚ{GREEK}-1".lower().replace("-", "")),  # noqa: RUF001
    ],
)  # fmt: skip
def test_final_sigma_is_lower_cased_as_cpython_does(key: str, value: str, expected: str) -> None:
    assert "ς" in expected  # the case this guards: a final sigma
    assert normalize_field(key, value, region="GR", max_year=YEAR) == expected
    nz.clear_caches()
    user_data, _ = build_user_data({key: [value]}, default_country="GR", max_year=YEAR)
    assert user_data[key] == [sha(expected)]


@given(st.text(max_size=12))
def test_lower_is_cpythons(value: str) -> None:
    assert nz.lower(value) == value.lower()
