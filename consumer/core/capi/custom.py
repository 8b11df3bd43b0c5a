"""Customer data stays in user_data: what an event carries elsewhere (custom_data at any depth,
URLs in it and event_source_url) is screened before it is sent (README, "What is never sent";
Meta's rule in docs/meta-api.md).

A property is dropped when its name looks like customer data (`NAME_*` below, any case or
separator style, camelCase too), or when its value holds an e-mail address, a phone number, or a
customer field of the same event (it normalises to one of the event's hashed user_data values).
In a URL, such a query parameter (or fragment) is dropped; an address or phone number in the rest
of the URL drops the URL. The operator's `allowed_custom_properties` are kept as they are.

Pure: `screen_event` returns the screened event and what it dropped as `(path, reason)` pairs,
reasons from `REASONS`; the caller counts them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import pycountry

from consumer.core.capi import normalize
from consumer.core.capi.digest import sha256_hex
from consumer.core.capi.event import ServerEvent, is_mapping
from consumer.core.capi.normalize import lower, normalize_field
from consumer.core.capi.recent import MAX_CACHED_LENGTH, MAX_SETTINGS, Memo, Recent

REASONS: Final = ("name", "email_value", "phone_value", "customer_value", "too_deep")
MAX_DEPTH: Final = 64
MAX_CUSTOMER_VALUE_LENGTH: Final = 200  # longer text is not one customer field
MAX_PHONE_CANDIDATES: Final = 16

# Conversions API custom_data keys fboc fills itself: not judged by name (content_name is no
# person's name), but their values are screened like any other.
STANDARD_KEYS: Final = frozenset(
    {
        "value",
        "currency",
        "contents",
        "content_ids",
        "content_type",
        "content_name",
        "content_category",
        "order_id",
        "item_number",
        "num_items",
        "status",
        "predicted_ltv",
        "search_string",
        "delivery_category",
    }
)
CONTENT_KEYS: Final = frozenset(
    {"id", "quantity", "item_price", "brand", "category", "title", "description", "delivery_category"}
)
NUMERIC_KEYS: Final = frozenset({"value", "num_items", "predicted_ltv", "quantity", "item_price"})
# fboc's identifier fields (contents' id too): one token of ASCII letters and digits there (a plain
# run of digits, or a hex id such as fboc's own item_number) is an id, not a phone number, and it
# is not compared with the customer's fields.
ID_KEYS: Final = frozenset({"order_id", "item_number", "content_ids", "id"})

# Names, compared case-folded without separators: whole names, ...
NAME_EXACT: Final = frozenset(
    {
        "name",
        "state",
        "country",
        "province",
        "county",
        "fname",
        "lname",
        "em",
        "ph",
        "fn",
        "ln",
        "ge",
        "db",
        "ct",
        "st",
        "zp",
        "externalid",
        "madid",
    }
)
# ... parts anywhere in the name (customerEmail, billing_phone, date_of_birth), ...
_PERSON: Final = (
    "first",
    "last",
    "given",
    "family",
    "sur",
    "full",
    "middle",
    "maiden",
    "user",
    "nick",
    "display",
    "customer",
    "contact",
    "billing",
    "shipping",
    "cardholder",
    "recipient",
    "buyer",
    "member",
    "client",
    "guest",
    "real",
    "legal",
    "account",
    "holder",
)
NAME_PARTS: Final = (
    "email",
    "phone",
    "mobile",
    "msisdn",
    "birth",
    "address",
    "street",
    "postcode",
    "postal",
    "zipcode",
    "gender",
    "passport",
    "socialsecurity",
    "nationalid",
    "creditcard",
    "cardnumber",
    "latitude",
    "longitude",
    *[p + "name" for p in _PERSON],
)
# ... and words of the name (split at separators and camelCase), short enough to be part of
# other words when written inside one (velocity, hotel, shipping).
NAME_WORDS: Final = frozenset(
    {
        "mail",
        "tel",
        "fax",
        "ip",
        "ipv",
        "dob",
        "ssn",
        "zip",
        "city",
        "town",
        "addr",
        "sex",
        "iban",
        "lat",
        "lng",
    }
)

_FOLD: Final = re.compile(r"[\W_]+")
_WORDS: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_NAME_PARTS: Final = re.compile("|".join(NAME_PARTS))
_EMAIL_IN: Final = re.compile(
    r"[^\s@<>()\[\],;:\"]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z][A-Za-z0-9\-]+"
)
_PHONE_RUN: Final = re.compile(r"\+?\(?[0-9][0-9 ()./\-\u00a0]{5,}[0-9]")
_DATE_RUN: Final = re.compile(r"[0-9]{4}([-/.])[0-9]{1,2}\1[0-9]{1,2}|[0-9]{1,2}([-/.])[0-9]{1,2}\2[0-9]{4}")
_NON_DIGIT: Final = re.compile(r"[^0-9]")
_DIGITS: Final = "0123456789"  # what _PHONE_RUN and _NON_DIGIT take for digits
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_ID_TOKEN: Final = re.compile(r"[0-9A-Za-z]+")
# user_data keys whose values a custom property must not repeat (em and ph: by value anyway; ge,
# st and country are too coarse to name anyone and too common to compare: "F", "CA", "US").
CUSTOMER_KEYS: Final = ("fn", "ln", "ct", "db", "zp", "external_id")
_CUSTOMER_KEY_SET: Final = frozenset(CUSTOMER_KEYS)
CustomerForms = tuple[tuple[str, tuple[str, str]], ...]
Judgement = tuple[str | None, str, CustomerForms]  # see _judge
# A judgement as text_reason reads it: with the customer forms' values (plain and hashed, of
# any key) as a set, which has to meet the record's customer values before the forms are
# compared key by key.
Judged = tuple[str | None, str, frozenset[str], CustomerForms]
MAX_CACHED: Final = 16384  # judgements (and names) kept per cache (recent.py: the least recent go)

Drop = tuple[str, str]  # (where, reason)


@dataclass(frozen=True, slots=True)
class Screen:
    """A destination's settings that screening reads."""

    allowed: frozenset[str] = frozenset()
    default_country: str = "US"
    date_order: str = "mdy"
    external_id: str = "lowercase"


