"""Normalisation and SHA-256 hashing of Conversions API ``user_data`` (docs/dialects.md#normalisation).

Pure functions: no I/O, no clock. Results are cached per (key, value, region, ...) so that
recurring customers cost a dictionary lookup. Nothing here ever raises with a customer value in
the message: values that cannot be normalised are dropped and reported by key name only.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from functools import cache, lru_cache
from typing import Any, Final

import pycountry

from consumer.core.capi.digest import sha256_hex
from consumer.core.capi.phone import phone_e164
from consumer.core.capi.recent import MAX_CACHED_LENGTH, MAX_SETTINGS, Memo, Recent

HASHED_KEYS: Final[tuple[str, ...]] = (
    "em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id",
)  # fmt: skip
PLAIN_KEYS: Final[tuple[str, ...]] = (
    "client_ip_address", "client_user_agent", "fbc", "fbp", "madid", "lead_id",
)  # fmt: skip

CACHE_SIZE: Final = 65536
CUSTOMER_CACHE_SIZE: Final = 16384  # whole customers (their hashed keys), see _CUSTOMERS

_HEX64: Final = re.compile(r"[0-9a-fA-F]{64}")
_EMAIL: Final = re.compile(r"[^@\s]+@(?:[^@\s.]+\.)+[^@\s.]+")
_ZIP_STRIP: Final = re.compile(r"[\s\-\u2010-\u2015\u2212]+")
_DB_ISO_TIME: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ].+")
# Day, month and year in some order, split by one kind of separator: `/`, `.`, `-` or a space.
_DB_YEAR_FIRST: Final = re.compile(r"([0-9]{4})([/.\- ]?)([0-9]{1,2})\2([0-9]{1,2})")
_DB_YEAR_LAST: Final = re.compile(r"([0-9]{1,2})([/.\- ]?)([0-9]{1,2})\2([0-9]{4})")
DATE_ORDERS = ("mdy", "dmy")  # how an ambiguous day-month-year date is read (03/04/1990)
EXTERNAL_ID_MODES = ("lowercase", "exact")
_GENDERS: Final = {"m": "m", "male": "m", "man": "m", "f": "f", "female": "f", "woman": "f"}


# The ASCII characters outside L and M (and N): what str.translate deletes for _keep.
_ASCII_NOT_LM: Final = {c: None for c in range(128) if not chr(c).isalpha()}
_ASCII_NOT_LMN: Final = {c: None for c in range(128) if not chr(c).isalnum()}
_SEPARATORS: Final = (" ", "-", "'", ".")
# CPython's str.lower, called as an object: compiled by mypyc, `value.lower()` maps characters one
# by one and misses the final sigma ("ΟΔΥΣΣΕΥΣ" → "οδυσσευσ" instead of "οδυσσευς").
_str_lower: Final[Callable[[str], str]] = str.lower


def lower(value: str) -> str:
    """``value.lower()`` as CPython does it, compiled or not (the final sigma): use it for every
    customer value. ASCII, the usual, takes the fast path."""
    return value.lower() if value.isascii() else _str_lower(value)


def _keep(value: str, categories: str) -> str:
    """Lower-case and NFC ``value`` and keep only characters of the given Unicode major categories
    ("LM": letters and combining marks, "LMN": and numbers). NFC runs again after filtering
    because removing a character can bring a letter and a combining mark together."""
    text = lower(value)
    if not text.isascii():  # ASCII text is NFC already
        text = unicodedata.normalize("NFC", text)
    numbers = "N" in categories
    # The common case first: without its spaces, hyphens, apostrophes and dots (str.replace is
    # much faster than str.translate), a name is all letters, or all ASCII letters and digits.
    kept = text
    for separator in _SEPARATORS:
        if separator in kept:
            kept = kept.replace(separator, "")
    if kept.isascii():
        if kept.isalpha() or (numbers and kept.isalnum()):
            return kept
        return kept.translate(_ASCII_NOT_LMN if numbers else _ASCII_NOT_LM)
    if not numbers and kept.isalpha():  # only letters (category L) left: the filter keeps all
        return unicodedata.normalize("NFC", kept)
    kept = "".join(c for c in text if unicodedata.category(c)[0] in categories)
    return unicodedata.normalize("NFC", kept)


def _fold(value: str) -> str:
    """Lookup key for names: case-folded, accents and everything but letters removed. Scripts
    whose vowels are combining marks (Devanagari, Arabic...) keep their marks: without them
    different names would fold alike."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    letters = "".join(c for c in decomposed if c.isalpha())
    if letters.isascii():
        return letters
    composed = unicodedata.normalize("NFC", value.casefold())
    return "".join(c for c in composed if unicodedata.category(c)[0] in "LM")


