"""Phone numbers to Meta's ``ph`` form (E.164 digits without the ``+``), as libphonenumber
reads them, without its full parse on the common shapes.

libphonenumber's parse and validation cost ~30 µs per new number. Numbers written with ASCII
digits and only spaces, dashes, dots and parentheses around them (optionally after ``+`` or
``00``) are read here by libphonenumber's own steps on the digits alone (international prefix,
country code, national prefix, length and pattern checks), with its own metadata and patterns
compiled once per region. Everything else, and every step whose outcome this module cannot
tell for sure (a non-geographic country code, a number starting ``+0``...), goes to
libphonenumber itself. tests/core/test_phone.py checks that both give the same result.
"""

from __future__ import annotations

import re
from typing import Any, Final

import phonenumbers
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

_UNSURE: Final = ""  # what the fast path returns when libphonenumber must decide (never a result)
_SEPARATORS: Final = (" ", "-", ".", "(", ")")
_MAX_FAST_LENGTH: Final = 40  # longer inputs take the library's path (it refuses beyond 250)
_MIN_NSN, _MAX_NSN = 2, 17  # libphonenumber's bounds on a national significant number
_NON_DIGIT: Final = re.compile(r"[^0-9]")
_E164: Final = phonenumbers.PhoneNumberFormat.E164

# libphonenumber's length verdicts (phonenumberutil.ValidationResult) that this module needs
_POSSIBLE, _LOCAL_ONLY, _TOO_SHORT, _INVALID_LENGTH, _TOO_LONG = 0, 1, 2, 3, 5
_SHORT_VERDICTS: Final = (_TOO_SHORT, _LOCAL_ONLY, _INVALID_LENGTH)


class _Desc:
    """One PhoneNumberDesc: its possible lengths (empty: any) and its compiled pattern."""

    __slots__ = ("lengths", "pattern")

    def __init__(self, lengths: tuple[int, ...], pattern: re.Pattern[str]) -> None:
        self.lengths = lengths
        self.pattern = pattern

    def matches(self, number: str) -> bool:
        if self.lengths and len(number) not in self.lengths:
            return False
        return self.pattern.fullmatch(number) is not None


class _Plan:
    """What the fast path needs of one region's metadata, compiled once."""

    __slots__ = (
        "code",
        "country_code",
        "general",
        "idd",
        "leading_digits",
        "lengths",
        "local_lengths",
        "prefix",
        "transform",
        "types",
    )

    def __init__(self, md: Any) -> None:
        self.country_code: int = int(md.country_code)
        self.code: str = str(self.country_code)
        general = md.general_desc
        self.general: re.Pattern[str] | None = _pattern(general)
        self.lengths: tuple[int, ...] = tuple(general.possible_length or ())
        self.local_lengths: tuple[int, ...] = tuple(general.possible_length_local_only or ())
        self.idd: re.Pattern[str] | None = (
            re.compile(md.international_prefix) if md.international_prefix else None
        )
        self.prefix: re.Pattern[str] | None = (
            re.compile(md.national_prefix_for_parsing) if md.national_prefix_for_parsing else None
        )
        self.transform: str = md.national_prefix_transform_rule or ""
        self.leading_digits: re.Pattern[str] | None = (
            re.compile(md.leading_digits) if md.leading_digits else None
        )
        # The types libphonenumber's number type tries; a number is valid when it matches the
        # general description and one of them. The mobile pattern is not tried when the
        # metadata says it equals the fixed-line one.
        descs = [
            md.fixed_line,
            md.mobile,
            md.toll_free,
            md.premium_rate,
            md.shared_cost,
            md.voip,
            md.personal_number,
            md.pager,
            md.uan,
            md.voicemail,
        ]
        if md.same_mobile_and_fixed_line_pattern:
            descs.pop(1)
        self.types: list[_Desc] = []
        for desc in descs:
            pattern = _pattern(desc)
            if pattern is not None:
                self.types.append(_Desc(tuple(desc.possible_length or ()), pattern))

    def general_match(self, number: str) -> bool:
        return self.general is not None and self.general.fullmatch(number) is not None

    def is_valid(self, nsn: str) -> bool:
        """libphonenumber's number type is not UNKNOWN."""
        if not self.general_match(nsn) or (self.lengths and len(nsn) not in self.lengths):
            return False
        return any(desc.matches(nsn) for desc in self.types)

    def length_verdict(self, number: str) -> int:
        """libphonenumber's test of a number's length against the general description."""
        length = len(number)
        if length in self.local_lengths:
            return _LOCAL_ONLY
        if length == self.lengths[0]:
            return _POSSIBLE
        if length < self.lengths[0]:
            return _TOO_SHORT
        if length > self.lengths[-1]:
            return _TOO_LONG
        return _POSSIBLE if length in self.lengths[1:] else _INVALID_LENGTH


def _pattern(desc: Any) -> re.Pattern[str] | None:
    if desc is None or not desc.national_number_pattern:
        return None
    return re.compile(desc.national_number_pattern)


_plans: Final[dict[str, _Plan | None]] = {}


def _plan(region: str) -> _Plan | None:
    """The plan of a region with metadata whose lengths the fast path can use, else None."""
    if region in _plans:
        return _plans[region]
    md = PhoneMetadata.metadata_for_region(region, None) if region != "001" else None
    plan = _Plan(md) if md is not None and md.general_desc is not None else None
    if plan is not None and not plan.lengths:
        plan = None
    _plans[region] = plan
    return plan


def phone_e164(value: str, region: str) -> str | None:
    """``value`` as E.164 digits without ``+``, or None when it is not a valid number.
    ``region`` (ISO alpha-2, upper case) is where a number without a country code is read."""
    fast = _fast(value, region)
    return _library(value, region) if fast == _UNSURE else fast


