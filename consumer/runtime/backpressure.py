"""Bounded memory (docs/design.md invariant 3): pause every assigned partition when too many records are
not final yet, resume below half. Polling goes on while paused (group membership). After a
rebalance the new partitions are set to our state explicitly: librdkafka may hand back a partition
still paused from before it was revoked, and nothing else would ever resume it."""

from __future__ import annotations

import structlog

from consumer.adapters.kafka.source import KafkaSource
from consumer.core.offsets import TopicPartition
from consumer.telemetry.metrics import METRICS

log = structlog.get_logger("fboc.backpressure")

RESUME_RATIO = 0.5


class Backpressure:
    def __init__(self, limit: int, source: KafkaSource) -> None:
        self.limit = limit
        self._source = source
        self.paused = False
        self._new: list[TopicPartition] = []  # assigned since the last turn

    def assigned(self, tps: list[TopicPartition]) -> None:
        """From the rebalance callback (poll thread); applied on the next turn of the loop."""
        self._new = [*self._new, *tps]

    def update(self, buffered: int) -> None:
        METRICS.buffered.set(buffered)
        if not self.paused and buffered >= self.limit:
            self.paused = True
            log.info("backpressure_pause", buffered=buffered)
        elif self.paused and buffered <= self.limit * RESUME_RATIO:
            self.paused = False
            self._source.resume(self._source.assignment())
            METRICS.paused.set(0)
            log.info("backpressure_resume", buffered=buffered)
        new, self._new = self._new, []
        if self.paused:
            assigned = self._source.assignment()
            self._source.pause(assigned)
            METRICS.paused.set(len(assigned))
        elif new:
            self._source.resume(new)
