"""Per-partition commit watermarks (docs/design.md invariant 1).

Records are tracked in the order they are consumed and marked done in any order. The offset to
commit for a partition is the first offset that is not yet final (or one past the last tracked
record when all are final), so a commit never passes a record whose outcome is still open.

Records grouped into one event (amperity: an order's rows) have a span, their group's first to
last offset. A commit never lands strictly inside a span: the offset is lowered to the span's
first offset, again until no span holds it, so a replay always starts at a group boundary and
regroups the same rows (docs/dialects.md#amperity).
"""

from __future__ import annotations

from collections import deque

TopicPartition = tuple[str, int]


class PartitionOffsets:
    __slots__ = ("_done", "_next", "_pending", "_spans")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._next: int | None = None  # one past the highest offset known final
        self._spans: list[tuple[int, int]] = []  # (first, last) of groups not committed past

    def track(self, offset: int) -> None:
        if self._pending and offset <= self._pending[-1]:
            raise ValueError("offsets must be tracked in increasing order")
        self._pending.append(offset)

    def done(self, offset: int) -> None:
        self._done.add(offset)
        pending = self._pending
        while pending and pending[0] in self._done:
            first = pending.popleft()
            self._done.discard(first)
            self._next = first + 1

    def span(self, first: int, last: int) -> None:
        """Records first..last form one group (a single offset needs nothing)."""
        if last > first:
            self._spans.append((first, last))

    def watermark(self) -> int | None:
        """The offset to commit: everything below it is final, and no span holds it."""
        mark = self._pending[0] if self._pending else self._next
        if mark is None or not self._spans:
            return mark
        # By first offset, highest first: lowering the mark to a span's first offset can only
        # put it inside spans that begin lower, which come later in this order.
        self._spans.sort(reverse=True)
        for first, last in self._spans:
            if first < mark <= last:
                mark = first
        # Spans wholly below the mark can never hold it again: the mark never goes down (a new
        # span's records are pending, so it starts at or above the first pending offset).
        self._spans = [s for s in self._spans if s[1] >= mark]
        return mark

    def spans(self) -> int:
        return len(self._spans)

    def __len__(self) -> int:
        """Records not final yet (not those done behind an earlier open one: an order's open
        group at the head must not make the buffer look full, or reading, which would close
        it, could stop for good)."""
        return len(self._pending) - len(self._done)


class OffsetTracker:
    """Watermarks of every assigned partition, and what has been committed of them."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, PartitionOffsets] = {}
        self._committed: dict[TopicPartition, int] = {}

    def track(self, tp: TopicPartition, offset: int) -> None:
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = PartitionOffsets()
        part.track(offset)

    def done(self, tp: TopicPartition, offset: int) -> None:
        part = self._parts.get(tp)
        if part is not None:  # None: the partition was revoked meanwhile
            part.done(offset)

    def to_commit(self, only: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Watermarks that moved since the last commit."""
        out: dict[TopicPartition, int] = {}
        for tp, part in self._parts.items():
            if only is not None and tp not in only:
                continue
            mark = part.watermark()
            if mark is not None and mark != self._committed.get(tp):
                out[tp] = mark
        return out

    def span(self, tp: TopicPartition, first: int, last: int) -> None:
        part = self._parts.get(tp)
        if part is not None:
            part.span(first, last)

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def uncommitted(self, tps: list[TopicPartition]) -> None:
        """A commit failed: offer these partitions' watermarks again."""
        for tp in tps:
            self._committed.pop(tp, None)

    def forget(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self._parts.pop(tp, None)
            self._committed.pop(tp, None)

    def pending(self, tp: TopicPartition | None = None) -> int:
        """Records consumed whose outcome is not final yet."""
        if tp is not None:
            part = self._parts.get(tp)
            return len(part) if part else 0
        return sum(len(p) for p in self._parts.values())
