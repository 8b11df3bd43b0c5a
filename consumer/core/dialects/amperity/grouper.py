"""Grouping rows by order, decided by the records alone (docs/dialects.md#amperity).

Pure: the caller passes each record's Kafka timestamp and offset, and a clock for the idle rule.
Per partition, in offset order:

- a row of order K starts a group when K has no open group; a later row of K joins it while its
  record time is within `window_ms` of the group's first row (and the group has fewer than
  `max_rows` rows), else it closes the group and starts the next one;
- any record of the partition (a row or not) whose time is past a group's first + window +
  `grace_ms` closes that group (a watermark in record time), and so does a record `max_span`
  offsets past the group's first row;
- the one rule that is not the records' own: a partition that has read nothing for window +
  grace of the caller's clock (`due`) closes its open groups.

A group's fate depends only on the records from its first row on, so a replay that starts at a
group boundary (consumer/core/offsets.py never commits inside a group) forms the same groups,
with the same rows, hence the same item_numbers: Meta drops the copies.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from consumer.core.dialects.amperity.rows import Row

T = TypeVar("T")
TopicPartition = tuple[str, int]
OrderKey = tuple[str, str]  # (destination name, order_id)

GRACE_MS = 1_000  # records of other producers may run this far ahead of an order's rows
MAX_ROWS = 1_000  # rows per group: a larger order is split into parts
MAX_SPAN = 10_000  # records of the partition from a group's first row to its last


class Group(NamedTuple, Generic[T]):
    """Rows to transform together, the caller's tokens for them, and where they lie: the group's
    first and last offset in its partition (the offset tracker keeps commits out of that span)."""

    rows: list[Row]
    tokens: list[T]
    tp: TopicPartition
    first: int
    last: int


@dataclass(slots=True)
class _Open(Generic[T]):
    time_ms: int | None  # the first row's record time (None: the record had none)
    first: int  # the first row's offset: the group's identity in the deadline heap
    low: int  # lowest and highest offset of its rows (a row retried after the schema
    high: int  # registry came back can come after rows with higher offsets)
    rows: list[Row] = field(default_factory=list)
    tokens: list[T] = field(default_factory=list)


@dataclass(slots=True)
class _Partition(Generic[T]):
    read_ms: float  # the caller's clock when the partition last read a record
    open: dict[OrderKey, _Open[T]] = field(default_factory=dict)  # by first offset (insertion)
    deadlines: list[tuple[int, int, OrderKey]] = field(default_factory=list)  # heap: (time, first, key)
    rows: int = 0  # rows in open groups


class OrderGrouper(Generic[T]):
    """Open groups per partition; closed ones wait in `due()` for the caller."""

    def __init__(
        self, window_ms: int, max_rows: int = MAX_ROWS, max_span: int = MAX_SPAN, grace_ms: int = GRACE_MS
    ) -> None:
        self.window_ms = max(0, window_ms)
        self.max_rows = max(1, max_rows)
        self.max_span = max(1, max_span)
        self.grace_ms = max(0, grace_ms)
        self._parts: dict[TopicPartition, _Partition[T]] = {}
        self._ready: list[Group[T]] = []
        self._ready_rows = 0

    def __len__(self) -> int:
        """Rows held (in open groups or closed and not handed out yet)."""
        return self._ready_rows + self.open_rows()

    def open_rows(self, tp: TopicPartition | None = None) -> int:
        """Rows in open groups (of one partition): they wait for records still to be read."""
        if tp is not None:
            part = self._parts.get(tp)
            return part.rows if part is not None else 0
        total = 0
        for part in self._parts.values():
            total += part.rows
        return total

    def seen(self, tp: TopicPartition, offset: int, time_ms: int | None, now_ms: float) -> None:
        """Every record of the partition, before `add` if it is a row: closes the groups that
        this record's time or offset puts behind it."""
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition(now_ms)
        part.read_ms = now_ms
        while part.open:
            key, order = next(iter(part.open.items()))
            if offset - order.first < self.max_span:
                break
            self._close(tp, part, key)
        if time_ms is None or time_ms < 0:
            return
        deadlines = part.deadlines
        while deadlines and deadlines[0][0] < time_ms:
            _, first, key = heapq.heappop(deadlines)
            stale = part.open.get(key)
            if stale is not None and stale.first == first:
                self._close(tp, part, key)

    def add(
        self, tp: TopicPartition, key: OrderKey, row: Row, token: T, offset: int, time_ms: int | None
    ) -> None:
        """A row, after `seen` for its record. Offsets of a partition must increase."""
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition(0.0)
        if time_ms is not None and time_ms < 0:
            time_ms = None  # librdkafka's "no timestamp"
        order = part.open.get(key)
        if order is not None and (len(order.rows) >= self.max_rows or not self._within(order, time_ms)):
            self._close(tp, part, key)
            order = None
        if order is None:
            order = part.open[key] = _Open(time_ms, offset, offset, offset)
            if time_ms is not None:
                heapq.heappush(part.deadlines, (time_ms + self.window_ms + self.grace_ms, offset, key))
                if len(part.deadlines) > 2 * len(part.open) + 64:  # stale entries of closed groups
                    _compact(part)
        order.rows.append(row)
        order.tokens.append(token)
        order.low = min(order.low, offset)
        order.high = max(order.high, offset)
        part.rows += 1
        if self.window_ms == 0:  # no grouping: every row is an event of its own
            self._close(tp, part, key)

    def due(self, now_ms: float) -> list[Group[T]]:
        """The closed groups, and those of partitions idle for window + grace of `now_ms`
        (a clock that must stand still while the caller cannot read: paused, saturated)."""
        idle_ms = self.window_ms + self.grace_ms
        for tp, part in self._parts.items():
            if part.open and now_ms - part.read_ms >= idle_ms:
                while part.open:
                    self._close(tp, part, next(iter(part.open)))
        ready, self._ready = self._ready, []
        self._ready_rows = 0
        return ready

    def release(self, tps: list[TopicPartition]) -> int:
        """The partitions go (revoked, lost): their groups, open or closed, are dropped unsent
        (their rows stay uncommitted: the next owner reads them again, whole). Rows dropped."""
        gone = set(tps)
        dropped = 0
        for tp in tps:
            part = self._parts.pop(tp, None)
            if part is not None:
                dropped += part.rows
        kept: list[Group[T]] = []
        for group in self._ready:
            if group.tp in gone:
                dropped += len(group.rows)
            else:
                kept.append(group)
        self._ready = kept
        self._ready_rows = 0
        for group in kept:
            self._ready_rows += len(group.rows)
        return dropped

    def _within(self, order: _Open[T], time_ms: int | None) -> bool:
        if order.time_ms is None or time_ms is None:
            return True  # nothing to compare: only the caps, the watermark or idleness close it
        return abs(time_ms - order.time_ms) <= self.window_ms

    def _close(self, tp: TopicPartition, part: _Partition[T], key: OrderKey) -> None:
        order = part.open.pop(key)
        part.rows -= len(order.rows)
        self._ready.append(Group(order.rows, order.tokens, tp, order.low, order.high))
        self._ready_rows += len(order.rows)


def _compact(part: _Partition[T]) -> None:
    live: list[tuple[int, int, OrderKey]] = []
    for deadline, first, key in part.deadlines:
        order = part.open.get(key)
        if order is not None and order.first == first:
            live.append((deadline, first, key))
    heapq.heapify(live)
    part.deadlines = live
