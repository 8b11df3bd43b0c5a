"""The record ledger: the one owner of a consumed record's fate.

Only here is a `PendingRecord` made or changed, and only here does anything talk to the offset
tracker, so commits never pass a record whose outcome is still open (docs/design.md invariant
1). The methods below are the steps of a record's life, in order:

    track → (held → released) → owned by N event parts → each part delivered or failed
          → dead-lettered and acknowledged | filtered | delivered → done → committable offsets

Everything runs on the event loop's thread, from the loop's own turn (or a `join`), so a fatal
outcome (the breaker tripping) raises into the loop. Counters are added up here and published
once per turn (`publish`); the ack-time histogram once per record, or once per poll's records
delivered together.
"""

from __future__ import annotations

import enum
import functools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from consumer.adapters.graph import Failure
from consumer.adapters.kafka.deadletter import DeadLetter, SourceRecord
from consumer.core.breaker import DeadLetterBreaker
from consumer.core.offsets import OffsetTracker, TopicPartition
from consumer.runtime.holding import HeldRecords
from consumer.runtime.ports import DeadLetterWrites
from consumer.telemetry.metrics import METRICS, observe_many

log = structlog.get_logger("fboc.pipeline")


@dataclass(slots=True, eq=False)
class PendingRecord:
    """A consumed record whose outcome may still be open. Read it anywhere; change it only in
    the ledger."""

    src: SourceRecord
    tp: TopicPartition
    polled_at: float
    parts: int = 0  # output events not yet delivered or failed
    failures: dict[str, Failure] | None = None  # by event set id, once one failed
    writes: int = 0  # dead-letter writes not yet acknowledged

    @property
    def offset(self) -> int:
        return self.src.offset


class Outcome(enum.Enum):
    """How a record ended: the `outcome` label of fboc_record_outcomes_total."""

    DELIVERED = "delivered"
    FILTERED = "filtered"
    DEAD_LETTERED = "dead_lettered"


Owner = tuple[tuple[PendingRecord, ...], str]  # the records an event came from, its name


