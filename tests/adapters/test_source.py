"""KafkaSource's boundary: confluent_kafka's partitions and commit results become fboc's own
`TopicPartition` before the loop sees them. No broker: nothing here connects."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, Message
from confluent_kafka import TopicPartition as KafkaTopicPartition

from consumer.adapters.kafka.source import KafkaSource, SourceRecord
from consumer.config.settings import KafkaSettings
from consumer.core.offsets import TopicPartition


class Events:
    def __init__(self) -> None:
        self.failed: list[tuple[list[TopicPartition], str]] = []
        self.errors: list[KafkaError] = []

    def on_assign(self, tps: list[TopicPartition]) -> None: ...
    def on_revoke(self, tps: list[TopicPartition]) -> None: ...
    def on_lost(self, tps: list[TopicPartition]) -> None: ...

    def on_commit_failed(self, tps: list[TopicPartition], error: str) -> None:
        self.failed.append((tps, error))

    def on_error(self, err: KafkaError) -> None:
        self.errors.append(err)

    def on_stats(self, raw: str) -> None: ...


@pytest.fixture
def source() -> Iterator[KafkaSource]:
    src = KafkaSource(KafkaSettings(bootstrap_servers="127.0.0.1:9", group_id="boundary"), ["orders"])
    yield src
    asyncio.run(src.finish({}, 5))


def test_a_failed_asynchronous_commit_reaches_the_loop_as_fboc_partitions(source: KafkaSource) -> None:
    events = Events()
    source._on_commit(KafkaError(KafkaError._TIMED_OUT), [KafkaTopicPartition("orders", 0, 5)])
    assert events.failed == []  # nobody subscribed yet: dropped, not raised
    source.subscribe(events)
    source._on_commit(None, [KafkaTopicPartition("orders", 1, 7)])  # it succeeded
    source._on_commit(
        KafkaError(KafkaError._TIMED_OUT),
        [KafkaTopicPartition("orders", 0, 5), KafkaTopicPartition("b", 2, 1)],
    )
    [(tps, error)] = events.failed
    assert tps == [TopicPartition("orders", 0), TopicPartition("b", 2)]
    assert all(type(tp) is TopicPartition for tp in tps)
    assert error == "_TIMED_OUT"


def test_errors_go_to_the_subscriber_and_assignment_is_fboc_partitions(source: KafkaSource) -> None:
    events = Events()
    source.subscribe(events)
    source._on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert [e.code() for e in events.errors] == [KafkaError._ALL_BROKERS_DOWN]
    assert source.assignment() == []


def test_a_consumed_message_is_copied_field_by_field() -> None:
    msg = Message(
        topic="orders",
        partition=3,
        offset=42,
        key=b"k",
        value=b"v",
        headers=[("h", b"1")],
        timestamp=(1, 1_700_000_000_000),
    )
    assert SourceRecord.of(msg) == SourceRecord("orders", 3, 42, 1_700_000_000_000, b"k", b"v", [("h", b"1")])


@pytest.mark.parametrize("missing", ["topic", "partition", "offset"])
def test_a_message_without_topic_partition_or_offset_is_refused(missing: str) -> None:
    fields = {"topic": "orders", "partition": 0, "offset": 1}
    del fields[missing]
    with pytest.raises(ValueError, match="not a consumed message"):
        SourceRecord.of(Message(value=b"v", **fields))  # type: ignore[arg-type]
