"""The dead-letter producer (docs/operations.md): original key, value and headers plus `fboc.*` headers.

Idempotent, acks=all. `on_done` runs (from `poll`) once the broker acknowledged the write; only
then is the record final. A write the broker refuses for good is fatal: fboc stops rather than
commit past a record it could not keep.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, Message, Producer

from consumer.config import KafkaSettings
from consumer.kafka.source import position
from consumer.telemetry import KAFKA_LOGGER

HEADER_PREFIX = "fboc."
REPLAY_COUNT = "fboc.replay_count"
TARGET_EVENT_SET = "fboc.target.event_set_id"  # set by replay: deliver to this event set only
KEPT_ON_REPLAY = frozenset({REPLAY_COUNT, TARGET_EVENT_SET})


@dataclass(frozen=True, slots=True)
class DeadLetter:
    stage: str  # decode | transform | deliver
    reason: str
    message: str
    attempts: int = 1
    destination: str | None = None
    event_set_id: str | None = None
    graph_code: int | None = None
    graph_subcode: int | None = None
    fbtrace_id: str | None = None


Headers = list[tuple[str, str | bytes | None]]
HeaderPairs = Sequence[tuple[str, str | bytes | None]]  # what reading headers accepts


def headers_of(msg: Message) -> Headers:
    raw = msg.headers()
    if isinstance(raw, dict):
        return list(raw.items())
    return list(raw or [])


def header(headers: HeaderPairs, name: str) -> str | None:
    for key, value in headers:
        if key == name and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return None


class SourceRecord(NamedTuple):
    """What a dead letter needs of a consumed record, copied out of the librdkafka message at
    poll time: holding the `Message` itself would pin its whole fetch buffer in memory."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    @classmethod
    def of(cls, msg: Message) -> SourceRecord:
        (topic, partition), offset = position(msg)
        return cls(topic, partition, offset, msg.timestamp()[1], msg.key(), msg.value(),
                   headers_of(msg))


def dead_letter_headers(src: SourceRecord, dl: DeadLetter, group_id: str,
                        failed_at: datetime) -> Headers:
    original = [(k, v) for k, v in src.headers if not k.startswith(HEADER_PREFIX)]
    replay_count = header(src.headers, REPLAY_COUNT) or "0"
    fields: dict[str, Any] = {
        "fboc.error.stage": dl.stage,
        "fboc.error.reason": dl.reason,
        "fboc.error.message": dl.message,
        "fboc.original.topic": src.topic,
        "fboc.original.partition": src.partition,
        "fboc.original.offset": src.offset,
        "fboc.original.timestamp": src.timestamp_ms,
        "fboc.consumer_group": group_id,
        "fboc.failed_at": failed_at.isoformat(timespec="milliseconds"),
        "fboc.attempts": dl.attempts,
        REPLAY_COUNT: replay_count,
        "fboc.destination": dl.destination,
        "fboc.event_set_id": dl.event_set_id,
        "fboc.graph.code": dl.graph_code,
        "fboc.graph.subcode": dl.graph_subcode,
        "fboc.graph.fbtrace_id": dl.fbtrace_id,
    }
    return original + [(k, str(v).encode()) for k, v in fields.items() if v is not None]


class DeadLetterWriter:
    def __init__(self, kafka: KafkaSettings, clock: Callable[[], datetime] | None = None) -> None:
        self.topic = kafka.dead_letter_topic
        self._group = kafka.group_id
        self._clock = clock or (lambda: datetime.now(UTC))
        config: dict[str, Any] = {
            "bootstrap.servers": kafka.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "logger": KAFKA_LOGGER,
        }
        config.update({k: v for k, v in kafka.options.items() if not k.startswith("group.")})
        self._producer = Producer(config)
        self.fatal: str | None = None  # set when a write failed for good
        self.pending = 0

    def write(self, src: SourceRecord, dl: DeadLetter, on_done: Callable[[], None]) -> None:
        def delivered(err: KafkaError | None, _msg: Message) -> None:
            self.pending -= 1
            if err is not None:
                self.fatal = f"dead-letter write failed: {err.name()}"
                return
            on_done()

        self.pending += 1
        self._producer.produce(self.topic, key=src.key, value=src.value,
                               headers=dead_letter_headers(src, dl, self._group, self._clock()),
                               on_delivery=delivered)
        self._producer.poll(0)

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float) -> int:
        """Wait for outstanding writes; returns how many are still unacknowledged."""
        remaining: int = self._producer.flush(timeout)
        return remaining