class _Walk:
    """One event's screening: its settings, its customer, what was dropped. A plain class (not
    a dataclass), so that compiled code reads its attributes directly."""

    def __init__(self, screen: Screen, region: str, user_data: dict[Any, Any] | None) -> None:
        self.screen = screen
        self.allowed: frozenset[str] = screen.allowed
        self.region = region
        self.user_data = user_data
        # every text value of the customer keys (hashes or plain)
        self.customer: set[str] = set()
        self.values: set[str] | None = None  # every text value of user_data's lists, when needed
        self.judged = _judgements(region, screen, False)  # free text under these settings ...
        self.judged_ids = _judgements(region, screen, True)  # ... and ids
        self.drops: list[Drop] = []
        # the first walk only decides; what it returns is thrown away unless something was
        # dropped, and then a second walk builds the event to send (most events drop nothing)
        self.build = False


def is_customer_name(name: str) -> bool:
    """Whether a property name looks like customer data (see the module docstring)."""
    return _is_customer_name(name) if len(name) <= MAX_CACHED_LENGTH else _name_check(name)


@lru_cache(maxsize=4096)
def _is_customer_name(name: str) -> bool:
    return _name_check(name)


def _name_check(name: str) -> bool:
    folded = _FOLD.sub("", name.casefold())
    if folded in NAME_EXACT or _NAME_PARTS.search(folded):
        return True
    return not NAME_WORDS.isdisjoint({lower(word) for word in _WORDS.findall(name)})


def has_email(text: str) -> bool:
    if "@" not in text and "%40" not in text:
        return False
    return _EMAIL_IN.search(text) is not None or _EMAIL_IN.search(unquote(text)) is not None


def has_phone(text: str, region: str) -> bool:
    return _has_phone(text, region) if len(text) <= MAX_CACHED_LENGTH else _phone_check(text, region)


@lru_cache(maxsize=16384)
def _has_phone(text: str, region: str) -> bool:
    return _phone_check(text, region)


