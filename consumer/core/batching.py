"""Micro-batches per (destination, event set, upload_tag) (docs/design.md#delivery).

Pure bookkeeping: `add` returns a batch when it is full, `due` returns batches whose linger time
has passed, `drain` returns everything (shutdown, revocation). Events arrive already JSON-encoded
so a batch never copies or re-encodes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


class BatchKey(NamedTuple):
    destination: str
    event_set_id: str
    upload_tag: str | None


class Batch(Generic[T]):
    """One event set's open batch: `owners[i]` is the record of `events[i]`."""

    def __init__(self, key: BatchKey, opened_at: float) -> None:
        self.key = key
        self.opened_at = opened_at
        self.events: list[bytes] = []
        self.owners: list[T] = []
        self.size = 0

    def __len__(self) -> int:
        return len(self.events)


class Batcher(Generic[T]):
    def __init__(self, max_events: int, max_bytes: int, linger_s: float) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self._open: dict[BatchKey, Batch[T]] = {}

    def add(self, key: BatchKey, event: bytes, owner: T, now: float) -> list[Batch[T]]:
        """Add one encoded event; returns the batches this add closed (usually none)."""
        closed: list[Batch[T]] = []
        batch = self._open.get(key)
        if batch is not None and batch.size + len(event) + 1 > self.max_bytes:
            closed.append(self._open.pop(key))
            batch = None
        if batch is None:
            batch = self._open[key] = Batch(key, now)
        batch.events.append(event)
        batch.owners.append(owner)
        batch.size += len(event) + 1
        if len(batch.events) >= self.max_events:
            closed.append(self._open.pop(key))
        return closed

    def due(self, now: float, room: Mapping[str, int] | None = None) -> list[Batch[T]]:
        """Batches open for linger_s or longer, oldest first. With `room` (free request slots
        per destination), at most that many of a destination's: the others stay open and keep
        filling, since sent now they would only wait for a slot, part full."""
        ready = sorted(
            (b for b in self._open.values() if now - b.opened_at >= self.linger_s), key=lambda b: b.opened_at
        )
        if room is not None:
            left = dict(room)
            kept = []
            for batch in ready:
                if left.get(batch.key.destination, 0) > 0:
                    left[batch.key.destination] -= 1
                    kept.append(batch)
            ready = kept
        return [self._open.pop(b.key) for b in ready]

    def drain(self) -> list[Batch[T]]:
        batches = list(self._open.values())
        self._open.clear()
        return batches

    def __len__(self) -> int:
        return sum(len(b) for b in self._open.values())