def _fast(value: str, region: str) -> str | None:
    """:func:`_library`'s result on the common shapes, or _UNSURE."""
    text = value.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    plus = text.startswith("+")
    body = text[1:] if plus else text
    if len(body) > _MAX_FAST_LENGTH:
        return _UNSURE
    digits = body
    for separator in _SEPARATORS:  # str.replace: much faster than str.translate on short text
        if separator in digits:
            digits = digits.replace(separator, "")
    if len(digits) < 3 or not digits.isascii() or not digits.isdigit():
        return _UNSURE
    plan = _plan(region)
    if plan is None:
        return _UNSURE
    # The candidates of _library, in its order.
    if not plus and digits.startswith(plan.code):
        found = _parse_valid(True, digits, region, plan)
        if found is not None:
            return found
    found = _parse_valid(plus, digits, region, plan)
    if found is not None or plus:
        return found
    return _parse_valid(True, digits, region, plan)


def _parse_valid(plus: bool, digits: str, region: str, plan: _Plan) -> str | None:
    """libphonenumber's parse of ``digits`` (after a ``+`` if ``plus``) in ``region`` then its
    validity check: the E.164 digits if valid, None if the parse fails or the number is invalid,
    _UNSURE when this cannot tell."""
    code = 0
    national = digits
    if plus:
        code, national = _country_code(digits)
        if code == 0:  # libphonenumber then retries without the plus
            return _UNSURE
    else:
        idd_end = _idd_end(digits, plan)
        if idd_end >= 0:
            if len(digits) - idd_end <= _MIN_NSN:
                return None
            code, national = _country_code(digits[idd_end:])
            if code == 0:
                return None
        elif digits.startswith(plan.code):
            rest = _strip_national_prefix(digits[len(plan.code) :], plan)
            if rest == _UNSURE:
                return _UNSURE
            if (not plan.general_match(digits) and plan.general_match(rest)) or plan.length_verdict(
                digits
            ) == _TOO_LONG:
                code, national = plan.country_code, rest
    if code != 0:
        regions = COUNTRY_CODE_TO_REGION_CODE.get(code, ())
        if not regions or "001" in regions:
            return _UNSURE
        if regions[0] != region:
            found = _plan(regions[0])
            if found is None:
                return _UNSURE
            plan = found
    else:
        code = plan.country_code
    if len(national) < _MIN_NSN:
        return None
    stripped = _strip_national_prefix(national, plan)
    if stripped == _UNSURE:
        return _UNSURE
    if plan.length_verdict(stripped) not in _SHORT_VERDICTS:
        national = stripped
    if not _MIN_NSN <= len(national) <= _MAX_NSN:
        return None
    return _valid(code, national)


def _country_code(digits: str) -> tuple[int, str]:
    """The country code the digits start with and the rest; (0, digits) when none."""
    if not digits or digits[0] == "0":
        return 0, digits
    for size in (1, 2, 3):
        if size <= len(digits) and int(digits[:size]) in COUNTRY_CODE_TO_REGION_CODE:
            return int(digits[:size]), digits[size:]
    return 0, digits


def _idd_end(digits: str, plan: _Plan) -> int:
    """Where the region's international prefix ends at the start of ``digits``, or -1 (also
    when a 0 follows it: country codes never start with 0)."""
    if plan.idd is None:
        return -1
    match = plan.idd.match(digits)
    if match is None:
        return -1
    end = match.end()
    if end < len(digits) and digits[end] == "0":
        return -1
    return end


def _strip_national_prefix(number: str, plan: _Plan) -> str:
    """libphonenumber's removal of a national (trunk) prefix and carrier code, or _UNSURE."""
    if plan.prefix is None:
        return number
    match = plan.prefix.match(number)
    if match is None:
        return number
    groups = match.groups()
    viable = plan.general_match(number)
    if not plan.transform or (groups and groups[-1] is None):
        rest = number[match.end() :]
    elif groups:
        rest = plan.prefix.sub(plan.transform, number, count=1)
    else:
        return _UNSURE  # a transform rule without a group: libphonenumber would fail
    if viable and not plan.general_match(rest):
        return number
    return rest


def _valid(code: int, nsn: str) -> str | None:
    """E.164 digits when libphonenumber finds the number valid (in the region its country code
    and leading digits give), else None."""
    regions = COUNTRY_CODE_TO_REGION_CODE[code]
    found: _Plan | None = None
    if len(regions) == 1:
        found = _plan(regions[0])
        if found is None:
            return _UNSURE
    else:
        for region in regions:
            plan = _plan(region)
            if plan is None:
                return _UNSURE
            if plan.leading_digits is not None:
                if plan.leading_digits.match(nsn):
                    found = plan
                    break
            elif plan.is_valid(nsn):
                return str(code) + nsn
    if found is None or not found.is_valid(nsn):
        return None
    return str(code) + nsn


def _library(value: str, region: str) -> str | None:
    """The reference: libphonenumber's parse and validation of the candidate readings."""
    text = value.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    digits = _NON_DIGIT.sub("", text)
    if not digits:
        return None
    candidates: list[str] = []
    if not text.startswith("+"):
        # Digits that already begin with the region's country code: prefer that reading, so that
        # normalising an output again gives the same output.
        code = str(phonenumbers.country_code_for_region(region))
        if code != "0" and digits.startswith(code):
            candidates.append("+" + digits)
    candidates.append(text)
    if not text.startswith("+"):
        candidates.append("+" + digits)  # e.g. "442079460958" in a US event
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return str(phonenumbers.format_number(number, _E164)).lstrip("+")
    return None
