"""The Kafka consumer: manual commits, cooperative-sticky, polled off the event loop.

`consume` runs in one worker thread so the loop stays free; librdkafka calls the rebalance
callbacks from inside it, and they hand the work back to the loop (see Pipeline.on_revoke).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from consumer.config import KafkaSettings
from consumer.kafka.offsets import TopicPartition as TP

RebalanceCallback = Callable[[list[TP]], None]


def consumer_config(kafka: KafkaSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "group.id": kafka.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": "earliest",
    }
    config.update(kafka.options)
    return config


class KafkaSource:
    def __init__(self, kafka: KafkaSettings, topics: list[str], *, on_assign: RebalanceCallback,
                 on_revoke: RebalanceCallback, on_lost: RebalanceCallback,
                 extra_config: dict[str, Any] | None = None) -> None:
        self._consumer = Consumer({**consumer_config(kafka), **(extra_config or {})})
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="fboc-poll")
        self._consumer.subscribe(
            topics,
            on_assign=lambda _c, parts: on_assign(_tps(parts)),
            on_revoke=lambda _c, parts: on_revoke(_tps(parts)),
            on_lost=lambda _c, parts: on_lost(_tps(parts)),
        )

    async def poll(self, max_records: int, wait_s: float) -> list[Message]:
        loop = asyncio.get_running_loop()
        messages: list[Message] = await loop.run_in_executor(
            self._executor, self._consumer.consume, max(1, max_records), wait_s)
        return messages

    def commit(self, offsets: dict[TP, int]) -> None:
        """Synchronous commit of the given next-offsets. Raises KafkaException."""
        if offsets:
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                  asynchronous=False)

    def assignment(self) -> list[TP]:
        return _tps(self._consumer.assignment())

    def pause(self, tps: list[TP]) -> None:
        if tps:
            self._consumer.pause([TopicPartition(t, p) for t, p in tps])

    def resume(self, tps: list[TP]) -> None:
        if tps:
            self._consumer.resume([TopicPartition(t, p) for t, p in tps])

    def close(self) -> None:
        with contextlib.suppress(KafkaException):
            self._consumer.close()
        self._executor.shutdown(wait=False)


def _tps(parts: list[TopicPartition]) -> list[TP]:
    return [(p.topic, p.partition) for p in parts]


def position(msg: Message) -> tuple[TP, int]:
    """(topic, partition), offset of a consumed message."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("not a consumed message")
    return (topic, partition), offset
