"""Source dialects: pure functions from a decoded record to Conversions API events.

Adding a dialect is one module exposing `DIALECT` plus one line in `_MODULES`. A dialect whose
records are parts of one event (amperity: the rows of an order) also gives a `Grouping`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from consumer.config.settings import DestinationSettings
from consumer.core.capi.event import Output, RecordContext
from consumer.errors import RecordOutcome

Transform = Callable[[Mapping[str, Any], RecordContext, DestinationSettings, int], list[Output]]
PreviewResult = list[tuple[int, list[Output] | RecordOutcome]]


class Grouper(Protocol):
    """Holds parts until their group is complete; pure, the caller passes the times in.
    A group is (parts, tokens, (topic, partition), first offset, last offset)."""

    def seen(self, tp: tuple[str, int], offset: int, time_ms: int | None, now_ms: float) -> None: ...
    def add(
        self,
        tp: tuple[str, int],
        key: tuple[str, str],
        part: Any,
        token: Any,
        offset: int,
        time_ms: int | None,
    ) -> None: ...
    def due(self, now_ms: float) -> Sequence[tuple[list[Any], list[Any], tuple[str, int], int, int]]: ...
    def release(self, tps: list[tuple[str, int]]) -> int: ...
    def open_rows(self, tp: tuple[str, int] | None = None) -> int: ...


@dataclass(frozen=True, slots=True)
class Grouping:
    check: Callable[[Mapping[str, Any], RecordContext, DestinationSettings, int], Any]  # → a part
    key: Callable[[Any], str]  # a part's group (an order id)
    emit: Callable[[Sequence[Any], DestinationSettings, int], list[Output]]
    preview: Callable[[Sequence[tuple[int, Mapping[str, Any]]], DestinationSettings, int], PreviewResult]
    grouper: Callable[[int], Grouper]  # window_ms → a new grouper


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    transform: Transform  # (payload, record context, destination, now unix s) → outputs
    default_unmapped: str = "other"
    default_match_policy: str = "meta_baseline"
    grouping: Grouping | None = None


_MODULES = {
    "segment": "segment",
    "rudderstack": "segment",
    "amperity": "amperity",
    "mparticle": "mparticle",
    "commandersact": "commandersact",
}


def get_dialect(name: str) -> Dialect:
    """The dialect, its events screened and checked on the way out (dialects/screening.py)."""
    from consumer.core.dialects.screening import screened

    module = importlib.import_module(f"consumer.core.dialects.{_MODULES[name]}")
    dialect: Dialect = module.DIALECT
    return screened(dialect)
