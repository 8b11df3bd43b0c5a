"""`fboc dlq stats` (docs/operations.md#dead-letters): read the whole dead-letter topic once and count it.

Reads from the beginning of every partition to the end offsets seen at start, with assigned
partitions and a throw-away group id: it joins no group and commits nothing. Also holds the Kafka
reading helpers `fboc dlq replay` shares.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from rich.console import Console
from rich.table import Table

from consumer.adapters.kafka.deadletter import headers_of
from consumer.config.settings import KafkaSettings, Settings
from consumer.errors import FbocError
from consumer.ops.dlq.records import AGE_BUCKETS, OLDER, DeadLetterView, bounded, shown
from consumer.ops.dlq.records import age_bucket as bucket_of
from consumer.telemetry.metrics import KAFKA_LOGGER

log = structlog.get_logger("fboc.dlq")

IDLE_TIMEOUT_S = 60.0  # no record and no end of partition for this long: Kafka is not answering
Ranges = dict[int, tuple[int, int]]  # partition -> [first offset, stop offset)


class DlqError(FbocError):
    """The dead-letter tools cannot go on (topic missing, Kafka unreachable, write refused)."""


def kafka_error_name(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.name() if isinstance(err, KafkaError) else type(exc).__name__


def client_config(kafka: KafkaSettings, group: str | None = None) -> dict[str, Any]:
    """A consumer that commits nothing by itself and reports the end of each partition."""
    return {
        **kafka.options,
        "bootstrap.servers": kafka.bootstrap_servers,
        "group.id": group or f"fboc-dlq-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "logger": KAFKA_LOGGER,
    }


def topic_partitions(client: Any, topic: str, timeout: float = 10) -> list[int]:
    try:
        meta = client.list_topics(topic, timeout=timeout).topics.get(topic)
    except KafkaException as exc:
        raise DlqError(f"cannot reach Kafka: {kafka_error_name(exc)}") from None
    if meta is None or meta.error is not None or not meta.partitions:
        raise DlqError(f"topic {topic!r} does not exist")
    return sorted(meta.partitions)


def watermarks(consumer: Consumer, topic: str, partitions: list[int]) -> Ranges:
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
    except KafkaException as exc:
        raise DlqError(f"cannot read the offsets of {topic!r}: {kafka_error_name(exc)}") from None


def read_range(consumer: Consumer, topic: str, ranges: Ranges) -> Iterator[Message]:
    """The records with first <= offset < stop of each partition, in order per partition."""
    active = {p for p, (first, stop) in ranges.items() if first < stop}
    consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in sorted(active)])
    idle = 0.0
    while active:
        started = time.monotonic()
        messages = consumer.consume(500, 0.5)
        idle = idle + time.monotonic() - started if not messages else 0.0
        if idle > IDLE_TIMEOUT_S:
            raise DlqError(f"no answer from Kafka reading {topic!r} for {IDLE_TIMEOUT_S:.0f}s")
        for msg in messages:
            err, partition, offset = msg.error(), msg.partition(), msg.offset()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    active.discard(partition)
                elif err.fatal():
                    raise DlqError(f"reading {topic!r} failed: {err.name()}")
                else:
                    log.warning("consume_error", topic=topic, error=err.name())
                continue
            if partition not in active or offset is None:
                continue
            if offset >= ranges[partition][1]:
                active.discard(partition)
                continue
            yield msg
            if offset + 1 >= ranges[partition][1]:
                active.discard(partition)


DIMENSIONS = ("reason", "stage", "destination", "event_set", "original_topic", "age", "replay_count")


@dataclass
class DeadLetterStats:
    """Counts of dead letters; destination and event set only for the records that have them."""

    topic: str
    max_replays: int
    total: int = 0
    replays_exhausted: int = 0  # replay_count >= max_replays: a replay would park them
    by: dict[str, Counter[str]] = field(default_factory=lambda: {d: Counter() for d in DIMENSIONS})

    def add(self, view: DeadLetterView, now_ms: int) -> None:
        self.total += 1
        by = self.by
        for dimension, value, kind in (
            ("reason", view.reason, "code"),
            ("stage", view.stage, "code"),
            ("destination", view.destination, "name"),
            ("event_set", view.event_set_id, "id"),
            ("original_topic", view.original_topic, "name"),
        ):
            if value:
                counts = by[dimension]
                counts[bounded(counts, shown(value, kind))] += 1
        by["age"][bucket_of(now_ms - view.failed_ms)] += 1
        by["replay_count"][str(view.replay_count)] += 1
        self.replays_exhausted += view.replay_count >= self.max_replays

    def rows(self, dimension: str) -> list[tuple[str, int]]:
        counts = self.by[dimension]
        if dimension == "age":  # every bucket, in order
            return [(name, counts[name]) for name in [n for _, n in AGE_BUCKETS] + [OLDER]]
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "topic": self.topic,
            "total": self.total,
            "max_replays": self.max_replays,
            "replays_exhausted": self.replays_exhausted,
        }
        out.update({f"by_{d}": dict(self.rows(d)) for d in DIMENSIONS})
        return out


def collect(settings: Settings, now_ms: Callable[[], int] | None = None) -> DeadLetterStats:
    clock = now_ms or (lambda: int(time.time() * 1000))
    topic = settings.kafka.dead_letter_topic
    stats = DeadLetterStats(topic, settings.dead_letter.max_replays)
    consumer = Consumer(client_config(settings.kafka))
    try:
        ranges = watermarks(consumer, topic, topic_partitions(consumer, topic))
        log.info("dlq_stats_started", topic=topic, records=sum(b - a for a, b in ranges.values()))
        now = clock()
        for msg in read_range(consumer, topic, ranges):
            stats.add(DeadLetterView.of(headers_of(msg), msg.timestamp()[1]), now)
    finally:
        consumer.close()
    log.info("dlq_stats_finished", topic=topic, records=stats.total)
    return stats


def render(stats: DeadLetterStats, console: Console) -> None:
    table = Table(
        title=f"Dead letters on {stats.topic}: {stats.total}",
        caption=f"{stats.replays_exhausted} at max_replays ({stats.max_replays}): a replay parks them",
    )
    table.add_column("by")
    table.add_column("value")
    table.add_column("records", justify="right")
    for dimension in DIMENSIONS:
        rows = stats.rows(dimension)
        for i, (value, count) in enumerate(rows):
            table.add_row(dimension.replace("_", " ") if i == 0 else "", value, str(count))
        if rows:
            table.add_section()
    console.print(table)


def run_stats(settings: Settings, *, as_json: bool) -> int:
    try:
        stats = collect(settings)
    except (DlqError, KafkaException) as exc:
        print(f"dlq stats: {exc}", file=sys.stderr)
        return 1
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(stats.to_json()) + b"\n")
        sys.stdout.flush()
    else:
        render(stats, Console(soft_wrap=False))
    return 0