def _phone_check(text: str, region: str) -> bool:
    """Whether ``text`` holds a run of 7 to 15 digits (with phone punctuation) that is a valid
    phone number as written, in ``region``, or with a country code. Dates are not. Text with
    more than MAX_PHONE_CANDIDATES such runs counts as holding one (parsing each costs time)."""
    digits = 0
    for digit in _DIGITS:  # fewer than 7 ASCII digits in all: no run can be a phone number
        digits += text.count(digit)
    if digits < 7:
        return False
    candidates = 0
    for match in _PHONE_RUN.finditer(text):
        run = match.group()
        digits = len(_NON_DIGIT.sub("", run))
        if not 7 <= digits <= 15 or _DATE_RUN.fullmatch(run.strip("() ")):
            continue
        candidates += 1
        if (
            candidates > MAX_PHONE_CANDIDATES
            or normalize_field("ph", run, region=region, max_year=0) is not None
        ):
            return True
    return False


_COUNTRY_HASHES: Final[dict[str, str]] = {}


def _country_hashes() -> dict[str, str]:
    """sha256 of each lower-case alpha-2 code → its upper-case code: the event's country."""
    if not _COUNTRY_HASHES:
        for country in pycountry.countries:
            code = str(country.alpha_2)
            _COUNTRY_HASHES[sha256_hex(code.lower().encode())] = code
    return _COUNTRY_HASHES


def _customer_forms(text: str, region: str, date_order: str, external_id: str) -> CustomerForms:
    """``text`` normalised as each customer key it can be: (key, (plain, hashed)) pairs, since
    user_data holds one or the other. One cache entry a text, whatever keys a record has."""
    forms: list[tuple[str, tuple[str, str]]] = []
    for key in CUSTOMER_KEYS:
        normalised = normalize_field(
            key, text, region=region, max_year=9999, date_order=date_order, external_id=external_id
        )
        if normalised is not None:
            forms.append((key, (normalised, sha256_hex(normalised.encode("utf-8")))))
    return tuple(forms)


# text → judgement, one cache per (region, date order, external id rule, id or not): a record
# finds its two with one lookup, then each text with one more. Bounded by MAX_CACHED each, and
# by MAX_SETTINGS caches (a stream of odd settings starts them again).
_JUDGED: Final[Memo[tuple[str, str, str, bool], Recent[Judged]]] = Memo(
    MAX_SETTINGS, lambda _settings: Recent(MAX_CACHED)
)
_NAMES: Final[Recent[bool]] = Recent(MAX_CACHED)  # property name → is_customer_name


def _judgements(region: str, screen: Screen, id_like: bool) -> Recent[Judged]:
    return _JUDGED.get((region, screen.date_order, screen.external_id, id_like))


def _walk_for(event: Mapping[str, Any], screen: Screen) -> _Walk:
    user_data = event.get("user_data")
    region = screen.default_country.upper()
    if not isinstance(user_data, dict):
        if not isinstance(user_data, Mapping):
            return _Walk(screen, region, None)
        user_data = dict(user_data)
    countries = user_data.get("country")
    if countries:
        hashes = _country_hashes()
        for value in countries:
            code = hashes.get(value) if isinstance(value, str) else None
            if code is not None:
                region = code
                break
    walk = _Walk(screen, region, user_data)
    customer = walk.customer
    for key in CUSTOMER_KEYS:
        items = user_data.get(key)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, str):
                    customer.add(item)
    return walk


def _record_values(walk: _Walk) -> set[str]:
    """Every text value of the record's user_data lists (built on the first 64-hex text)."""
    values = walk.values
    if values is None:
        values = walk.values = set()
        if walk.user_data is not None:
            for items in walk.user_data.values():
                if isinstance(items, list):
                    for item in items:
                        if isinstance(item, str):
                            values.add(item)
    return values


def text_reason(text: str, walk: _Walk, id_like: bool = False) -> str | None:
    """Why a text value must not be sent, or None."""
    cache = walk.judged_ids if id_like else walk.judged
    judged = cache.get(text)
    if judged is None:
        screen = walk.screen
        judged = _keyed(_judge(text, walk.region, screen.date_order, screen.external_id, id_like))
        if len(text) <= MAX_CACHED_LENGTH:
            cache.set(text, judged)
    reason, hash_like, values, forms = judged
    if reason is not None or id_like:
        return reason
    if hash_like and hash_like in _record_values(walk):
        return "customer_value"
    if values and not values.isdisjoint(walk.customer) and _is_customer_form(forms, walk):
        return "customer_value"
    return None


