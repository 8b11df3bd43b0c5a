"""Bounded caches for the per-record path: `Recent`, what was set or found lately, and `Memo`,
what is built once for each of a few keys.

`Recent` holds at most `size` entries, in two generations of up to ``size // 2`` each. `set`
writes into the current one; when it is full it becomes the previous one and the old previous
one is dropped whole. `get` looks in both and moves a hit from the previous generation into the
current one, so a value still in use stays. Every call is O(1). (A dict trimmed by deleting its
first key, the obvious alternative, is not: each such delete leaves a hole that the next
`next(iter(d))` walks over again, ~17 µs a new entry at 16,384 entries once the cache is full.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

MAX_CACHED_LENGTH: Final = 256  # longer keys are checked each time, never kept in a cache
MAX_SETTINGS: Final = 64  # a Memo's size for destination settings


class Recent(Generic[V]):
    def __init__(self, size: int) -> None:
        self.half = max(1, size // 2)
        self.current: dict[str, V] = {}
        self.previous: dict[str, V] = {}

    def get(self, key: str) -> V | None:
        value = self.current.get(key)
        if value is None and self.previous:
            value = self.previous.pop(key, None)
            if value is not None:
                self.set(key, value)
        return value

    def set(self, key: str, value: V) -> None:
        current = self.current
        if len(current) >= self.half and key not in current:
            self.previous = current
            self.current = current = {}
        current[key] = value

    def clear(self) -> None:
        self.current = {}
        self.previous = {}

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)


class Memo(Generic[K, V]):
    """What is built once for each of a few keys (a destination's settings, a region): `get`
    builds a missing one with `build`. At most `size` are kept; past that, it starts again
    (a stream of odd keys costs rebuilding, never memory)."""

    def __init__(self, size: int, build: Callable[[K], V]) -> None:
        self.size = size
        self.build = build
        self.table: dict[K, V] = {}

    def get(self, key: K) -> V:
        found = self.table.get(key)
        if found is None:
            if len(self.table) >= self.size:
                self.table.clear()
            found = self.table[key] = self.build(key)
        return found

    def values(self) -> Iterable[V]:
        return self.table.values()

    def clear(self) -> None:
        self.table.clear()

    def __len__(self) -> int:
        return len(self.table)
