import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.capi.event import compact, is_empty, is_mapping
from consumer.core.dialects import common
from consumer.core.dialects.common import number, quantity


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12.5, 12.5),
        (3, 3.0),
        (-0.0, 0.0),
        (" 4.5 ", 4.5),
        ("1e3", 1000.0),
        ("1_0", 10.0),  # as Python's float() reads it
        (True, None),
        (False, None),
        (None, None),
        ("", None),
        ("abc", None),
        ("nan", None),
        ("inf", None),
        (math.nan, None),
        (-math.inf, None),
        (10**400, None),  # beyond a float
        ("1e400", None),
        ([1], None),
        ({"a": 1}, None),
        (b"1", None),
    ],
)
def test_number_takes_finite_numbers_and_numeric_text_only(value: Any, expected: float | None) -> None:
    found = number(value)
    assert found == expected
    assert found is None or type(found) is float


def test_quantity_stays_within_exact_integers() -> None:
    assert quantity(2**53 - 1) == float(2**53 - 1)
    assert quantity(2**53) is None
    assert quantity("-9007199254740993") is None


@given(st.integers(min_value=-62_135_596_800, max_value=253_402_300_799))  # years 1 to 9999
def test_the_year_of_a_unix_time_is_datetimes(seconds: int) -> None:
    assert common._year(seconds) == datetime.fromtimestamp(seconds, UTC).year


@pytest.mark.parametrize(
    ("seconds", "year"),
    [
        (0, 1970),
        (-1, 1969),
        (951_782_399, 2000),
        (951_868_800, 2000),
        (1_767_225_599, 2025),
        (1_767_225_600, 2026),
    ],
)
def test_the_year_turns_at_midnight_utc_on_new_years_day(seconds: int, year: int) -> None:
    assert common._year(seconds) == year


class _Record(Mapping[str, int]):  # a Mapping that is not a dict
    def __getitem__(self, key: str) -> int:
        return {"a": 1}[key]

    def __iter__(self) -> Iterator[str]:
        return iter(["a"])

    def __len__(self) -> int:
        return 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, True),
        ({"a": 1}, True),
        (MappingProxyType({"a": 1}), True),
        (_Record(), True),
        (None, False),
        ("a", False),
        ([{"a": 1}], False),
        (1, False),
        (True, False),
        (1.5, False),
        ((("a", 1),), False),
        ({"a"}, False),
        (b"a", False),
    ],
)
def test_is_mapping_is_isinstance_mapping(value: object, expected: bool) -> None:
    assert is_mapping(value) is expected
    assert isinstance(value, Mapping) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, True),
        ("", True),
        ([], True),
        ({}, True),
        (MappingProxyType({}), True),
        (" ", False),
        ("a", False),
        ([None], False),
        ({"a": None}, False),
        (MappingProxyType({"a": 1}), False),
        (_Record(), False),
        (0, False),
        (0.0, False),
        (False, False),
        ((), False),  # a tuple is not a JSON array
        (set(), False),
    ],
)
def test_is_empty_is_none_or_an_empty_text_list_or_mapping(value: object, expected: bool) -> None:
    assert is_empty(value) is expected
    assert (value is None or value == "" or value == [] or value == {}) is expected  # as it was


def test_compact_drops_only_the_empty_values_in_order() -> None:
    data = {"a": 0, "b": "", "c": [], "d": {}, "e": None, "f": False, "g": "x", "h": [0]}
    assert list(compact(data).items()) == [("a", 0), ("f", False), ("g", "x"), ("h", [0])]
