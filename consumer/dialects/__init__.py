"""Source dialects: pure functions from a decoded record to Conversions API events.

Adding a dialect is one module exposing `DIALECT` plus one line in `_MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from consumer.capi.event import Output, RecordContext
from consumer.config import DestinationSettings

Transform = Callable[[Mapping[str, Any], RecordContext, DestinationSettings, int], list[Output]]


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    transform: Transform  # (payload, record context, destination, now unix s) → outputs
    default_unmapped: str = "other"
    default_match_policy: str = "meta_baseline"


_MODULES = {
    "segment": "segment",
    "rudderstack": "segment",
}


def get_dialect(name: str) -> Dialect:
    module = importlib.import_module(f"consumer.dialects.{_MODULES[name]}")
    dialect: Dialect = module.DIALECT
    return dialect


def available() -> list[str]:
    return sorted(_MODULES)
