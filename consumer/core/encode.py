"""One event to its JSON bytes, within the bounds Meta and the batch allow: the last step every
dialect's output goes through before a batch, so one bad value costs only its own record.

Pure: no I/O, no clock. A value outside the bounds raises `Rejected` with its own reason code
(README, "Dead letters"): `too_deep`, `number_out_of_range`, `event_too_large`, `invalid_payload`.
The common case costs one `orjson.dumps` and a walk of the event's objects and arrays (not its
scalars) that stops at the depth bound; the exact walk runs only when the encoding failed or the
event is nested too deep.
"""

from __future__ import annotations

from typing import Any

import orjson

from consumer.errors import Rejected

MAX_DEPTH = 32  # objects and arrays inside one event, the event itself being level 1
INT_MIN = -(2**63)  # orjson encodes i64 and u64
INT_MAX = 2**64 - 1
# Limited Data Use codes are small: 0/1 for the country, 0 or 1000-1013 for the state
# (docs/meta-api.md). Anything larger is a producer error, not a code.
LDU_FIELDS = ("data_processing_options_country", "data_processing_options_state")
LDU_MAX = 9999
# What a request adds around its events: {"data":[...]} plus partner_agent, appsecret_proof,
# upload_tag and test_event_code. An event must fit a batch's max_bytes with that around it.
ENVELOPE_BYTES = 1024


def encode_event(event: dict[str, Any], max_bytes: int) -> bytes:
    """The event as JSON; raises `Rejected` when it cannot be sent in a batch of `max_bytes`."""
    for name in LDU_FIELDS:
        code = event.get(name)
        if code is not None and not _is_ldu_code(code):
            raise Rejected("number_out_of_range", f"{name} is not a Limited Data Use code")
    try:
        data = orjson.dumps(event)
    except TypeError:  # orjson.JSONEncodeError: too deep, an int beyond 64 bits, a bad type
        check_bounds(event)
        raise Rejected("invalid_payload", "the event cannot be encoded as JSON") from None
    if nests_deeper(event, 1):  # the exact walk names the bound
        check_bounds(event)
    if len(data) > max_bytes - ENVELOPE_BYTES:
        raise Rejected(
            "event_too_large",
            f"the event's JSON is {len(data)} bytes, more than a "
            f"request of batching.max_bytes ({max_bytes}) can carry",
        )
    return data


def _is_ldu_code(code: Any) -> bool:
    return isinstance(code, int) and not isinstance(code, bool) and 0 <= code <= LDU_MAX


def nests_deeper(value: Any, depth: int) -> bool:
    """Whether objects and arrays nest more than MAX_DEPTH levels, `value` being at level
    `depth`. It looks only into objects and arrays, and recurses at most MAX_DEPTH + 1 calls deep."""
    if isinstance(value, dict):
        return _object_nests_deeper(value, depth)
    if isinstance(value, list):
        return _array_nests_deeper(value, depth)
    if isinstance(value, tuple):
        return _array_nests_deeper(list(value), depth)
    return False


# One function per container type: compiled, a typed loop is several times cheaper than one over
# a union of them, and this runs for every event.
def _object_nests_deeper(value: dict[Any, Any], depth: int) -> bool:
    if depth > MAX_DEPTH:
        return True
    for item in value.values():  # noqa: SIM110 - compiled: a plain loop makes no generator
        if not isinstance(item, str) and nests_deeper(item, depth + 1):  # text: most values
            return True
    return False


def _array_nests_deeper(value: list[Any], depth: int) -> bool:
    if depth > MAX_DEPTH:
        return True
    for item in value:  # noqa: SIM110 - compiled: a plain loop makes no generator
        if not isinstance(item, str) and nests_deeper(item, depth + 1):  # text: most values
            return True
    return False


def check_bounds(value: Any) -> None:
    """Raises `Rejected` for nesting deeper than MAX_DEPTH or an integer orjson cannot encode.
    Iterative, so a value nested far deeper than Python's recursion limit is no danger."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[Any] = list(item.values())
        elif isinstance(item, list) or isinstance(item, tuple):  # noqa: SIM101 - compiled: no union object
            children = list(item)
        else:
            if isinstance(item, int) and not isinstance(item, bool) and not (INT_MIN <= item <= INT_MAX):
                raise Rejected("number_out_of_range", "an integer does not fit 64 bits")
            continue
        if depth > MAX_DEPTH:
            raise Rejected("too_deep", f"objects nested deeper than {MAX_DEPTH} levels")
        for child in children:
            stack.append((child, depth + 1))