@cache
def _us_states() -> dict[str, str]:
    """``{folded code or name: lower-case 2-letter code}`` for the US subdivisions in pycountry."""
    subs = [(s.code[3:].lower(), s.name) for s in pycountry.subdivisions if s.country_code == "US"]
    table: dict[str, str] = {}
    for code, _ in subs:
        table[code] = code
        table["us" + code] = code  # "US-CA"
    for code, name in subs:
        table.setdefault(_fold(name), code)
    return table


# Names of parts of a country that people write in its place; CLDR has no such entries.
COUNTRY_ALIASES = {
    "england": "gb",
    "scotland": "gb",
    "wales": "gb",
    "northernireland": "gb",
    "greatbritain": "gb",
    "britain": "gb",
}


@cache
def _countries() -> dict[str, str]:
    """``{folded name: lower-case alpha-2}``, built on first use (about a second: it reads the
    CLDR territory names of every language babel has). Priority: pycountry's alpha-2 and alpha-3
    codes, its English names, CLDR's code aliases (UK), the aliases above, then CLDR's names in
    all languages; a CLDR name that means two countries in two languages is left out."""
    table: dict[str, str] = {}
    codes = {str(country.alpha_2) for country in pycountry.countries}
    for attrs in (("alpha_2", "alpha_3"), ("name", "common_name", "official_name")):
        for country in pycountry.countries:
            for attr in attrs:
                name = getattr(country, attr, None)
                if isinstance(name, str):
                    table.setdefault(_fold(name), country.alpha_2.lower())
    for alias, code in _cldr_aliases(codes).items():
        table.setdefault(alias, code)
    for alias, code in COUNTRY_ALIASES.items():
        table.setdefault(alias, code)
    for name, code in _cldr_names(codes).items():
        table.setdefault(name, code)
    return table


def _cldr_aliases(codes: set[str]) -> dict[str, str]:
    """CLDR's replaced territory codes that mean exactly one country today (UK → gb, DD → de)."""
    from babel.core import get_global

    aliases: dict[str, str] = {}
    for alias, targets in get_global("territory_aliases").items():
        if alias.isalpha() and len(targets) == 1 and targets[0] in codes:
            aliases[_fold(alias)] = targets[0].lower()
    return aliases


def _cldr_names(codes: set[str]) -> dict[str, str]:
    """Folded CLDR territory names of every language (and script: sr_Latn) → alpha-2."""
    from babel import localedata

    found: dict[str, str] = {}
    ambiguous: set[str] = set()
    folded: dict[str, str] = {}  # most names recur in many languages: fold each once
    cache: dict[str, Any] = getattr(localedata, "_cache", {})
    for locale in localedata.locale_identifiers():
        parts = locale.split("_")
        if len(parts) > 2 or (len(parts) == 2 and len(parts[1]) != 4):
            continue  # regional variants (de_AT) repeat their language's names
        # the locale's own names: a locale's parent is its language, read in this loop too
        names = localedata.load(locale, merge_inherited=False).get("territories", {})
        # babel keeps every loaded locale (~170 MB for all of them): fboc needs only these names
        cache.pop(locale, None)
        for code, name in names.items():
            key = folded.get(name)
            if key is None:
                key = folded[name] = _fold(name)
            if code not in codes or not key:
                continue  # regions (Europe, 150), EU, XK: not ISO 3166-1 countries
            if found.setdefault(key, code.lower()) != code.lower():
                ambiguous.add(key)
    for key in ambiguous:
        del found[key]
    return found


