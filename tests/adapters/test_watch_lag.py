"""fboc_consumer_lag_records from librdkafka's statistics: a revoked partition's series goes.

librdkafka keeps a partition it no longer owns in its statistics ("desired": false) with the lag
it last saw; reported as is, that stale value would add to the topic's lag (the dashboard) and
keep FbocNoCommits firing after the new owner caught up.
"""

from __future__ import annotations

import orjson

from consumer.adapters.kafka.watch import BrokerWatch
from consumer.telemetry.metrics import METRICS


def stats(topic: str, partitions: dict[str, dict[str, object]]) -> str:
    return orjson.dumps({"topics": {topic: {"partitions": partitions}}}).decode()


def lag(topic: str, partition: str) -> float | None:
    return METRICS.registry.get_sample_value(
        "fboc_consumer_lag_records", {"topic": topic, "partition": partition}
    )


def test_assigned_partitions_report_lag_and_revoked_ones_disappear() -> None:
    watch = BrokerWatch(60)
    watch.on_stats(
        stats(
            "lag-t",
            {
                "0": {"consumer_lag": 94, "desired": True},
                "1": {"consumer_lag": 3, "desired": True},
                "-1": {"consumer_lag": -1, "desired": False},
            },
        )
    )
    assert lag("lag-t", "0") == 94
    assert lag("lag-t", "1") == 3
    assert lag("lag-t", "-1") is None
    # partition 0 moved to another consumer: librdkafka still says 94
    watch.on_stats(
        stats(
            "lag-t", {"0": {"consumer_lag": 94, "desired": False}, "1": {"consumer_lag": 0, "desired": True}}
        )
    )
    assert lag("lag-t", "0") is None
    assert lag("lag-t", "1") == 0
    # and back again
    watch.on_stats(stats("lag-t", {"0": {"consumer_lag": 7, "desired": True}}))
    assert lag("lag-t", "0") == 7


def test_unreadable_statistics_change_nothing() -> None:
    watch = BrokerWatch(60)
    watch.on_stats(stats("lag-u", {"0": {"consumer_lag": 5, "desired": True}}))
    for raw in (
        "not json",
        "[]",
        '{"topics": []}',
        '{"topics": {"lag-u": {"partitions": {"0": "x"}}}}',
        stats("lag-u", {"0": {"consumer_lag": "many"}}),
    ):
        watch.on_stats(raw)
    assert lag("lag-u", "0") == 5
