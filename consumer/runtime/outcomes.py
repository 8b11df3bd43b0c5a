"""Where a record's outcome becomes final: delivered, filtered or dead-lettered (and the dead
letter acknowledged). Only here is a record marked done for the offset tracker, so commits never
pass a record that is still on its way (docs/design.md invariant 1)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from consumer.adapters.graph import Failure
from consumer.adapters.kafka.deadletter import DeadLetter, DeadLetterWriter, SourceRecord
from consumer.core.breaker import DeadLetterBreaker
from consumer.core.offsets import OffsetTracker, TopicPartition
from consumer.telemetry.metrics import METRICS

log = structlog.get_logger("fboc.pipeline")


@dataclass(slots=True, eq=False)
class PendingRecord:
    src: SourceRecord
    tp: TopicPartition
    offset: int
    polled_at: float = field(default_factory=time.monotonic)
    parts: int = 0  # output events not yet delivered or failed
    failures: dict[str, Failure] | None = None  # by event set id, once one failed
    writes: int = 0  # dead-letter writes not yet acknowledged

    def failed(self, event_set_id: str, failure: Failure) -> None:
        if self.failures is None:
            self.failures = {}
        self.failures[event_set_id] = failure


class Outcomes:
    def __init__(
        self, tracker: OffsetTracker, breaker: DeadLetterBreaker, dead_letters: DeadLetterWriter
    ) -> None:
        self._tracker = tracker
        self._breaker = breaker
        self._dead_letters = dead_letters
        self._counters: dict[tuple[str, str], Any] = {}  # metric children, looked up once

    def final(self, record: PendingRecord, outcome: str, reason: str) -> None:
        counter = self._counters.get((outcome, reason))
        if counter is None:
            counter = self._counters[(outcome, reason)] = METRICS.record_outcomes.labels(outcome, reason)
        counter.inc()
        METRICS.record_ack_seconds.observe(time.monotonic() - record.polled_at)
        if outcome != "dead_lettered":  # dead letters count when decided (dead_letter)
            self._breaker.record(dead_lettered=False)
        self._tracker.done(record.tp, record.offset)

    def dead_letter(self, record: PendingRecord, dl: DeadLetter) -> None:
        """Final once the dead-letter topic acknowledged every write for the record."""
        METRICS.dead_letters.labels(dl.stage, dl.reason).inc()
        log.info(
            "dead_letter",
            stage=dl.stage,
            reason=dl.reason,
            topic=record.tp[0],
            partition=record.tp[1],
            offset=record.offset,
            event_set_id=dl.event_set_id,
        )
        if record.writes == 0:  # once per record, however many event sets failed
            self._breaker.record(dead_lettered=True)
        record.writes += 1

        def acknowledged() -> None:
            record.writes -= 1
            if record.writes == 0:
                self.final(record, "dead_lettered", dl.reason)

        self._dead_letters.write(record.src, dl, acknowledged)

    def delivered(self, record: PendingRecord, destination: str) -> None:
        """Every event of the record has its answer: delivered, or a dead letter per failure."""
        if not record.failures:
            self.final(record, "delivered", "ok")
            return
        for event_set_id, f in record.failures.items():
            self.dead_letter(
                record,
                DeadLetter(
                    "deliver",
                    f.reason,
                    f.message,
                    f.attempts,
                    destination,
                    event_set_id,
                    f.code,
                    f.subcode,
                    f.fbtrace_id,
                ),
            )
