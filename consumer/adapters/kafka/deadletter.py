"""The dead-letter producer (docs/operations.md): original key, value and headers plus `fboc.*` headers.

Idempotent, acks=all. `on_done` runs (from `poll`) once the broker acknowledged the write; only
then is the record final. A dead letter larger than the producer's `message.max.bytes` is written
with its value cut (`fboc.truncated`), never dropped. A write the broker refuses for good for any
other reason is fatal (`poll` raises `DeadLetterProducerFailed`): fboc stops rather than commit
past a record it could not keep.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from consumer.adapters.kafka.source import position
from consumer.config.settings import KafkaSettings
from consumer.errors import DeadLetterProducerFailed
from consumer.telemetry.metrics import KAFKA_LOGGER

log = structlog.get_logger("fboc.deadletter")

HEADER_PREFIX = "fboc."
REPLAY_COUNT = "fboc.replay_count"
TARGET_EVENT_SET = "fboc.target.event_set_id"  # set by replay: deliver to this event set only
KEPT_ON_REPLAY = frozenset({REPLAY_COUNT, TARGET_EVENT_SET})
# Set on a dead letter whose value was cut to fit the topic: the original value's size in bytes.
TRUNCATED = "fboc.truncated"
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000  # librdkafka's message.max.bytes
SIZE_MARGIN = 16_384  # room for the message's own framing, never counted exactly


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
        return cls(topic, partition, offset, msg.timestamp()[1], msg.key(), msg.value(), headers_of(msg))


def dead_letter_headers(src: SourceRecord, dl: DeadLetter, group_id: str, failed_at: datetime) -> Headers:
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


def header_bytes(headers: Headers) -> int:
    """What headers add to a message, about: names, values and a few bytes of framing each."""
    return sum(
        len(k.encode()) + len(v if isinstance(v, bytes) else (v or "").encode()) + 10 for k, v in headers
    )


def truncated(src: SourceRecord, headers: Headers, limit: int) -> tuple[bytes | None, bytes | None, Headers]:
    """Key, value and headers cut so that they fit `limit` bytes, with `fboc.truncated` naming
    the original value's size. The value goes first; when the key and headers alone are too
    large, the original headers and the key go too (the `fboc.original.*` headers still say
    where the whole record is)."""
    size = len(src.value or b"")
    headers = [*headers, (TRUNCATED, str(size).encode())]
    key = src.key
    room = limit - len(key or b"") - header_bytes(headers)
    if room < 0:
        headers = [(k, v) for k, v in headers if k.startswith(HEADER_PREFIX)]
        key = None
        room = max(0, limit - header_bytes(headers))
    return key, (src.value or b"")[:room], headers


class DeadLetterWriter:
    """`write` never raises: a dead letter too large for the topic is written truncated, and one
    the producer's queue cannot take now waits in a backlog that `poll` sends on."""

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
        self._max_bytes = int(config.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        self._producer = Producer(config)
        self._failed: str | None = None  # a write that failed for good, raised by the next poll
        self.pending = 0
        self._backlog: deque[_Write] = deque()  # refused by a full producer queue, sent by poll

    def write(self, src: SourceRecord, dl: DeadLetter, on_done: Callable[[], None]) -> None:
        self.pending += 1
        headers = dead_letter_headers(src, dl, self._group, self._clock())
        job = _Write(src, headers, on_done, self._max_bytes - SIZE_MARGIN)
        if self._backlog or not self._produce(job):
            self._backlog.append(job)
        self._producer.poll(0)

    def _produce(self, job: _Write) -> bool:
        """Hand the write to the producer; False when its queue is full (try again later)."""
        src, headers = job.src, job.headers
        key, value = src.key, src.value
        size = len(key or b"") + len(value or b"") + header_bytes(headers)
        if size > job.limit:
            key, value, headers = truncated(src, headers, job.limit)
            log.warning(
                "dead_letter_truncated",
                topic=src.topic,
                partition=src.partition,
                offset=src.offset,
                size=size,
                limit=job.limit,
            )

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE and job.limit > 0:
                job.limit //= 2  # the topic's max.message.bytes is lower than the producer's
                self._backlog.append(job)
                return
            self.pending -= 1
            if err is not None:
                self._failed = err.name()
                return
            job.on_done()

        try:
            self._producer.produce(self.topic, key=key, value=value, headers=headers, on_delivery=delivered)
        except BufferError:
            return False
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.MSG_SIZE_TOO_LARGE and job.limit > 0:
                job.limit //= 2  # our estimate of the framing was short: cut deeper
                return self._produce(job)
            self.pending -= 1
            self._failed = _error_name(exc)
        return True

    def poll(self) -> None:
        """Run the acknowledgements that came in and send on the backlog. Raises
        `DeadLetterProducerFailed` (once per failure) when a write failed for good."""
        self._producer.poll(0)
        while self._backlog and self._produce(self._backlog[0]):
            self._backlog.popleft()
        self._raise_failed()

    def flush(self, timeout: float) -> int:
        """Wait for outstanding writes; returns how many are still unacknowledged. Raises as
        `poll` does."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            remaining: int = self._producer.flush(max(0.0, min(0.5, deadline - time.monotonic())))
            if (remaining == 0 and not self._backlog) or time.monotonic() >= deadline:
                self._raise_failed()
                return remaining + len(self._backlog)

    def _raise_failed(self) -> None:
        if self._failed is not None:
            name, self._failed = self._failed, None
            raise DeadLetterProducerFailed(f"dead-letter write failed: {name}")


@dataclass(slots=True, eq=False)
class _Write:
    src: SourceRecord
    headers: Headers
    on_done: Callable[[], None]
    limit: int  # bytes the dead letter may take: key, value and headers


def _error_name(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.name() if isinstance(err, KafkaError) else type(exc).__name__
