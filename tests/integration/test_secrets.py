"""docs/design.md invariant 5: a planted token, app secret and PII appear in no log line, metric,
error message or dead-letter header, whatever goes wrong."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path
from typing import Any

import kafka_local  # scripts/: tests/kafka_broker.py (which conftest.py loads) puts it on sys.path
import pytest

from consumer.adapters.kafka.deadletter import headers_of
from consumer.sandbox import SandboxThread
from tests.fboc_process import FbocProcess
from tests.helpers import (
    avro,
    committed,
    config_for,
    create_topic,
    produce,
    read_all,
    sandbox_post,
    track,
    wait_until,
)
from tests.kafka_broker import Broker

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

TOKEN = "EAAB-planted-token-7f3c9e"
APP_SECRET = "planted-app-secret-91b2"
EMAIL = "planted.person@example.org"
PHONE = "+1 415 555 0199"
FIRST, LAST = "Plantedfirst", "Plantedlast"
PLANTED = [TOKEN, APP_SECRET, EMAIL, "planted.person", "4155550199", FIRST, LAST, FIRST.lower(), LAST.lower()]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def with_pii(i: int, event: str = "Order Completed") -> dict[str, Any]:
    record = track(i, event)
    record["context"]["traits"] = {
        "email": EMAIL,
        "phone": PHONE,
        "firstName": FIRST,
        "lastName": LAST,
        "name": f"{FIRST} {LAST}",
    }
    record["properties"]["email"] = EMAIL
    return record


async def test_planted_secrets_and_pii_never_leave(
    kafka: Broker, new_topic: Any, group_id: str, tmp_path: Path
) -> None:
    topic = new_topic(1)
    port = kafka_local.free_port()
    config = config_for(
        kafka.bootstrap,
        topic,
        group_id,
        "http://placeholder",
        service={"port": port, "shutdown_deadline_seconds": 10, "log_format": "json"},
        facebook={
            "graph_url": "http://placeholder",
            "max_attempts": 2,
            "timeout_seconds": 2,
            "auth_retry_seconds": 1,
        },
    )
    config["destinations"][0]["access_token"] = "${PLANTED_TOKEN}"
    config["destinations"][0]["app_secret"] = "${PLANTED_SECRET}"
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    with SandboxThread(tokens=[TOKEN], app_secret=APP_SECRET) as box:
        config["facebook"]["graph_url"] = box.url
        # a token error (error log, halt, resume), a 5xx, and a refused event (dead letter)
        sandbox_post(box.url, "/_sandbox/faults", {"times": 1, "action": {"error": {"code": 190}}})
        sandbox_post(box.url, "/_sandbox/faults", {"times": 1, "action": {"http_status": 500}})
        sandbox_post(
            box.url, "/_sandbox/faults", {"match": {"event_ids": ["m-2"]}, "action": {"reject_events": True}}
        )
        no_value = with_pii(3)
        no_value["properties"] = {"email": EMAIL, "currency": "USD"}  # → missing_value
        records = [
            avro(with_pii(0)),
            avro(with_pii(1, "Product Added")),
            avro(with_pii(2)),
            avro(no_value),
            b"\x01" + EMAIL.encode(),
        ]  # the last is undecodable
        produce(kafka.bootstrap, topic, [(f"k{i}".encode(), v, 0) for i, v in enumerate(records)])
        fboc = FbocProcess(tmp_path, config).start({"PLANTED_TOKEN": TOKEN, "PLANTED_SECRET": APP_SECRET})
        try:
            await wait_until(
                lambda: committed(kafka.bootstrap, group_id, topic, 1)[0] == 5, 60, "all five records final"
            )
            metrics = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
            assert fboc.terminate() == 0
        finally:
            fboc.stop_quietly()
    logs = fboc.log_path.read_text()
    dead = read_all(kafka.bootstrap, f"{topic}.dlq", 3, timeout=20)
    assert len(dead) == 3
    dlq_headers = "\n".join(f"{k}={v!r}" for m in dead for k, v in headers_of(m) if k.startswith("fboc."))
    # the scenario really happened: the token error was logged, the bad ones dead-lettered
    assert '"destination_halted"' in logs
    assert "graph_invalid_event" in dlq_headers
    assert "missing_value" in dlq_headers
    assert "fboc_graph_errors_total" in metrics
    for secret in PLANTED:
        for where, text in (("logs", logs), ("metrics", metrics), ("dead-letter headers", dlq_headers)):
            assert secret not in text, f"{secret!r} leaked into the {where}"
