"""structlog setup with redaction (docs/design.md invariant 5) and the Prometheus metrics."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
import traceback
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from consumer.config.settings import STANDARD_EVENTS
from consumer.telemetry.match_quality import MatchQuality

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series are noise

SECRET_KEYS = frozenset(
    {"access_token", "app_secret", "authorization", "token", "password", "appsecret_proof"}
)
REDACTED = "[redacted]"
_secrets: set[str] = set()
# credentials in text fboc did not write (a library's message, a request line an exception quotes)
_CREDENTIALS = re.compile(
    r"(?i)(authorization\s*:\s*)[^\r\n'\"\\]+"
    r"|(\bbearer\s+|\bbasic\s+|(?:access_token|app_secret|appsecret_proof|token|password)"
    r"\\?[\"']?\s*[:=]\s*\\?[\"']?)[^\s&,;'\"\\]+"
)
CUSTOM_EVENT_LABEL = "custom"
KAFKA_LOGGER = logging.getLogger("librdkafka")
"""Passed as `logger` to every confluent-kafka client: librdkafka's lines become JSON log lines."""


def event_label(event_name: str) -> str:
    """A metric label for an event name: standard events by name, every other name `custom`
    (a passed-through custom name is producer data: unbounded, and it may even hold PII)."""
    return event_name if event_name in STANDARD_EVENTS else CUSTOM_EVENT_LABEL


def register_secret(value: str | None) -> None:
    """Any log value containing this string is redacted, wherever it appears."""
    if value and len(value) >= 4:
        _secrets.add(value)


def _redact_credential(match: re.Match[str]) -> str:
    return (match.group(1) or match.group(2)) + REDACTED


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _CREDENTIALS.sub(_redact_credential, value)
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in SECRET_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = REDACTED if key.lower() in SECRET_KEYS else _scrub(event_dict[key])
    return event_dict


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        return exc_info[1] if isinstance(exc_info[1], BaseException) else None
    return sys.exc_info()[1] if exc_info else None


def describe_exception(exc: BaseException) -> str:
    """`Type` plus the frames (file:line in function), never locals or source lines. Only the
    message of fboc's own exception types is kept: others may quote data (aiohttp quotes the
    request line or header it refused, a KeyError its key)."""
    kind = type(exc)
    text = kind.__qualname__
    if kind.__module__.startswith("consumer.") and str(exc):
        text += f": {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    where = " < ".join(
        f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}" for f in reversed(frames[-8:])
    )
    return f"{text} (at {where})" if where else text


