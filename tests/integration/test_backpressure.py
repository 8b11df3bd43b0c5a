"""librdkafka keeps a partition's pause state across revoke and re-assignment: a partition paused
by backpressure, revoked, and handed back after fboc resumed must be resumed too, or it is never
read again (seen as a stuck consumer after a rebalance)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Consumer

from consumer.adapters.kafka.source import KafkaSource
from consumer.config.settings import KafkaSettings
from consumer.core.offsets import TopicPartition
from consumer.runtime.backpressure import Backpressure
from tests.helpers import produce
from tests.kafka_broker import Broker

pytestmark = pytest.mark.kafka


async def test_partition_handed_back_paused_is_resumed(kafka: Broker, new_topic: Any, group_id: str) -> None:
    topic = new_topic(2)
    produce(kafka.bootstrap, topic, [(b"k", b"v", p) for p in (0, 1) for _ in range(20)])
    backpressure: Backpressure
    settings = KafkaSettings(
        bootstrap_servers=kafka.bootstrap,
        group_id=group_id,
        options={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
    )

    def assigned(tps: list[TopicPartition]) -> None:
        backpressure.assigned(tps)

    source = KafkaSource(
        settings,
        [topic],
        on_assign=assigned,
        on_revoke=lambda tps: None,
        on_lost=lambda tps: None,
        on_error=lambda err: None,
        on_stats=lambda raw: None,
        on_commit=lambda err, parts: None,
    )
    backpressure = Backpressure(10, source)
    read: list[int] = []

    async def turn(other: Consumer | None = None) -> None:
        read.extend(m.partition() or 0 for m in await source.poll(100, 0.1) if m.error() is None)
        if other is not None:
            other.consume(10, 0.1)
        backpressure.update(backpressure.limit if backpressure.paused else 0)

    async def until(what: str, done: Any, other: Consumer | None = None) -> None:
        deadline = time.monotonic() + 60
        while not done():
            assert time.monotonic() < deadline, what
            await turn(other)

    try:
        await until("both partitions", lambda: len(source.assignment()) == 2)
        backpressure.update(10)  # full: both partitions paused
        assert backpressure.paused
        # a second member takes one (paused) partition away
        other = Consumer(
            {
                "bootstrap.servers": kafka.bootstrap,
                "group.id": group_id,
                "partition.assignment.strategy": "cooperative-sticky",
                "enable.auto.commit": False,
                "auto.offset.reset": "latest",
                # it may close before its join completes, and then the group
                # waits out its session (45 s by default) to hand the partition back
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
            }
        )
        other.subscribe([topic])
        await until("the rebalance", lambda: len(source.assignment()) == 1, other)
        backpressure.update(0)  # drained: resume what we still have
        assert not backpressure.paused
        (kept,) = source.assignment()
        other.close()  # ... and hands the partition back, still paused inside librdkafka
        await until("the partition back", lambda: len(source.assignment()) == 2)
        returned = 1 - kept[1]
        read.clear()
        await until("records of the returned partition", lambda: returned in read)
    finally:
        await source.finish({}, 10)
