"""The service's HTTP surface and start-up checks, on the real broker."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kafka_local  # scripts/: tests/kafka_broker.py (which conftest.py loads) puts it on sys.path
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from consumer.config.settings import ServiceSettings
from consumer.ops.checks import connection_problems
from consumer.ops.cli import main
from consumer.runtime.service import health_app, serve, start_health, version_is_old
from consumer.sandbox import SandboxThread
from consumer.telemetry.metrics import METRICS, configure_logging
from tests.helpers import (
    avro,
    config_for,
    create_topic,
    produce,
    raw_request,
    settings_for,
    track,
    wait_until,
    write_config,
)
from tests.kafka_broker import Broker

EXPECTED_METRICS = {
    "fboc_records_consumed_total",
    "fboc_record_outcomes_total",
    "fboc_events_sent_total",
    "fboc_batch_events",
    "fboc_graph_request_seconds",
    "fboc_graph_errors_total",
    "fboc_graph_retries_total",
    "fboc_held_records",
    "fboc_requests_in_flight",
    "fboc_buffered_records",
    "fboc_paused_partitions",
    "fboc_commits_total",
    "fboc_consumer_lag_records",
    "fboc_dead_letter_writes_total",
    "fboc_destination_halted",
    "fboc_normalization_dropped_total",
    "fboc_record_ack_seconds",
    "fboc_match_key_events_total",
    "fboc_match_keys_per_event",
    "fboc_custom_data_dropped_total",
}


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:  # not listening yet
        return 0, ""


@pytest.mark.kafka
async def test_metrics_health_and_readiness(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread
) -> None:
    topic = new_topic(2)
    port = kafka_local.free_port()
    settings = settings_for(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        service={"port": port, "shutdown_deadline_seconds": 10, "commit_interval_ms": 100},
    )
    produce(kafka.bootstrap, topic, [(b"k", avro(track(i)), i % 2) for i in range(20)])
    sent = 'fboc_events_sent_total{destination="main",event_name="Purchase",event_set_id="111"}'
    before = METRICS.events_sent.labels("main", "111", "Purchase")._value.get()  # one registry
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until(lambda: fetch(base + "/readyz")[0] == 200, 30, "readiness")
        await wait_until(
            lambda: f"{sent} {before + 20}" in fetch(base + "/metrics")[1], 30, "the 20 events counted"
        )
        assert await asyncio.to_thread(fetch, base + "/healthz") == (200, "ok\n")
        status, text = await asyncio.to_thread(fetch, base + "/metrics")
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    assert status == 200
    names = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    found = {name for name, _kind in names if name.startswith("fboc_")}
    assert found == EXPECTED_METRICS
    for name, kind in names:  # Prometheus conventions
        if kind == "counter":
            assert name.endswith("_total"), name
        if "seconds" in name:
            assert name.endswith("_seconds"), name
    assert f"{sent} {before + 20}" in text


async def test_healthz_fails_when_the_loop_is_wedged() -> None:
    pipeline = SimpleNamespace(last_turn=time.monotonic(), ready=False, clients={})
    async with TestClient(TestServer(health_app(pipeline))) as client:  # type: ignore[arg-type]
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 503
        pipeline.last_turn -= 120
        assert (await client.get("/healthz")).status == 503


def test_old_graph_versions_are_flagged() -> None:
    today = date(2026, 11, 22)
    assert not version_is_old("v26.0", today)
    assert not version_is_old("v24.0", today)
    assert version_is_old("v17.0", today)


@pytest.mark.kafka
def test_check_config_connect(
    kafka: Broker, new_topic: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = new_topic(1)
    data = config_for(kafka.bootstrap, topic, "g", "http://127.0.0.1:1")
    settings = settings_for(kafka.bootstrap, topic, "g", "http://127.0.0.1:1")
    assert connection_problems(settings) == [
        ("kafka.dead_letter_topic", f"topic '{topic}.dlq' does not exist")
    ]
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    path = write_config(tmp_path / "ok.yaml", data)
    assert main(["check-config", "--config", str(path), "--connect"]) == 0
    data["kafka"]["bootstrap_servers"] = f"127.0.0.1:{kafka_local.free_port()}"
    path = write_config(tmp_path / "down.yaml", data)
    assert main(["check-config", "--config", str(path), "--connect"]) == 2
    assert "kafka.bootstrap_servers: Kafka not reachable" in capsys.readouterr().err


MALFORMED_REQUESTS = [  # each one makes aiohttp log "Error handling request" with a traceback
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\x01\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nAuthorization : Bearer %s\r\n\r\n",
    b"GET /h\x00ealthz?access_token=%s HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01 %s not even HTTP\r\n\r\n",
    b"GET /readyz HTTP/1.1\r\nContent-Length: -1\r\nX-Api-Key: %s\r\n\r\n",
]


async def test_malformed_requests_to_the_health_port_log_json_lines_without_the_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = "EAAB-health-probe-planted-8a1e"
    configure_logging("json")
    pipeline = SimpleNamespace(last_turn=time.monotonic(), ready=True)
    port = kafka_local.free_port()
    runner = await start_health(pipeline, ServiceSettings(port=port))  # type: ignore[arg-type]
    try:
        for template in MALFORMED_REQUESTS:
            answer = await raw_request(port, template % token.encode())
            assert answer.startswith(b"HTTP/1.0 400 Bad Request"), answer[:100]
        ok = await raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK")
    finally:
        await runner.cleanup()
    err = capsys.readouterr().err
    lines = [orjson.loads(line) for line in err.splitlines()]  # every line is JSON
    errors = [line for line in lines if line.get("logger") == "aiohttp.server"]
    # all but the bad status line (TLS sent to the plain port), which aiohttp logs at debug level
    assert len(errors) == len(MALFORMED_REQUESTS) - 1
    assert all(
        e["exception"].split(" ")[0]
        in {"BadHttpMessage", "InvalidURLError", "BadStatusLine", "InvalidHeader"}
        for e in errors
    )
    assert token not in err
    assert token[5:] not in err


async def test_health_port_binds_loopback_unless_configured() -> None:
    pipeline = SimpleNamespace(last_turn=time.monotonic(), ready=True)
    for settings, host in (
        (ServiceSettings(port=0), "127.0.0.1"),
        (ServiceSettings(port=0, bind_address="0.0.0.0"), "0.0.0.0"),
        (ServiceSettings(port=0, bind_address="::1"), "::1"),
    ):
        runner = await start_health(pipeline, settings)  # type: ignore[arg-type]
        try:
            assert [address[0] for address in runner.addresses] == [host]
        finally:
            await runner.cleanup()


def test_bind_address_must_be_an_ip_address() -> None:
    for bad in ("", "localhost; rm -rf /", "256.0.0.1", "0.0.0.0:8080"):
        with pytest.raises(ValidationError):
            ServiceSettings(bind_address=bad)
