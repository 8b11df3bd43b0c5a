"""Encoding one event within the bounds a batch and Meta allow (consumer/core/encode.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.encode import ENVELOPE_BYTES, MAX_DEPTH, check_bounds, encode_event, nests_deeper
from consumer.errors import Rejected

MAX_BYTES = 2_000_000


def nested(depth: int) -> dict[str, Any]:
    """An event whose custom_data makes `depth` levels of objects and arrays in all."""
    value: Any = 1
    for i in range(depth - 1):
        value = {"k": value} if i % 2 else [value]
    return {"event_name": "Purchase", "custom_data": value}


def reason(event: dict[str, Any], max_bytes: int = MAX_BYTES) -> str:
    with pytest.raises(Rejected) as info:
        encode_event(event, max_bytes)
    return info.value.reason


def test_an_ordinary_event_is_its_orjson_encoding() -> None:
    event = {
        "event_name": "Purchase",
        "event_time": 1,
        "user_data": {"em": ["a" * 64]},
        "custom_data": {"value": 1.5, "contents": [{"id": "x", "quantity": 2}] * 40},
        "data_processing_options": ["LDU"],
        "data_processing_options_country": 1,
        "data_processing_options_state": 1000,
    }
    assert encode_event(event, MAX_BYTES) == orjson.dumps(event)


def test_depth_is_bounded_at_max_depth_levels() -> None:
    assert encode_event(nested(MAX_DEPTH), MAX_BYTES) == orjson.dumps(nested(MAX_DEPTH))
    assert reason(nested(MAX_DEPTH + 1)) == "too_deep"


@pytest.mark.parametrize("depth", [300, 5000])  # past orjson's own limit, past Python's stack
def test_nesting_past_every_limit_is_too_deep(depth: int) -> None:
    assert reason(nested(depth)) == "too_deep"


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, int(1e300)])
def test_integers_beyond_64_bits_are_out_of_range(number: int) -> None:
    assert reason({"event_name": "Purchase", "custom_data": {"n": [number]}}) == "number_out_of_range"


def test_integers_at_the_64_bit_edges_are_encoded() -> None:
    event = {"event_name": "Purchase", "custom_data": {"a": 2**64 - 1, "b": -(2**63)}}
    assert encode_event(event, MAX_BYTES) == orjson.dumps(event)


@pytest.mark.parametrize("code", [int(1e300), 10**6, -1, 1.0, "1", True])
@pytest.mark.parametrize("field", ["data_processing_options_country", "data_processing_options_state"])
def test_limited_data_use_codes_must_be_small_integers(field: str, code: Any) -> None:
    assert (
        reason({"event_name": "Purchase", "data_processing_options": ["LDU"], field: code})
        == "number_out_of_range"
    )


def test_an_event_larger_than_a_request_can_carry_is_too_large() -> None:
    limit = 10_000 - ENVELOPE_BYTES
    custom = {"s": ""}
    fits: dict[str, Any] = {"event_name": "Purchase", "custom_data": custom}
    custom["s"] = "x" * (limit - len(orjson.dumps(fits)))
    assert len(encode_event(fits, 10_000)) == limit
    custom["s"] += "x"
    assert reason(fits, 10_000) == "event_too_large"


def test_values_json_cannot_hold_are_invalid_payload() -> None:
    assert reason({"event_name": "Purchase", "custom_data": {1: "int key"}}) == "invalid_payload"
    assert reason({"event_name": "Purchase", "custom_data": {"x": object()}}) == "invalid_payload"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=60,
)


def depth_of(value: Any) -> int:
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    if children is None:
        return 0
    return 1 + max((depth_of(c) for c in children), default=0)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=60), JSON)
def test_encode_either_returns_the_json_or_names_the_bound_it_broke(depth: int, leaf: Any) -> None:
    value: Any = leaf
    for _ in range(depth):
        value = [value]
    event = {"event_name": "Purchase", "custom_data": {"v": value}}
    try:
        data: bytes | None = encode_event(event, MAX_BYTES)
        why = None
    except Rejected as exc:
        data, why = None, exc.reason
    ints = [n for n in _leaves(event) if isinstance(n, int) and not isinstance(n, bool)]
    too_deep = depth_of(event) > MAX_DEPTH
    out_of_range = any(not -(2**63) <= n < 2**64 for n in ints)
    if data is not None:
        assert not too_deep
        assert not out_of_range
        assert orjson.loads(data) == orjson.loads(orjson.dumps(event))
    else:
        assert (why == "too_deep" and too_deep) or (why == "number_out_of_range" and out_of_range)


def _wrapped(leaf: Any, kinds: list[bool]) -> Any:
    value = leaf
    for as_object in kinds:
        value = {"k": value, "s": "{[{["} if as_object else ["[[{{", value, 1]
    return value


KINDS = st.lists(st.booleans(), min_size=40, max_size=40)  # object or array, level by level


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 40), KINDS, st.integers(0, 40), KINDS, JSON)
def test_nests_deeper_is_depth_past_max_depth(
    left: int, left_kinds: list[bool], right: int, right_kinds: list[bool], leaf: Any
) -> None:
    """Two branches of generated depths, brackets in strings beside them: only the objects and
    arrays count, and the deeper branch decides, wherever it is."""
    event = {
        "event_name": "Purchase",
        "a": _wrapped(leaf, left_kinds[:left]),
        "b": [_wrapped("]]", right_kinds[:right])],
    }
    assert nests_deeper(event, 1) == (depth_of(event) > MAX_DEPTH)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


def test_check_bounds_walks_without_recursion() -> None:
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    with pytest.raises(Rejected) as info:
        check_bounds(value)
    assert info.value.reason == "too_deep"
