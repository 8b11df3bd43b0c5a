from __future__ import annotations

import asyncio
import gc
import io
import logging
import sys
import threading
import time
import warnings
from typing import Any

import orjson
import pytest
import structlog
from aiohttp.http_exceptions import BadHttpMessage
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry, Histogram

from consumer.ops.dlq.stats import DlqError
from consumer.telemetry.metrics import (
    KAFKA_LOGGER,
    RateLimit,
    configure_logging,
    event_label,
    observe_many,
    redact,
    register_secret,
)


def test_secrets_are_redacted_by_key_and_by_value(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    register_secret("EAAB-planted-token-123")
    log = structlog.get_logger("t")
    log.info(
        "x",
        access_token="abc",
        authorization="Bearer zzz",
        detail="failed with EAAB-planted-token-123 in it",
        nested={"app_secret": "s3"},
    )
    out = capsys.readouterr().err
    for leaked in ("abc", "zzz", "EAAB-planted-token-123", "s3"):
        assert f'"{leaked}"' not in out
        assert leaked not in out.replace("[redacted]", "")
    assert out.count("[redacted]") == 4


def test_unnormalisable_fields_are_counted_by_key_not_value() -> None:
    from consumer.config.settings import DestinationSettings
    from consumer.core.dialects.common import user_data_for
    from consumer.telemetry.metrics import METRICS

    before = METRICS.normalization_dropped.labels("em")._value.get()
    user = user_data_for(
        {"em": ["not-an-email"], "external_id": ["u1"]},
        DestinationSettings(name="d"),
        1_700_000_000,
        1_700_000_000,
        "physical_store",
        "meta_baseline",
    )
    assert "em" not in user
    assert METRICS.normalization_dropped.labels("em")._value.get() == before + 1


def test_logging_follows_stderr_swapped_after_configuring(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream that was stderr when logging was configured, and is closed since, must not make
    every later log line fail (seen as "I/O operation on closed file" in the next test)."""
    old = io.StringIO()
    monkeypatch.setattr(sys, "stderr", old)
    configure_logging("json")
    old.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    structlog.get_logger("t").info("after_swap")
    assert '"event": "after_swap"' in now.getvalue()


PLANTED = "EAAB-planted-by-a-client-55d1"  # not registered: only patterns and types can catch it


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` parsed as JSON (fails on the first line that is not)."""
    return [orjson.loads(line) for line in text.splitlines()]


def test_library_log_lines_are_json_without_exception_messages(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    try:
        raise BadHttpMessage(f"Invalid header value char: b'Authorization: Bearer {PLANTED}\\x01'")
    except BadHttpMessage:
        logging.getLogger("aiohttp.server").exception("Error handling request from 127.0.0.1")
    logging.getLogger("asyncio").error("Task exception: access_token=%s&x=1", PLANTED)
    with warnings.catch_warnings():  # pytest records warnings itself: capture them again
        warnings.simplefilter("always")
        logging.captureWarnings(False)
        configure_logging("json")
        warnings.warn(f"unverified request with 'Authorization': 'Bearer {PLANTED}'", stacklevel=1)
    err = capsys.readouterr().err
    assert PLANTED not in err
    lines = json_lines(err)
    assert [line.get("logger") for line in lines] == ["aiohttp.server", "asyncio", "py.warnings"]
    assert lines[0]["level"] == "error"
    assert lines[0]["exception"].startswith("BadHttpMessage (at test_telemetry.py:")
    assert lines[1]["event"] == "Task exception: access_token=[redacted]&x=1"


def test_fbocs_own_exceptions_keep_their_message(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    try:
        raise DlqError("topic 'x' does not exist")
    except DlqError:
        structlog.get_logger("t").exception("failed")
    try:
        raise KeyError("person@example.com")
    except KeyError:
        structlog.get_logger("t").exception("failed")
    first, second = json_lines(capsys.readouterr().err)
    assert first["exception"].startswith("DlqError: topic 'x' does not exist (at test_telemetry.py:")
    assert second["exception"].startswith("KeyError (at ")
    assert "person@example.com" not in second["exception"]


def test_credentials_in_free_text_are_redacted() -> None:
    cases = {
        f"b'Authorization: Bearer {PLANTED}\\x01'": "b'Authorization: [redacted]\\x01'",
        f"Authorization : Basic {PLANTED}": "Authorization : [redacted]",
        f"GET /x?access_token={PLANTED}&y=1": "GET /x?access_token=[redacted]&y=1",
        f'{{"appsecret_proof": "{PLANTED}"}}': '{"appsecret_proof": "[redacted]"}',
        f"retry with bearer {PLANTED}, now": "retry with bearer [redacted], now",
        "no credentials at all: 3 tokens sent": "no credentials at all: 3 tokens sent",
    }
    for text, expected in cases.items():
        assert redact(None, "info", {"event": text}) == {"event": expected}


def test_librdkafka_lines_go_through_the_json_logs(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    producer = Producer(
        {"bootstrap.servers": "127.0.0.1:1", "logger": KAFKA_LOGGER, "reconnect.backoff.max.ms": 100}
    )
    deadline = time.monotonic() + 10
    while "librdkafka" not in capfd.readouterr().err and time.monotonic() < deadline:
        producer.poll(0.2)
    producer.poll(0.5)
    lines = json_lines(capfd.readouterr().err)
    assert all(line["logger"] == "librdkafka" for line in lines)
    assert time.monotonic() < deadline, "librdkafka logged nothing about the refused connection"


def test_uncaught_exceptions_are_json_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    configure_logging("json")
    try:
        raise ValueError(f"bad value {PLANTED}")
    except ValueError as exc:
        sys.excepthook(ValueError, exc, exc.__traceback__)
    thread = threading.Thread(target=lambda: int(f"x{PLANTED}"), name="worker")
    thread.start()
    thread.join()
    err = capsys.readouterr().err
    assert PLANTED not in err
    first, second = json_lines(err)
    assert (first["event"], first["level"]) == ("uncaught_exception", "critical")
    assert first["exception"].startswith("ValueError (at ")
    assert (second["thread"], second["exception"].split(" ")[0]) == ("worker", "ValueError")


def test_only_standard_event_names_are_metric_labels() -> None:
    assert event_label("Purchase") == "Purchase"
    assert event_label("AddToCart") == "AddToCart"
    for name in ("person@example.com", "Signed Up", "purchase", "", "x" * 10_000):
        assert event_label(name) == "custom"


def test_console_logs_show_no_locals_of_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """The console renderer would print a rich traceback with every frame's locals."""
    configure_logging("console")
    token = PLANTED  # a local of the failing frame
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("t").exception("failed", token_length=len(token))
        logging.getLogger("aiohttp.client").exception("client failed")
    err = capsys.readouterr().err
    assert PLANTED not in err
    # each event on one line, its exception (type and frames) on the next: no traceback body
    lines = err.splitlines()
    assert len(lines) == 4
    assert lines[1].startswith("RuntimeError (at test_telemetry.py:")
    assert lines[3].startswith("RuntimeError (at test_telemetry.py:")


def test_an_unretrieved_task_exception_is_one_line_without_its_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json")

    async def fail() -> None:
        raise ValueError("person@example.com is not a number")

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(fail())
        await asyncio.sleep(0.01)
        del task  # never awaited: asyncio logs "Task exception was never retrieved"

    asyncio.run(main())
    gc.collect()
    err = capsys.readouterr().err
    assert "person@example.com" not in err
    (line,) = json_lines(err)
    assert (line["logger"], line["event"]) == ("asyncio", "Task exception was never retrieved")
    assert line["exception"].startswith("ValueError (at ")


def test_a_flood_of_library_lines_from_the_health_port_is_rate_limited(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json")
    for i in range(500):
        logging.getLogger("aiohttp.server").error("Error handling request from 127.0.0.%d", i % 250)
    logging.getLogger("asyncio").error("not rate limited")
    lines = json_lines(capsys.readouterr().err)
    assert [line["logger"] for line in lines] == ["aiohttp.server"] * 10 + ["asyncio"]


def test_the_first_line_after_a_quiet_window_says_how_many_were_dropped() -> None:
    now = [0.0]
    limit = RateLimit(limit=2, window=60.0, clock=lambda: now[0])
    records = [
        logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "x", None, None) for _ in range(6)
    ]
    assert [limit.filter(r) for r in records[:5]] == [True, True, False, False, False]
    now[0] = 61.0
    assert limit.filter(records[5])
    assert getattr(records[5], "suppressed", None) == 3
    assert not hasattr(records[0], "suppressed")


def test_observe_many_counts_as_many_observations_would() -> None:
    buckets = (0.1, 1.0, 5.0)
    registry_one, registry_many = CollectorRegistry(), CollectorRegistry()
    one = Histogram("h", "h", buckets=buckets, registry=registry_one)
    many = Histogram("h", "h", buckets=buckets, registry=registry_many)
    for amount, count in [(0.05, 3), (0.1, 2), (0.7, 5), (5.0, 1), (60.0, 4), (2.0, 0)]:
        for _ in range(count):
            one.observe(amount)
        observe_many(many, amount, count)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {(s.name, s.labels.get("le", "")): s.value for m in registry.collect() for s in m.samples}

    assert samples(registry_many) == pytest.approx(samples(registry_one))
    assert samples(registry_many)[("h_count", "")] == 15
    assert samples(registry_many)[("h_bucket", "+Inf")] == 15
