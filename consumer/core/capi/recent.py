"""A bounded cache for the per-record path: what was set or found lately, at most `size` entries.

Two generations of up to ``size // 2`` entries each. `set` writes into the current one; when it
is full it becomes the previous one and the old previous one is dropped whole. `get` looks in
both and moves a hit from the previous generation into the current one, so a value still in use
stays. Every call is O(1). (A dict trimmed by deleting its first key, the obvious alternative,
is not: each such delete leaves a hole that the next `next(iter(d))` walks over again, ~17 µs a
new entry at 16,384 entries once the cache is full.)
"""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")


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
