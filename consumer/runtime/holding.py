"""Records held for a retry because their cause is outside them (the schema registry is down):
not committed, not dead-lettered, tried again in their order until they go through. Used by the
record ledger (consumer/runtime/ledger.py) only.

Bounded: a held record is still pending for the offset tracker, so the buffer cap
(`batching.max_buffered_records`, consumer/runtime/backpressure.py) counts it and pauses reading
when too many wait.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import structlog

from consumer.core.offsets import TopicPartition
from consumer.telemetry.metrics import METRICS

if TYPE_CHECKING:
    from consumer.runtime.ledger import PendingRecord

log = structlog.get_logger("fboc.pipeline")


class HeldRecords:
    def __init__(self) -> None:
        self._queue: deque[PendingRecord] = deque()
        self._by_tp: dict[TopicPartition, int] = {}
        self._holding = False  # between the records_held and records_released log lines

    def hold(self, record: PendingRecord, why: str, first: bool = False) -> None:
        """Keep the record for a retry (`first`: back at the head, where it was taken from)."""
        if not self._holding:
            self._holding = True
            log.warning(
                "records_held", reason=why, topic=record.tp[0], partition=record.tp[1], offset=record.offset
            )
        if first:
            self._queue.appendleft(record)
        else:
            self._queue.append(record)
        self._by_tp[record.tp] = self._by_tp.get(record.tp, 0) + 1
        METRICS.held_records.set(len(self._queue))

    def take(self) -> PendingRecord | None:
        """The oldest held record, removed (hold it again with first=True if it fails again).
        None once every held record went through: that, not taking the last one (which may be
        held again at once), ends the hold in the logs."""
        if not self._queue:
            if self._holding:
                self._holding = False
                log.info("records_released")
            return None
        record = self._queue.popleft()
        self._forget_one(record.tp)
        METRICS.held_records.set(len(self._queue))
        return record

    def count(self, tp: TopicPartition) -> int:
        return self._by_tp.get(tp, 0)

    def drop(self, tps: list[TopicPartition]) -> None:
        """The partitions went to another consumer: their records are its to read again."""
        gone = set(tps)
        if not gone & self._by_tp.keys():
            return
        self._queue = deque(r for r in self._queue if r.tp not in gone)
        for tp in gone:
            self._by_tp.pop(tp, None)
        METRICS.held_records.set(len(self._queue))

    def _forget_one(self, tp: TopicPartition) -> None:
        left = self._by_tp[tp] - 1
        if left:
            self._by_tp[tp] = left
        else:
            del self._by_tp[tp]

    def __len__(self) -> int:
        return len(self._queue)