def _birthdate(value: str, max_year: int, date_order: str) -> str | None:
    """YYYYMMDD. Year first is read year-month-day (ISO, and how year-first dates are written).
    Year last: a part over 12 is the day; when both could be the month, ``date_order`` says.
    Eight digits alone are YYYYMMDD, DDMMYYYY or MMDDYYYY: at most one reading is a valid date."""
    text = value.strip()
    if len(text) == 10 and text[4] == "-" and text[7] == "-":  # YYYY-MM-DD, the usual: no regex
        digits = text[:4] + text[5:7] + text[8:]
        if digits.isascii() and digits.isdigit():
            return _iso_date(digits, max_year)
    return _birthdate_read(text, max_year, date_order)


def _iso_date(digits: str, max_year: int) -> str | None:
    """YYYYMMDD from its eight ASCII digits when it is a date from 1900 to max_year."""
    try:
        dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None
    return digits if 1900 <= int(digits[:4]) <= max_year else None


def _birthdate_read(text: str, max_year: int, date_order: str) -> str | None:
    """_birthdate for any way of writing it (``text`` stripped)."""
    readings: list[tuple[str, str, str]] = []  # (year, month, day)
    if m := _DB_ISO_TIME.fullmatch(text):
        try:
            dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        readings.append((m.group(1), m.group(2), m.group(3)))
    compact = len(text) == 8
    if (m := _DB_YEAR_FIRST.fullmatch(text)) and (m.group(2) or compact):
        readings.append((m.group(1), m.group(3), m.group(4)))
    if (m := _DB_YEAR_LAST.fullmatch(text)) and (m.group(2) or compact):
        first, second, year = m.group(1, 3, 4)
        if int(first) > 12 or (int(second) <= 12 and date_order == "dmy"):
            readings.append((year, second, first))
        else:
            readings.append((year, first, second))
    for year, month, day in readings:
        try:
            date = dt.date(int(year), int(month), int(day))
        except ValueError:
            continue
        if 1900 <= date.year <= max_year:
            return f"{date.year:04d}{date.month:02d}{date.day:02d}"
    return None


def _state(value: str, region: str) -> str | None:
    text = _keep(value, "LMN")
    if region == "US":
        # Unknown values fall back to the generic rule (e.g. "ON" with default_country US).
        text = _us_states().get(text, text)
    return text or None


def _zip(value: str, region: str) -> str | None:
    text = lower(value)
    if not (text.isascii() and text.isalnum()):  # else there is no space or dash to remove
        text = _ZIP_STRIP.sub("", text)
    if region == "US" and text.isascii() and text.isdigit() and (len(text) == 5 or len(text) == 9):
        return text[:5]  # ZIP or ZIP+4: the five-digit ZIP
    return text or None


def warm() -> None:
    """Build the country table now (about a second of CPU) rather than on the first record."""
    _countries()


@lru_cache(maxsize=4096)
def _country(value: str) -> str | None:
    key = _fold(value)
    return _countries().get(key) if key else None


def normalize_field(
    key: str,
    value: str,
    *,
    region: str,
    max_year: int,
    date_order: str = "mdy",
    external_id: str = "lowercase",
) -> str | None:
    """The normalised plaintext of ``value`` for ``key`` (before hashing), or None when it cannot
    be normalised. ``region``: ISO alpha-2 upper-case (phone parsing, US rules for st and zp).
    ``max_year``: latest accepted year of birth. ``date_order`` (DATE_ORDERS): how an ambiguous
    date of birth is read. ``external_id`` (EXTERNAL_ID_MODES): `lowercase` removes whitespace
    and lower-cases, as Meta's parameter builder does; `exact` only trims. Values of 64 hex digits
    get no special treatment here (see :func:`build_user_data`)."""
    if key == "em":
        text = lower(value.strip())
        return text if _EMAIL.fullmatch(text) else None
    if key == "ph":
        return phone_e164(value, region)
    if key in ("fn", "ln", "ct"):
        return _keep(value, "LM") or None
    if key == "ge":
        return _GENDERS.get(lower(value.strip()))
    if key == "db":
        return _birthdate(value, max_year, date_order)
    if key == "st":
        return _state(value, region)
    if key == "zp":
        return _zip(value, region)
    if key == "country":
        return _country(value)
    if key == "external_id":
        if external_id == "exact":
            return value.strip() or None
        return lower("".join(value.split())) or None
    raise ValueError("normalize_field: key is not a hashed user_data key")


