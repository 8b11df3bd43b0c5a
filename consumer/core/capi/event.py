"""The Conversions API server event (docs/dialects.md#output) and what a dialect hands to the pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeGuard

import orjson

from consumer.core.capi.digest import sha256_hex
from consumer.errors import Rejected

ServerEvent = dict[str, Any]


def is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, fast for what decoded records hold: compiled, the ABC
    check costs ~700 instructions, so dicts, None, text, numbers and lists are decided first."""
    if isinstance(value, dict):
        return True
    if value is None or isinstance(value, str) or isinstance(value, list):  # noqa: SIM101
        return False
    if isinstance(value, int) or isinstance(value, float):  # noqa: SIM101 - compiled: no union object
        return False
    return isinstance(value, Mapping)


class Output(NamedTuple):
    """One event for one event set. `upload_tag` is request-level, so part of the batch key."""

    event_set_id: str
    event: ServerEvent
    upload_tag: str | None = None


@dataclass(frozen=True, slots=True)
class RecordContext:
    """What a dialect may know about the Kafka record besides its payload."""

    timestamp_ms: int  # the Kafka record's timestamp
    payload: Mapping[str, Any]

    def digest(self) -> str:
        """A stable id for the record: sha256 of its canonical JSON, the same whether it came
        schemaless, through the registry, from `fboc preview`, or from a replay."""
        present = {k: v for k, v in self.payload.items() if v is not None}  # Avro fills in nulls
        try:
            canonical = orjson.dumps(present, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # nested deeper than JSON allows: no stable id
            raise Rejected(
                "invalid_payload", "the record cannot be encoded as JSON to derive an event id"
            ) from None
        return sha256_hex(canonical)


def is_empty(value: Any) -> bool:
    """None, "", [] or {} (any empty mapping): what Meta must never see. Decided type by type:
    compiled, `value == ""` on a value of any type is a rich comparison."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value
    if isinstance(value, list) or isinstance(value, dict):  # noqa: SIM101 - compiled: no union object
        return not value
    return is_mapping(value) and not value


def compact(data: dict[str, Any]) -> dict[str, Any]:
    """Drop keys whose value is empty: Meta must never see empty strings or lists."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not is_empty(value):
            out[key] = value
    return out


def parse_time_ms(value: Any) -> int | None:
    """Unix seconds/milliseconds or ISO 8601 (naive = UTC) → unix milliseconds; None if not a time."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or isinstance(value, float):  # noqa: SIM101 - compiled: no union object
        try:
            number = float(value)
            return int(number if number > 1e11 else number * 1000)
        except (OverflowError, ValueError):  # beyond a float's range, inf or nan
            return None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
            return parse_time_ms(int(text))
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    return None