def render_exception(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replaces `exc_info` (structlog's or a stdlib record's) by one `exception` string."""
    exc = _exception_of(event_dict.pop("exc_info", None))
    if exc is not None:
        event_dict["exception"] = describe_exception(exc)
    event_dict.pop("stack_info", None)
    return event_dict


def first_line_only(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A library's message, its first line only: asyncio appends the repr of the failed task,
    which quotes its exception's message (and so maybe a record's data)."""
    event = event_dict.get("event")
    if isinstance(event, str) and "\n" in event:
        event_dict["event"] = event.split("\n", 1)[0]
    return event_dict


class RateLimit(logging.Filter):
    """At most `limit` lines per `window` seconds from one library logger. aiohttp writes a line
    for every malformed request to the health port, so without this anyone who can reach the
    port decides how much fboc logs. The first line after a quiet window says how many were
    dropped (`suppressed`)."""

    def __init__(self, limit: int = 10, window: float = 60.0, clock: Any = None) -> None:
        super().__init__()
        self.limit, self.window = limit, window
        self._clock = clock or time.monotonic
        self._started = -window
        self._passed = 0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        if now - self._started >= self.window:
            self._started, self._passed = now, 0
            if self.suppressed:
                record.suppressed = self.suppressed
                self.suppressed = 0
        if self._passed >= self.limit:
            self.suppressed += 1
            return False
        self._passed += 1
        return True


# The loggers a client of the health port can make speak.
RATE_LIMITED_LOGGERS = ("aiohttp.server", "aiohttp.access", "aiohttp.web")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on sys.stderr as it is when a line is written (see `_stderr_logger`)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    structlog.get_logger("fboc").critical("uncaught_exception", exc_info=exc)


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        structlog.get_logger("fboc").critical(
            "uncaught_exception", thread=getattr(args.thread, "name", None), exc_info=args.exc_value
        )


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    """A logger on sys.stderr as it is when the line is written, not as it was when logging was
    configured: a stream swapped out since (test capture, a closed pipe) must not break logging."""
    return structlog.PrintLogger(sys.stderr)


def configure_logging(log_format: str = "json", level: int = logging.INFO) -> None:
    """structlog to stderr, and every stdlib logger (aiohttp, asyncio, librdkafka through
    `KAFKA_LOGGER`, warnings, uncaught exceptions) through the same redaction and renderer."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            render_exception,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(("suppressed",)),
                stamp,
                first_line_only,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                render_exception,
                redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        if isinstance(old, _StderrHandler):  # configured again (tests, `fboc dlq` after load)
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in RATE_LIMITED_LOGGERS:
        library = logging.getLogger(name)
        for old_filter in library.filters[:]:
            if isinstance(old_filter, RateLimit):
                library.removeFilter(old_filter)
        library.addFilter(RateLimit())
    logging.captureWarnings(True)
    sys.excepthook = _uncaught
    threading.excepthook = _uncaught_in_thread


def observe_many(histogram: Histogram, amount: float, count: int) -> None:
    """What `histogram.observe(amount)` does `count` times, in one step (prometheus_client's
    `observe` has no count): the ledger observes the records of one poll, answered together,
    at once. A histogram without labels; tests/telemetry checks it against `observe`."""
    if count <= 0:
        return
    histogram._sum.inc(amount * count)
    for i, bound in enumerate(histogram._upper_bounds):
        if amount <= bound:
            histogram._buckets[i].inc(count)
            break


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.records_consumed = Counter(
            "fboc_records_consumed_total", "Kafka records consumed", ["topic"], registry=r
        )
        self.record_outcomes = Counter(
            "fboc_record_outcomes_total", "Final outcomes of records", ["outcome", "reason"], registry=r
        )
        self.events_sent = Counter(
            "fboc_events_sent_total",
            "Events acknowledged by Meta",
            ["destination", "event_set_id", "event_name"],
            registry=r,
        )
        self.batch_events = Histogram(
            "fboc_batch_events",
            "Events per request",
            buckets=(1, 10, 50, 100, 250, 500, 750, 1000),
            registry=r,
        )
        self.request_seconds = Histogram(
            "fboc_graph_request_seconds", "Graph API request latency", ["destination"], registry=r
        )
        self.graph_errors = Counter(
            "fboc_graph_errors_total", "Graph API errors by code", ["destination", "code"], registry=r
        )
        self.retries = Counter(
            "fboc_graph_retries_total", "Retried requests", ["destination", "kind"], registry=r
        )
        self.in_flight = Gauge(
            "fboc_requests_in_flight", "Graph requests in flight", ["destination"], registry=r
        )
        self.buffered = Gauge("fboc_buffered_records", "Records consumed, outcome not final", registry=r)
        self.paused = Gauge("fboc_paused_partitions", "Partitions paused by backpressure", registry=r)
        self.record_ack_seconds = Histogram(
            "fboc_record_ack_seconds",
            "From a record's poll to its final outcome",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.commits = Counter("fboc_commits_total", "Offset commits", registry=r)
        self.consumer_lag = Gauge(
            "fboc_consumer_lag_records", "Records behind the log end", ["topic", "partition"], registry=r
        )
        self.dead_letters = Counter(
            "fboc_dead_letter_writes_total", "Records dead-lettered", ["stage", "reason"], registry=r
        )
        self.destination_halted = Gauge(
            "fboc_destination_halted",
            "1 while a destination is stopped by a token error",
            ["destination"],
            registry=r,
        )
        self.held_records = Gauge(
            "fboc_held_records", "Records held for a retry (schema registry unavailable)", registry=r
        )
        self.normalization_dropped = Counter(
            "fboc_normalization_dropped_total",
            "Customer fields dropped as not normalisable",
            ["key"],
            registry=r,
        )
        self.custom_data_dropped = Counter(
            "fboc_custom_data_dropped_total",
            "Custom properties dropped as customer data",
            ["reason"],
            registry=r,
        )
        # fboc_match_key_events_total and fboc_match_keys_per_event (see match_quality.py)
        self.match_quality = MatchQuality()
        r.register(self.match_quality)


METRICS = Metrics()
