"""The leak scan: a real `fboc run` with planted secrets and PII, against the real broker and
`fboc sandbox`, through token errors, 5xx answers, refused events, bad records, a custom event
named like an e-mail and malformed requests to the health port. Everything fboc printed, its
/metrics text and the dead-letter headers are then scanned: no planted value appears, and
every line fboc printed is a JSON log line (so it went through the redaction processor)."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path
from typing import Any

import kafka_local  # scripts/: tests/kafka_broker.py (which conftest.py loads) puts it on sys.path
import orjson
import pytest

from consumer.adapters.kafka.deadletter import header, headers_of
from consumer.sandbox import SandboxThread
from tests.fboc_process import FbocProcess
from tests.helpers import (
    avro,
    committed,
    config_for,
    create_topic,
    produce,
    raw_request,
    read_all,
    sandbox_events,
    sandbox_post,
    track,
    wait_until,
)
from tests.kafka_broker import Broker

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

TOKEN = "EAAB-leakscan-token-4c2d8e"
APP_SECRET = "leakscan-app-secret-7a91"
CLIENT_TOKEN = "EAAB-sent-by-a-client-19fe"  # a stranger's token, in requests to the health port
EMAIL = "leak.scan.person@example.net"
PHONE = "+1 415 555 0143"
FIRST, LAST = "Leakscanfirst", "Leakscanlast"
PLANTED = [
    TOKEN,
    APP_SECRET,
    CLIENT_TOKEN,
    EMAIL,
    "leak.scan.person",
    "4155550143",
    FIRST,
    LAST,
    FIRST.lower(),
    LAST.lower(),
]
MALFORMED = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\x01\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nAuthorization : Bearer %s\r\n\r\n",
    b"GET /readyz?access_token=%s\x00 HTTP/1.1\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1e9\r\nX-Token: %s\r\n\r\n",
]


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


async def test_planted_secrets_and_pii_never_leave_fboc(
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
    dest = config["destinations"][0]
    dest.update(
        {
            "access_token": "${LEAK_TOKEN}",
            "app_secret": "${LEAK_SECRET}",
            "unmapped_events": "passthrough",
            "default_event_sets": ["333"],
        }
    )
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    with SandboxThread(tokens=[TOKEN], app_secret=APP_SECRET) as box:
        config["facebook"]["graph_url"] = box.url
        # a token error (error log, halt, resume), two 5xx, and a refused event (dead letter)
        sandbox_post(box.url, "/_sandbox/faults", {"times": 1, "action": {"error": {"code": 190}}})
        sandbox_post(box.url, "/_sandbox/faults", {"times": 2, "action": {"http_status": 500}})
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
            b"\x01" + EMAIL.encode() + TOKEN.encode(),  # undecodable
            avro(with_pii(5, EMAIL)),
        ]  # a passed-through custom event named by PII
        produce(kafka.bootstrap, topic, [(f"k{i}".encode(), v, 0) for i, v in enumerate(records)])
        fboc = FbocProcess(tmp_path, config).start({"LEAK_TOKEN": TOKEN, "LEAK_SECRET": APP_SECRET})
        try:
            await wait_until(
                lambda: committed(kafka.bootstrap, group_id, topic, 1)[0] == 6, 90, "all six records final"
            )
            for template in MALFORMED:
                for token in (TOKEN, CLIENT_TOKEN):
                    answer = await raw_request(port, template % token.encode())
                    assert answer.startswith(b"HTTP/1.0 400"), answer[:80]
            metrics = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
            accepted = await asyncio.to_thread(sandbox_events, box.url)
            assert fboc.terminate() == 0
        finally:
            fboc.stop_quietly()
    output = fboc.log_path.read_text()
    dead = read_all(kafka.bootstrap, f"{topic}.dlq", 3, timeout=20)
    assert len(dead) == 3
    dlq_headers = "\n".join(f"{k}={v!r}" for m in dead for k, v in headers_of(m) if k.startswith("fboc."))
    # the scenario really happened
    lines = [orjson.loads(line) for line in output.splitlines()]  # every line is JSON
    events = {line.get("event") for line in lines}
    assert "destination_halted" in events
    assert sum(line.get("logger") == "aiohttp.server" for line in lines) >= len(MALFORMED)
    assert {header(headers_of(m), "fboc.error.reason") for m in dead} == {
        "graph_invalid_event",
        "missing_value",
        "undecodable",
    }
    assert "fboc_graph_errors_total" in metrics
    assert 'event_name="custom"' in metrics  # the custom event was delivered, counted as custom
    assert EMAIL in {e["event"]["event_name"] for e in accepted}
    for secret in PLANTED:
        for where, text in (
            ("fboc's output", output),
            ("metrics", metrics),
            ("dead-letter headers", dlq_headers),
        ):
            assert secret not in text, f"{secret!r} leaked into {where}"
