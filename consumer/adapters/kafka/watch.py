"""What librdkafka tells fboc about its brokers: outages (recover, or stop non-zero when one
lasts past `kafka.unreachable_timeout_seconds`) and per-partition consumer lag."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import orjson
import structlog
from confluent_kafka import KafkaError

from consumer.errors import BrokersUnreachable
from consumer.telemetry.metrics import METRICS

log = structlog.get_logger("fboc.kafka")

PROBE_INTERVAL_S = 5.0  # while every broker is down, ask for metadata this often


class BrokerWatch:
    def __init__(self, unreachable_timeout_s: float) -> None:
        self._timeout = unreachable_timeout_s
        self._down_since: float | None = None
        self._last_probe = 0.0

    def on_error(self, err: KafkaError) -> None:
        """librdkafka's error_cb (poll thread)."""
        if err.code() == KafkaError._ALL_BROKERS_DOWN and self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("brokers_down", error=err.name())
        elif err.fatal():
            log.error("kafka_fatal", error=err.name())

    def on_stats(self, raw: str) -> None:
        """librdkafka's stats_cb: consumer lag per partition, as a gauge."""
        try:
            stats = orjson.loads(raw)
            for topic, data in stats.get("topics", {}).items():
                for partition, p in data.get("partitions", {}).items():
                    lag = p.get("consumer_lag", -1)
                    if p.get("desired") is False:
                        # revoked: librdkafka keeps reporting the lag it last saw; the
                        # partition's new owner reports the real one
                        METRICS.consumer_lag.remove(topic, partition)
                    elif partition != "-1" and isinstance(lag, int) and lag >= 0:
                        METRICS.consumer_lag.labels(topic, partition).set(lag)
        except (orjson.JSONDecodeError, AttributeError):
            log.debug("stats_unreadable")

    async def check(self, got_messages: bool, probe: Callable[[], Awaitable[bool]]) -> None:
        """Each loop turn: clear an outage once brokers answer; raise `BrokersUnreachable` when it
        lasts too long."""
        if self._down_since is None:
            return
        now = time.monotonic()
        back = got_messages
        if not back and now - self._last_probe >= PROBE_INTERVAL_S:
            self._last_probe = now
            back = await probe()
        if back:
            log.info("brokers_back", down_s=round(now - self._down_since, 1))
            self._down_since = None
        elif now - self._down_since > self._timeout:
            raise BrokersUnreachable(
                f"no Kafka broker reachable for {self._timeout:.0f}s (kafka.unreachable_timeout_seconds)"
            )