class Ledger:
    def __init__(self, breaker: DeadLetterBreaker, dead_letters: DeadLetterWrites) -> None:
        self._tracker = OffsetTracker()
        self._held = HeldRecords()
        self._breaker = breaker
        self._dead_letters = dead_letters
        # counts since the last publish, and the metric children they go to (looked up once)
        self._consumed: dict[str, int] = {}
        self._outcomes: dict[tuple[str, str], int] = {}
        self._dead: dict[tuple[str, str], int] = {}
        self._children: dict[tuple[str, ...], Any] = {}
        self._tp = TopicPartition("", -1)  # the last record's partition (track)

    # -- 1. tracked, in the order consumed --------------------------------------------------

    def track(self, src: SourceRecord, now: float) -> PendingRecord:
        """A consumed record (`now`: the turn's clock, shared by the turn's records)."""
        tp = self._tp  # a poll's records come in runs of one partition: one tuple a run
        if tp[1] != src.partition or tp[0] != src.topic:
            tp = self._tp = TopicPartition(src.topic, src.partition)
        self._tracker.track(tp, src.offset)
        self._consumed[src.topic] = self._consumed.get(src.topic, 0) + 1
        return PendingRecord(src, tp, now)

    # -- 2. held while its cause is outside it, released in order ----------------------------

    def hold(self, record: PendingRecord, why: str, first: bool = False) -> None:
        """Kept for a retry (`first`: back at the head, where `release` took it from)."""
        self._held.hold(record, why, first)

    def release(self) -> PendingRecord | None:
        """The oldest held record, for another try."""
        return self._held.take()

    # -- 3. owned by the events made of it ----------------------------------------------------

    def span(self, tp: TopicPartition, first: int, last: int) -> None:
        """Records first..last of `tp` made one group's events: no commit may land inside."""
        self._tracker.span(tp, first, last)

    def owned(self, records: Sequence[PendingRecord], parts: int) -> None:
        """Each of `records` is final once `parts` events made of them have their answer."""
        for record in records:
            record.parts = parts

    # -- 4. each part delivered or failed: one call per answered batch ----------------------

    def answered(
        self, destination: str, event_set_id: str, owners: Sequence[Owner], failures: Sequence[Failure | None]
    ) -> None:
        """A batch's answer: per event, None (delivered) or its failure."""
        now = time.monotonic()
        delivered: list[PendingRecord] = []  # done in order, a run at a time (_done_delivered)
        for (records, _name), failure in zip(owners, failures, strict=True):
            for record in records:
                if failure is not None:
                    if record.failures is None:
                        record.failures = {}
                    record.failures[event_set_id] = failure
                record.parts -= 1
                if record.parts == 0:
                    if record.failures:
                        self._done_delivered(delivered, now)
                        delivered.clear()
                        self._delivered(record, destination, now)
                    else:
                        delivered.append(record)
        self._done_delivered(delivered, now)

    # -- 5. the outcome: dead-lettered and acknowledged, filtered, or delivered --------------

    def dead_letter(self, record: PendingRecord, dl: DeadLetter) -> None:
        """Written to the dead-letter topic; final once every write for it is acknowledged.
        Raises `DeadLetterBreakerTripped` (and writes nothing) when the breaker refuses it."""
        if record.writes == 0:  # the breaker counts records, however many event sets failed
            self._breaker.dead_letter()
        key = (dl.stage, dl.reason)
        self._dead[key] = self._dead.get(key, 0) + 1
        log.info(
            "dead_letter",
            stage=dl.stage,
            reason=dl.reason,
            topic=record.tp[0],
            partition=record.tp[1],
            offset=record.src.offset,
            event_set_id=dl.event_set_id,
        )
        record.writes += 1
        self._dead_letters.write(record.src, dl, functools.partial(self._acknowledged, record, dl.reason))

    def _acknowledged(self, record: PendingRecord, reason: str) -> None:
        record.writes -= 1
        if record.writes == 0:
            self._done(record, Outcome.DEAD_LETTERED, reason, time.monotonic())

    def filtered(self, record: PendingRecord, reason: str) -> None:
        """Dropped by policy."""
        self._done(record, Outcome.FILTERED, reason, time.monotonic())

    def _delivered(self, record: PendingRecord, destination: str, now: float) -> None:
        """Every event of the record has its answer: delivered, or a dead letter per failure."""
        if not record.failures:
            self._done(record, Outcome.DELIVERED, "ok", now)
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

    # -- 6. done ------------------------------------------------------------------------------

    def _done_delivered(self, records: list[PendingRecord], now: float) -> None:
        """`_done(record, DELIVERED, "ok", now)` for each of `records`, in order, with the
        counts and the ack-time histogram added once per run of records polled together
        (one poll's records share `polled_at`) instead of once per record."""
        if not records:
            return
        tracker = self._tracker
        for record in records:
            tracker.done(record.tp, record.src.offset)
        key = (Outcome.DELIVERED.value, "ok")
        self._outcomes[key] = self._outcomes.get(key, 0) + len(records)
        self._observe_ack(records, now)
        self._breaker.passed(len(records))  # may trip (a window full of dead letters): counted first

    @staticmethod
    def _observe_ack(records: list[PendingRecord], now: float) -> None:
        """The ack time of `records`, a run of equal `polled_at` at a time."""
        run_start, polled_at = 0, records[0].polled_at
        for i in range(1, len(records)):
            at = records[i].polled_at
            if at != polled_at:
                observe_many(METRICS.record_ack_seconds, now - polled_at, i - run_start)
                run_start, polled_at = i, at
        observe_many(METRICS.record_ack_seconds, now - polled_at, len(records) - run_start)

    def _done(self, record: PendingRecord, outcome: Outcome, reason: str, now: float) -> None:
        key = (outcome.value, reason)
        self._outcomes[key] = self._outcomes.get(key, 0) + 1
        METRICS.record_ack_seconds.observe(now - record.polled_at)
        self._tracker.done(record.tp, record.src.offset)
        if outcome is not Outcome.DEAD_LETTERED:  # dead letters count when decided (dead_letter)
            self._breaker.passed()

    # -- 7. committable offsets ---------------------------------------------------------------

    def committable(self, only: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Per partition, the first offset not final yet, where it moved since the last commit."""
        return self._tracker.to_commit(only)

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._tracker.committed(offsets)

    def uncommitted(self, tps: list[TopicPartition]) -> None:
        """A commit failed: offer these partitions' offsets again."""
        self._tracker.uncommitted(tps)

    def forget(self, tps: list[TopicPartition]) -> None:
        """The partitions went to another consumer: their open and held records are its to read."""
        self._tracker.forget(tps)
        self._held.drop(tps)

    # -- what is open -------------------------------------------------------------------------

    def pending(self, tp: TopicPartition | None = None) -> int:
        """Records consumed whose outcome is not final yet (held ones included)."""
        return self._tracker.pending(tp)

    def held(self, tp: TopicPartition | None = None) -> int:
        return len(self._held) if tp is None else self._held.count(tp)

    def unsettled(self, tps: Iterable[TopicPartition] | None = None) -> int:
        """Records on their way to an outcome: not final and not held."""
        if tps is None:
            return self.pending() - self.held()
        return sum(self.pending(tp) - self.held(tp) for tp in tps)

    # -- metrics ------------------------------------------------------------------------------

    def publish(self) -> None:
        """Add the counts since the last call to their counters (once per turn)."""
        for topic, n in self._consumed.items():
            self._child("consumed", topic).inc(n)
        for (outcome, reason), n in self._outcomes.items():
            self._child("outcome", outcome, reason).inc(n)
        for (stage, reason), n in self._dead.items():
            self._child("dead", stage, reason).inc(n)
        self._consumed.clear()
        self._outcomes.clear()
        self._dead.clear()

    def _child(self, *key: str) -> Any:
        child = self._children.get(key)
        if child is None:
            kind, *labels = key
            metric = {
                "consumed": METRICS.records_consumed,
                "outcome": METRICS.record_outcomes,
                "dead": METRICS.dead_letters,
            }[kind]
            child = self._children[key] = metric.labels(*labels)
        return child
