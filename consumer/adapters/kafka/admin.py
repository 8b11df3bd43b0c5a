"""Offset lookups shared by the tools (demo, benchmarks, dlq commands) and the tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition


def _consumer(bootstrap: str, group: str | None = None, **extra: Any) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or f"fboc-admin-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            **extra,
        }
    )


def committed_offsets(
    bootstrap: str, group: str, topic: str, partitions: int, attempts: int = 40
) -> dict[int, int]:
    """The group's committed offsets (negative: none yet), retried while the coordinator loads."""
    consumer = _consumer(bootstrap, group)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        for attempt in range(attempts):
            try:
                return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
            except KafkaException:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.25)
    finally:
        consumer.close()
    raise AssertionError("unreachable")


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = _consumer(bootstrap)
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()
