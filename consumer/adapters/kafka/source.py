"""The Kafka consumer: manual commits, cooperative-sticky, polled off the event loop.

`consume` runs in one worker thread so the loop stays free; librdkafka calls the rebalance
callbacks from inside it, and they hand the work back to the loop (see Pipeline.on_revoke).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumer.config.settings import KafkaSettings
from consumer.core.offsets import TopicPartition as TP
from consumer.telemetry.metrics import KAFKA_LOGGER

RebalanceCallback = Callable[[list[TP]], None]
STATS_INTERVAL_MS = 5000


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
    def __init__(
        self,
        kafka: KafkaSettings,
        topics: list[str],
        *,
        on_assign: RebalanceCallback,
        on_revoke: RebalanceCallback,
        on_lost: RebalanceCallback,
        on_error: Callable[[KafkaError], None],
        on_stats: Callable[[str], None],
        on_commit: Callable[[KafkaError | None, list[TopicPartition]], None],
    ) -> None:
        self._consumer = Consumer(
            {
                **consumer_config(kafka),
                "error_cb": on_error,
                "stats_cb": on_stats,
                "on_commit": on_commit,
                "statistics.interval.ms": STATS_INTERVAL_MS,
            }
        )
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
            self._executor, self._consumer.consume, max(1, max_records), wait_s
        )
        return messages

    async def reachable(self, wait_s: float) -> bool:
        """Whether a broker answers a metadata request (run on the poll thread)."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, lambda: self._consumer.list_topics(timeout=wait_s))
        except KafkaException:
            return False
        return True

    def commit(self, offsets: dict[TP, int], *, asynchronous: bool = True) -> None:
        """Commit next-offsets. Asynchronous commits report through `on_commit`; a synchronous
        one blocks until the coordinator answers (only from the poll thread or at the end)."""
        if not offsets:
            return
        parts = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        if asynchronous:
            self._consumer.commit(offsets=parts, asynchronous=True)
        else:
            self._consumer.commit(offsets=parts, asynchronous=False)

    async def finish(self, offsets: dict[TP, int], wait_s: float) -> bool:
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

    def assignment(self) -> list[TP]:
        return _tps(self._consumer.assignment())

    def pause(self, tps: list[TP]) -> None:
        if tps:
            self._consumer.pause([TopicPartition(t, p) for t, p in tps])

    def resume(self, tps: list[TP]) -> None:
        if tps:
            self._consumer.resume([TopicPartition(t, p) for t, p in tps])


def _tps(parts: list[TopicPartition]) -> list[TP]:
    return [(p.topic, p.partition) for p in parts]


def position(msg: Message) -> tuple[TP, int]:
    """(topic, partition), offset of a consumed message."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("not a consumed message")
    return (topic, partition), offset