def _hashed(key: str, value: str, region: str, max_year: int, option: str, hash_it: bool) -> str | None:
    """Normalise + SHA-256 of one stripped, non-empty, not-yet-hashed value. ``option``: the date
    order for db, the external_id mode for external_id, else empty."""
    normalised = normalize_field(
        key, value, region=region, max_year=max_year, date_order=option, external_id=option
    )
    if normalised is None or not hash_it:
        return normalised
    return sha256_hex(normalised.encode("utf-8"))


def _values(raw: dict[str, Any], key: str) -> list[str]:
    """Non-empty stripped string values of ``raw[key]``; a bare string counts as one value."""
    values: object = raw.get(key)
    if not values:  # the common case: most keys are empty
        return []
    if isinstance(values, str):
        values = (values,)
    elif not isinstance(values, (list, tuple)):
        return []
    out = []
    for value in values:
        if isinstance(value, str) and (stripped := value.strip()):
            out.append(stripped)
    return out


def _customer(raw: dict[str, Any]) -> tuple[tuple[tuple[str, ...], ...], str | None]:
    """The values of the hashed keys, as _values gives them, in HASHED_KEYS order, and their
    cache key: the values joined by NUL, one part a key ("" when it has none). A customer with
    two values for a key, a NUL in a value or a key longer than MAX_CUSTOMER_KEY has no cache key
    (None): that keeps the key one customer's alone."""
    customer: list[tuple[str, ...]] = []
    parts: list[str] = []
    single = True
    for key in HASHED_KEYS:
        values: object = raw.get(key)
        if type(values) is list and len(values) == 1 and type(values[0]) is str:  # the usual
            value = values[0].strip()
            customer.append((value,) if value else ())
            parts.append(value)
            continue
        found = tuple(_values(raw, key))
        customer.append(found)
        if len(found) > 1:
            single = False
        parts.append(found[0] if found else "")
    if not single:
        return tuple(customer), None
    joined = "\0".join(parts)
    if len(joined) > MAX_CUSTOMER_KEY or joined.count("\0") != len(HASHED_KEYS) - 1:
        return tuple(customer), None
    return tuple(customer), joined