def _is_customer_form(forms: CustomerForms, walk: _Walk) -> bool:
    """Whether one of the forms is the record's value of the same key."""
    user_data = walk.user_data
    if user_data is None:
        return False
    for key, pair in forms:
        values = user_data.get(key)
        if isinstance(values, list) and (pair[0] in values or pair[1] in values):
            return True
    return False


def _keyed(judgement: Judgement) -> Judged:
    reason, hash_like, forms = judgement
    values: set[str] = set()
    for _key, (plain, hashed) in forms:
        values.add(plain)
        values.add(hashed)
    return reason, hash_like, frozenset(values), forms


def _name_reason(name: str) -> bool:
    """is_customer_name, through a cache the walk reads in one step."""
    known = _NAMES.get(name)
    if known is not None:
        return known
    known = is_customer_name(name)
    if len(name) <= MAX_CACHED_LENGTH:
        _NAMES.set(name, known)
    return known


def _judge(text: str, region: str, date_order: str, external_id: str, id_like: bool) -> Judgement:
    """What text_reason needs to know of ``text`` apart from the record: an e-mail or phone
    reason, the text as a hash to look for among the record's (or ""), its customer forms."""
    if has_email(text):
        return "email_value", "", ()
    if not (id_like and _ID_TOKEN.fullmatch(text)) and has_phone(text, region):
        return "phone_value", "", ()
    if id_like:
        return None, "", ()
    stripped = text.strip()
    lowered = lower(stripped)
    hash_like = lowered if len(lowered) == 64 and _HEX64.fullmatch(lowered) else ""
    if len(stripped) > MAX_CUSTOMER_VALUE_LENGTH:
        return None, hash_like, ()
    return None, hash_like, _customer_forms(stripped, region, date_order, external_id)


