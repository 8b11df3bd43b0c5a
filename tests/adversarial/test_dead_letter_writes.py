"""Dead-letter writes the producer or the broker refuse never stop fboc and never lose the
record: a full producer queue waits in a backlog, a dead letter too large for the topic is cut
(consumer/adapters/kafka/deadletter.py), on the real broker."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.adapters.kafka.deadletter import DeadLetter, DeadLetterWriter, SourceRecord, header, headers_of
from consumer.config.settings import KafkaSettings
from tests.helpers import read_all
from tests.kafka_broker import Broker

pytestmark = pytest.mark.kafka

DL = DeadLetter("decode", "undecodable", "not Avro")


def writer(bootstrap: str, topic: str, **options: Any) -> DeadLetterWriter:
    return DeadLetterWriter(
        KafkaSettings(bootstrap_servers=bootstrap, group_id="g", dead_letter_topic=topic, options=options)
    )


def source(offset: int, value: bytes) -> SourceRecord:
    return SourceRecord(
        "orders", 0, offset, 1_700_000_000_000, f"k-{offset}".encode(), value, [("trace", b"t")]
    )


def drain(dead_letters: DeadLetterWriter, done: list[int], expected: int) -> None:
    deadline = time.monotonic() + 30
    while len(done) < expected and time.monotonic() < deadline:
        dead_letters.poll()
        time.sleep(0.01)
    assert dead_letters.flush(10) == 0


def test_a_full_producer_queue_holds_writes_in_a_backlog_and_sends_them_all(
    kafka: Broker, new_topic: Any
) -> None:
    topic = new_topic(1)
    dead_letters = writer(kafka.bootstrap, topic, **{"queue.buffering.max.messages": 2})
    done: list[int] = []
    for i in range(30):  # the producer takes two at a time: write() must not raise
        dead_letters.write(source(i, b"v"), DL, lambda i=i: done.append(i))  # type: ignore[misc]
    drain(dead_letters, done, 30)
    assert sorted(done) == list(range(30))
    assert sorted(m.offset() or 0 for m in read_all(kafka.bootstrap, topic, 30)) == list(range(30))


def test_a_topic_that_takes_less_than_the_producer_gets_the_dead_letter_cut_further(kafka: Broker) -> None:
    topic = f"small-dlq-{time.time_ns()}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for future in admin.create_topics(
        [NewTopic(topic, 1, 1, config={"max.message.bytes": "200000"})]
    ).values():
        future.result(30)
    dead_letters = writer(kafka.bootstrap, topic)
    value = b"\x02" + b"\xff" * 999_899
    done: list[int] = []
    dead_letters.write(source(7, value), DL, lambda: done.append(7))
    drain(dead_letters, done, 1)
    assert done == [7]
    (dead,) = read_all(kafka.bootstrap, topic, 1)
    h = headers_of(dead)
    body = dead.value() or b""
    assert (header(h, "fboc.truncated"), header(h, "fboc.original.offset")) == ("999900", "7")
    assert 0 < len(body) < 200_000
    assert value.startswith(body)
