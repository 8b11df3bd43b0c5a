import math
from typing import Any

import pytest

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