def screen_url(url: str, where: str, walk: _Walk) -> str | None:
    """``url`` without the query parameters (and fragment) that hold customer data; None when
    the rest of it does."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL after all: judged as text
        reason = text_reason(url, walk)
        if reason is not None:
            walk.drops.append((where, reason))
            return None
        return url
    reason = (
        "email_value"
        if has_email(parts.netloc + parts.path)
        else ("phone_value" if has_phone(unquote(parts.path), walk.region) else None)
    )
    if reason is not None:
        walk.drops.append((where, reason))
        return None
    query, changed = parts.query, False
    if query:
        kept: list[tuple[str, str]] = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            reason = _param_reason(name, value, walk)
            if reason is None:
                kept.append((name, value))
            else:
                walk.drops.append((f"{where}?{name}", reason))
                changed = True
        if changed:
            query = urlencode(kept)
    fragment = parts.fragment
    if fragment:
        reason = text_reason(unquote(fragment), walk)
        if reason is None:
            for name in re.findall(r"([^?&#=/]+)=", fragment):
                if name not in walk.screen.allowed and is_customer_name(unquote(name)):
                    reason = "name"
                    break
        if reason is not None:
            walk.drops.append((f"{where}#", reason))
            fragment, changed = "", True
    if not changed:
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, fragment))


def _param_reason(name: str, value: str, walk: _Walk) -> str | None:
    if name in walk.screen.allowed:
        return None
    if is_customer_name(name):
        return "name"
    return text_reason(value, walk)


_DROP: Final = object()
# what a value is, from its key in fboc's own fields
FREE: Final = 0
ID: Final = 1
NUMBER: Final = 2
CONTENTS: Final = 3
NO_KEYS: Final[frozenset[str]] = frozenset()
_NOT_BUILT: Final[dict[str, Any]] = {}  # what a deciding walk returns for an object: never written


def _role(key: str, standard: frozenset[str]) -> int:
    if key not in standard:
        return FREE
    if key == "contents":
        return CONTENTS
    return ID if key in ID_KEYS else NUMBER if key in NUMERIC_KEYS else FREE


def _path(parent: str, key: str | None) -> str:
    """Where a value is: `parent.key`, or `parent[]` for a list's item (key None). Built only
    for what is dropped, and once per object or list walked into."""
    return parent + "[]" if key is None else f"{parent}.{key}"


def _value(value: Any, role: int, parent: str, key: str | None, walk: _Walk, depth: int) -> Any:
    """The value as it may be sent, or _DROP (recorded in walk.drops)."""
    if isinstance(value, str):
        if value.startswith("http") and (value.startswith("http://") or value.startswith("https://")):
            url = screen_url(value, _path(parent, key), walk)
            return _DROP if url is None else url
        reason = text_reason(value, walk, role == ID)
    elif isinstance(value, bool) or isinstance(value, float) or value is None:  # noqa: SIM101
        return value
    elif isinstance(value, int):
        if role == NUMBER:
            return value
        reason = text_reason(str(value), walk, role == ID)
    elif depth >= MAX_DEPTH:
        reason = "too_deep"
    elif is_mapping(value):
        standard = CONTENT_KEYS if role == CONTENTS else NO_KEYS
        return _object(value, standard, _path(parent, key), walk, depth + 1)
    elif isinstance(value, list):
        where = _path(parent, key)
        items = []
        build = walk.build
        for item in value:  # a list's items have its role: content_ids' items are ids
            kept_item = _value(item, role, where, None, walk, depth + 1)
            if build and kept_item is not _DROP:
                items.append(kept_item)
        return items
    else:
        return value
    if reason is None:
        return value
    walk.drops.append((_path(parent, key), reason))
    return _DROP


def _object(
    obj: Mapping[str, Any], standard: frozenset[str], where: str, walk: _Walk, depth: int
) -> dict[str, Any]:
    build = walk.build
    out: dict[str, Any] = {} if build else _NOT_BUILT
    allowed = walk.allowed
    items: dict[Any, Any] = obj if isinstance(obj, dict) else dict(obj)
    for key, value in items.items():
        if not isinstance(key, str):
            continue  # JSON and Avro have none
        if key in allowed:
            if build:
                out[key] = value
            continue
        if key not in standard:
            if _name_reason(key):
                walk.drops.append((f"{where}.{key}", "name"))
                continue
            reason = text_reason(key, walk)
            if reason is not None:
                walk.drops.append((f"{where}.<key>", reason))  # a name that is an address itself
                continue
        kept = _value(value, _role(key, standard), where, key, walk, depth)
        if build and kept is not _DROP:
            out[key] = kept
    return out


def _screened(event: ServerEvent, walk: _Walk) -> tuple[Any, Any]:
    """custom_data and event_source_url as they may be sent (None: no URL), once walked."""
    custom = event.get("custom_data")
    screened_custom = _object(custom, STANDARD_KEYS, "custom_data", walk, 0) if is_mapping(custom) else custom
    url = event.get("event_source_url")
    return screened_custom, screen_url(url, "event_source_url", walk) if isinstance(url, str) else url


def screen_event(event: ServerEvent, screen: Screen) -> tuple[ServerEvent, tuple[Drop, ...]]:
    """The event as it may be sent, and what was dropped from it. The event itself is returned
    when nothing was dropped, else a copy."""
    walk = _walk_for(event, screen)
    _screened(event, walk)
    if not walk.drops:
        return event, ()
    walk.build, walk.drops = True, []
    screened_custom, screened_url = _screened(event, walk)
    out = dict(event)
    if "custom_data" in event:
        out["custom_data"] = screened_custom
    if screened_url is None:
        out.pop("event_source_url", None)
    else:
        out["event_source_url"] = screened_url
    return out, tuple(walk.drops)


def clear_caches() -> None:
    """Forget every value seen, here and in normalize.py: what a new customer (with a new order
    id) finds in no cache. Property names and the country hashes stay: they do not depend on the
    customer. For measuring new customers (bench/transform.py --customers distinct) and tests."""
    normalize.clear_caches()
    _JUDGED.clear()
    _has_phone.cache_clear()
