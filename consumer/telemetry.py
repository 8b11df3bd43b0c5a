"""structlog setup with redaction (DESIGN invariant 5) and the Prometheus metrics."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series are noise

SECRET_KEYS = frozenset({"access_token", "app_secret", "authorization", "token", "password",
                         "appsecret_proof"})
REDACTED = "[redacted]"
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Any log value containing this string is redacted, wherever it appears."""
    if value and len(value) >= 4:
        _secrets.add(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in SECRET_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = REDACTED if key.lower() in SECRET_KEYS else _scrub(event_dict[key])
    return event_dict


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    """A logger on sys.stderr as it is when the line is written, not as it was when logging was
    configured: a stream swapped out since (test capture, a closed pipe) must not break logging."""
    return structlog.PrintLogger(sys.stderr)


def configure_logging(log_format: str = "json", level: int = logging.INFO) -> None:
    renderer: Any = (structlog.processors.JSONRenderer() if log_format == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.records_consumed = Counter("fboc_records_consumed_total",
                                        "Kafka records consumed", ["topic"], registry=r)
        self.record_outcomes = Counter("fboc_record_outcomes_total",
                                       "Final outcomes of records", ["outcome", "reason"],
                                       registry=r)
        self.events_sent = Counter("fboc_events_sent_total", "Events acknowledged by Meta",
                                   ["destination", "event_set_id", "event_name"], registry=r)
        self.batch_events = Histogram("fboc_batch_events", "Events per request",
                                      buckets=(1, 10, 50, 100, 250, 500, 750, 1000), registry=r)
        self.request_seconds = Histogram("fboc_graph_request_seconds", "Graph API request latency",
                                         ["destination"], registry=r)
        self.graph_errors = Counter("fboc_graph_errors_total", "Graph API errors by code",
                                    ["destination", "code"], registry=r)
        self.retries = Counter("fboc_graph_retries_total", "Retried requests",
                               ["destination", "kind"], registry=r)
        self.in_flight = Gauge("fboc_requests_in_flight", "Graph requests in flight",
                               ["destination"], registry=r)
        self.buffered = Gauge("fboc_buffered_records", "Records consumed, outcome not final",
                              registry=r)
        self.paused = Gauge("fboc_paused_partitions", "Partitions paused by backpressure",
                            registry=r)
        self.record_ack_seconds = Histogram(
            "fboc_record_ack_seconds", "From a record's poll to its final outcome",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r)
        self.commits = Counter("fboc_commits_total", "Offset commits", registry=r)
        self.consumer_lag = Gauge("fboc_consumer_lag_records", "Records behind the log end",
                                  ["topic", "partition"], registry=r)
        self.dead_letters = Counter("fboc_dead_letter_writes_total", "Records dead-lettered",
                                    ["stage", "reason"], registry=r)
        self.destination_halted = Gauge("fboc_destination_halted",
                                        "1 while a destination is stopped by a token error",
                                        ["destination"], registry=r)
        self.normalization_dropped = Counter("fboc_normalization_dropped_total",
                                             "Customer fields dropped as not normalisable",
                                             ["key"], registry=r)
        self.custom_data_dropped = Counter("fboc_custom_data_dropped_total",
                                           "Custom properties dropped as customer data",
                                           ["reason"], registry=r)


METRICS = Metrics()
