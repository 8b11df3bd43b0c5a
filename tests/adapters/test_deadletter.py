"""Dead letters too large for the topic are cut, never dropped (consumer/adapters/kafka/deadletter.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumer.adapters.kafka.deadletter import (
    TRUNCATED,
    DeadLetter,
    DeadLetterWriter,
    SourceRecord,
    dead_letter_headers,
    header,
    header_bytes,
    truncated,
)
from consumer.config.settings import KafkaSettings
from consumer.errors import DeadLetterProducerFailed


def record(
    value: bytes, key: bytes = b"k-1", headers: list[tuple[str, str | bytes | None]] | None = None
) -> SourceRecord:
    return SourceRecord("orders", 3, 42, 1_700_000_000_000, key, value, headers or [])


def fboc_headers(src: SourceRecord) -> list[tuple[str, str | bytes | None]]:
    return dead_letter_headers(
        src, DeadLetter("decode", "undecodable", "not Avro"), "g", datetime(2026, 1, 1, tzinfo=UTC)
    )


def test_the_value_is_cut_to_fit_and_the_original_size_is_said() -> None:
    src = record(b"v" * 999_900, headers=[("trace", b"t-1")])
    headers = fboc_headers(src)
    key, value, out = truncated(src, headers, 100_000)
    assert key == b"k-1"
    assert value is not None
    assert src.value is not None
    assert src.value.startswith(value)
    assert len(key) + len(value) + header_bytes(out) == 100_000
    assert header(out, TRUNCATED) == "999900"
    assert header(out, "trace") == "t-1"
    assert (
        header(out, "fboc.original.topic"),
        header(out, "fboc.original.partition"),
        header(out, "fboc.original.offset"),
    ) == ("orders", "3", "42")


def test_key_and_headers_too_large_go_too_but_the_fboc_headers_stay() -> None:
    src = record(b"v" * 10, key=b"K" * 50_000, headers=[("big", b"h" * 80_000)])
    key, value, out = truncated(src, fboc_headers(src), 20_000)
    assert (key, value) == (None, b"v" * 10)
    assert header(out, "big") is None
    assert header(out, TRUNCATED) == "10"
    assert header(out, "fboc.original.offset") == "42"
    assert header_bytes(out) + 10 <= 20_000


def test_a_write_that_fails_for_good_raises_once_from_the_writer_and_is_never_acknowledged() -> None:
    # no broker at this address: the write times out, for good
    kafka = KafkaSettings(
        bootstrap_servers="127.0.0.1:9",
        group_id="g",
        dead_letter_topic="dlq",
        options={"message.timeout.ms": 200, "socket.connection.setup.timeout.ms": 1000},
    )
    writer = DeadLetterWriter(kafka)
    acked: list[int] = []
    writer.write(record(b"v"), DeadLetter("decode", "undecodable", "not Avro"), lambda: acked.append(1))
    with pytest.raises(DeadLetterProducerFailed, match=r"dead-letter write failed: _MSG_TIMED_OUT"):
        writer.flush(10)
    assert (acked, writer.pending) == ([], 0)
    writer.poll()  # raised once: the loop's shutdown may still drain and commit what is final