def build_user_data(
    raw: Mapping[str, Sequence[str]],
    *,
    hashing: bool = True,
    hash_external_id: bool = True,
    default_country: str = "US",
    max_year: int,
    date_order: str = "mdy",
    external_id: str = "lowercase",
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Build the Conversions API ``user_data`` object from raw values (docs/dialects.md#hashing).

    Returns ``(user_data, dropped)``: hashed keys map to de-duplicated lists of lower-case hex
    SHA-256 in input order, plain keys to their first non-empty value; empty keys are left out.
    ``dropped`` names (once each) the keys that had a value that could not be normalised.
    Output key order is fixed (HASHED_KEYS, then PLAIN_KEYS), whatever the order of ``raw``.
    """
    # a dict, so that compiled code reads it directly (a Mapping's .get is a Python method call)
    table: dict[str, Any] = raw if isinstance(raw, dict) else dict(raw)
    settings = _settings(hashing, hash_external_id, default_country, max_year, date_order, external_id)
    customer, joined = _customer(table)
    cache_key = settings.prefix + joined if joined is not None and settings.prefix else ""
    found = _CUSTOMERS.get(cache_key) if cache_key else None
    if found is None:
        found = _hashed_user_data(customer, settings)
        if cache_key:
            _CUSTOMERS.set(cache_key, found)
    hashed, dropped = found
    user_data: dict[str, Any] = {}
    for index in range(0, len(hashed), 2):
        key = hashed[index]
        result = hashed[index + 1]
        assert isinstance(key, str)  # the even places hold the keys (_hashed_user_data)
        # fresh lists: callers may change them
        if isinstance(result, str):
            user_data[key] = [result]
        else:
            user_data[key] = list(result)
    for key in PLAIN_KEYS:
        given: object = table.get(key)
        if not given:  # the common case: most plain keys are empty
            continue
        if type(given) is list and len(given) == 1 and type(given[0]) is str:  # the usual
            if value := given[0].strip():
                user_data[key] = value
        elif found_values := _values(table, key):
            user_data[key] = found_values[0]
    return user_data, dropped


# Two caches, both keyed by text (a tuple key costs its hashing and an lru_cache's links on every
# call; a dict of text to text is also one the cyclic garbage collector never walks):
# - _VALUES: a value's result (normalised and hashed), keyed by its key's prefix (the key and what
#   of the settings changes its result, _KeyPlan) and the value; "" when it cannot be normalised;
# - _CUSTOMERS: a whole customer's hashed keys, keyed by the settings' prefix and the customer's
#   values (_customer): customers recur, and their plain keys (IP, user agent, click ids) are what
#   changes from event to event.
# Values longer than MAX_CACHED_LENGTH are never kept (recent.py).
_VALUES: Final[Recent[str]] = Recent(CACHE_SIZE)
# (key, result, key, result...: a result is a text, or a tuple of them for a key with several values),
# and the keys dropped
Hashed = tuple[tuple[str | tuple[str, ...], ...], tuple[str, ...]]
_CUSTOMERS: Final[Recent[Hashed]] = Recent(CUSTOMER_CACHE_SIZE)
MAX_CUSTOMER_KEY: Final = 4 * MAX_CACHED_LENGTH

# What of a destination's settings takes part in each hashed key's result, by HASHED_KEYS
# position: decided once here, not per key and customer.
_PHONE: Final = 0
_US_ONLY: Final = 1
_BIRTH: Final = 2
_EXTERNAL: Final = 3
_PLAIN: Final = 4
_KINDS: Final = {"ph": _PHONE, "st": _US_ONLY, "zp": _US_ONLY, "db": _BIRTH, "external_id": _EXTERNAL}
_KEY_KINDS: Final[tuple[tuple[str, int], ...]] = tuple((key, _KINDS.get(key, _PLAIN)) for key in HASHED_KEYS)
_COUNTRY_INDEX: Final = HASHED_KEYS.index("country")
MAX_REGIONS: Final = 256  # key plans kept per settings, one a customer region (there are ~250)


class _KeyPlan:
    """One hashed key under one destination's settings and customer region: the arguments of
    its _hashed call, and its _VALUES prefix ("" when its settings cannot be part of a key)."""

    __slots__ = ("hash_it", "key", "option", "prefix", "region", "year")

    def __init__(self, key: str, kind: int, region: str, settings: _Settings) -> None:
        self.key = key
        # Region and year take part only where they change the result.
        us_region = "US" if region == "US" else ""
        self.region = region if kind == _PHONE else us_region if kind == _US_ONLY else ""
        self.year = settings.max_year if kind == _BIRTH else 0
        self.option = (
            settings.date_order if kind == _BIRTH else settings.external_id if kind == _EXTERNAL else ""
        )
        self.hash_it = settings.hash_external_id or kind != _EXTERNAL
        self.prefix = _prefix((key, self.region, str(self.year), self.option, "1" if self.hash_it else "0"))


# build_user_data's hashing, hash_external_id, default_country, max_year, date_order, external_id
SettingsKey = tuple[bool, bool, str, int, str, str]


class _Settings:
    """What of build_user_data's arguments its results depend on, and the key plans of each
    customer region seen under them."""

    __slots__ = (
        "date_order",
        "default_country",
        "external_id",
        "hash_external_id",
        "hashing",
        "max_year",
        "plans",
        "prefix",
    )

    def __init__(self, arguments: SettingsKey) -> None:
        hashing, hash_external_id, default_country, max_year, date_order, external_id = arguments
        self.hashing = hashing
        self.hash_external_id = hash_external_id
        self.default_country = default_country
        self.max_year = max_year
        self.date_order = date_order
        self.external_id = external_id
        flags = ("1" if hashing else "0") + ("1" if hash_external_id else "0")
        self.prefix = _prefix((flags, default_country, str(max_year), date_order, external_id))
        self.plans: Memo[str, tuple[_KeyPlan, ...]] = Memo(MAX_REGIONS, self._plans)

    def _plans(self, region: str) -> tuple[_KeyPlan, ...]:
        return tuple(_KeyPlan(key, kind, region, self) for key, kind in _KEY_KINDS)


_SETTINGS: Final[Memo[SettingsKey, _Settings]] = Memo(MAX_SETTINGS, _Settings)


def _prefix(fields: tuple[str, ...]) -> str:
    """The fields, each ended by NUL: no text after them can make two prefixes alike. "" (no
    cache key) when a field holds a NUL itself."""
    for field in fields:
        if "\0" in field:
            return ""
    return "\0".join(fields) + "\0"


def _settings(
    hashing: bool,
    hash_external_id: bool,
    default_country: str,
    max_year: int,
    date_order: str,
    external_id: str,
) -> _Settings:
    return _SETTINGS.get((hashing, hash_external_id, default_country, max_year, date_order, external_id))


def _hashed_user_data(customer: tuple[tuple[str, ...], ...], settings: _Settings) -> Hashed:
    """The hashed keys of one customer (values in HASHED_KEYS order) under the settings."""
    hashing = settings.hashing
    region = settings.default_country.strip().upper()
    if hashing:
        for value in customer[_COUNTRY_INDEX]:
            if not _HEX64.fullmatch(value) and (code := _country(value)):
                region = code.upper()
                break
    plans = settings.plans.get(region)
    hashed: list[str | tuple[str, ...]] = []
    dropped: list[str] = []
    for index in range(len(HASHED_KEYS)):
        values = customer[index]
        if not values:  # the common case in production: most keys are empty
            continue
        plan = plans[index]
        if len(values) == 1:  # the usual: one value, nothing to de-duplicate
            result = _one_hashed(plan, values[0], hashing)
            if result is None:
                dropped.append(plan.key)
            else:
                hashed.append(plan.key)
                hashed.append(result)
            continue
        out: list[str] = []
        for value in values:
            result = _one_hashed(plan, value, hashing)
            if result is None:
                if plan.key not in dropped:
                    dropped.append(plan.key)
            elif result not in out:
                out.append(result)
        if out:
            hashed.append(plan.key)
            hashed.append(out[0] if len(out) == 1 else tuple(out))
    return tuple(hashed), tuple(dropped)


def _one_hashed(plan: _KeyPlan, value: str, hashing: bool) -> str | None:
    """One value of a customer: a given hash as it is (lower-cased), else normalised and hashed
    (through _VALUES), or None: not normalisable, or plaintext with hashing off."""
    if len(value) == 64 and _HEX64.fullmatch(value):
        return value.lower()
    if not hashing and plan.hash_it:
        return None
    cacheable = plan.prefix and len(value) <= MAX_CACHED_LENGTH
    cache_key = plan.prefix + value if cacheable else ""
    if cache_key:
        known = _VALUES.get(cache_key)
        if known is not None:
            return known or None
    result = _hashed(plan.key, value, plan.region, plan.year, plan.option, plan.hash_it)
    if cache_key:
        _VALUES.set(cache_key, result or "")
    return result


def clear_caches() -> None:
    """Forget every value and customer seen: what a new customer finds in no cache here."""
    _VALUES.clear()
    _CUSTOMERS.clear()
