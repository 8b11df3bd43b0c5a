"""The Kafka consumer: manual commits, cooperative-sticky, polled off the event loop.

`consume` runs in one worker thread so the loop stays free; librdkafka calls the rebalance
callbacks from inside it, and they hand the work back to the loop (see Pipeline.on_revoke).
confluent_kafka's messages and partitions stop here: the loop sees `SourceRecord`s and fboc's
own `TopicPartition`.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaTopicPartition

from consumer.config.settings import KafkaSettings
from consumer.core.offsets import TopicPartition
from consumer.telemetry.metrics import KAFKA_LOGGER

if TYPE_CHECKING:
    from consumer.runtime.ports import SourceEvents

log = structlog.get_logger("fboc.pipeline")

STATS_INTERVAL_MS = 5000

Headers = list[tuple[str, str | bytes | None]]


def headers_of(msg: Message) -> Headers:
    raw = msg.headers()
    if isinstance(raw, dict):
        return list(raw.items())
    return list(raw or [])


class SourceRecord(NamedTuple):
    """A consumed record, copied out of the librdkafka message at poll time: holding the
    `Message` itself would pin its whole fetch buffer in memory."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    @classmethod
    def of(cls, msg: Message) -> SourceRecord:
        topic, partition, offset = coordinates(msg)
        return cls(topic, partition, offset, msg.timestamp()[1], msg.key(), msg.value(), headers_of(msg))


def consumer_config(kafka: KafkaSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "group.id": kafka.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": "earliest",
        # librdkafka prefetches up to 64 MB per consumer by default; bounded memory wants less
        "queued.max.messages.kbytes": 16384,
        "logger": KAFKA_LOGGER,  # librdkafka's lines as JSON, redacted (README: Metrics and logs)
    }
    config.update(kafka.options)
    return config


class KafkaSource:
    """The `Source` of the pipeline (consumer/runtime/ports.py)."""

    def __init__(self, kafka: KafkaSettings, topics: list[str]) -> None:
        self._topics = topics
        self._events: SourceEvents | None = None
        self._consumer = Consumer(
            {
                **consumer_config(kafka),
                "error_cb": self._on_error,
                "stats_cb": self._on_stats,
                "on_commit": self._on_commit,
                "statistics.interval.ms": STATS_INTERVAL_MS,
            }
        )
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="fboc-poll")

    def subscribe(self, events: SourceEvents) -> None:
        self._events = events
        self._consumer.subscribe(
            self._topics,
            on_assign=lambda _c, parts: events.on_assign(_tps(parts)),
            on_revoke=lambda _c, parts: events.on_revoke(_tps(parts)),
            on_lost=lambda _c, parts: events.on_lost(_tps(parts)),
        )

    def _on_error(self, err: KafkaError) -> None:
        if self._events is not None:
            self._events.on_error(err)

    def _on_stats(self, raw: str) -> None:
        if self._events is not None:
            self._events.on_stats(raw)

    def _on_commit(self, err: KafkaError | None, parts: list[KafkaTopicPartition]) -> None:
        """Result of an asynchronous commit: the partitions that failed go to the loop."""
        failed = [TopicPartition(p.topic, p.partition) for p in parts if err is not None or p.error]
        if failed and self._events is not None:
            self._events.on_commit_failed(failed, err.name() if err else "partition error")

    async def poll(self, max_records: int, wait_s: float) -> list[SourceRecord]:
        loop = asyncio.get_running_loop()
        messages: list[Message] = await loop.run_in_executor(
            self._executor, self._consumer.consume, max(1, max_records), wait_s
        )
        records = []
        for msg in messages:
            err = msg.error()
            if err is None:
                records.append(SourceRecord.of(msg))
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume_error", error=err.name())
        return records

    async def reachable(self, wait_s: float) -> bool:
        """Whether a broker answers a metadata request (run on the poll thread)."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, lambda: self._consumer.list_topics(timeout=wait_s))
        except KafkaException:
            return False
        return True

    def commit(self, offsets: dict[TopicPartition, int], *, asynchronous: bool = True) -> None:
        """Commit next-offsets. Asynchronous commits report through `on_commit`; a synchronous
        one blocks until the coordinator answers (only from the poll thread or at the end)."""
        if not offsets:
            return
        parts = [KafkaTopicPartition(t, p, o) for (t, p), o in offsets.items()]
        if asynchronous:
            self._consumer.commit(offsets=parts, asynchronous=True)
        else:
            self._consumer.commit(offsets=parts, asynchronous=False)

    async def finish(self, offsets: dict[TopicPartition, int], wait_s: float) -> bool:
        """Last synchronous commit and close, on the poll thread, bounded in time: a broker
        that is gone must not hold the process. False when either did not complete."""
        loop = asyncio.get_running_loop()

        def commit_and_close() -> None:
            self.commit(offsets, asynchronous=False)
            self._consumer.close()

        try:
            await asyncio.wait_for(loop.run_in_executor(self._executor, commit_and_close), wait_s)
        except (TimeoutError, KafkaException):
            return False
        finally:
            self._executor.shutdown(wait=False)
        return True

    def assignment(self) -> list[TopicPartition]:
        return _tps(self._consumer.assignment())

    def pause(self, tps: list[TopicPartition]) -> None:
        if tps:
            self._consumer.pause([KafkaTopicPartition(t, p) for t, p in tps])

    def resume(self, tps: list[TopicPartition]) -> None:
        if tps:
            self._consumer.resume([KafkaTopicPartition(t, p) for t, p in tps])


def _tps(parts: list[KafkaTopicPartition]) -> list[TopicPartition]:
    return [TopicPartition(p.topic, p.partition) for p in parts]


def coordinates(msg: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed message (no `TopicPartition`: `SourceRecord.of`
    runs for every record)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("not a consumed message")
    return topic, partition, offset


def position(msg: Message) -> tuple[TopicPartition, int]:
    """(topic, partition), offset of a consumed message."""
    topic, partition, offset = coordinates(msg)
    return TopicPartition(topic, partition), offset
