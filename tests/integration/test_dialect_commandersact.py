"""Commanders Act events end to end: Avro records on a real topic → the sandbox or the dead-letter
topic (or filtered for lack of consent), every offset committed."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import pytest

from consumer.adapters.codec import AvroSchema
from consumer.adapters.kafka.admin import end_offsets
from consumer.adapters.kafka.deadletter import header, headers_of
from consumer.config.settings import Settings, parse_settings
from consumer.runtime.service import serve
from consumer.sandbox import SandboxThread
from tests.helpers import (
    ROOT,
    TOKEN,
    committed,
    config_for,
    create_topic,
    produce,
    read_all,
    sandbox_events,
    wait_until,
)
from tests.kafka_broker import Broker

pytestmark = pytest.mark.kafka

SCHEMA_PATH = ROOT / "schemas" / "commandersact_event.avsc"
SCHEMA = AvroSchema.from_file(SCHEMA_PATH)


def config(bootstrap: str, topic: str, group: str, graph_url: str) -> Settings:
    return parse_settings(
        config_for(
            bootstrap,
            topic,
            group,
            graph_url,
            sources=[
                {
                    "name": "tc",
                    "topic": topic,
                    "dialect": "commandersact",
                    "destination": "main",
                    "schema": str(SCHEMA_PATH),
                }
            ],
            destinations=[
                {
                    "name": "main",
                    "access_token": TOKEN,
                    "consent_category": "3",
                    "event_sets": {"Purchase": ["111"], "AddToCart": ["222"], "ViewContent": ["111", "222"]},
                }
            ],
        ),
        {},
    )


def tc_event(i: int, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_name": name,
        "type": "offline",
        "id": f"ORD-{i}",
        "amount": 20.0 + i,
        "currency": "EUR",
        "items": [{"id": f"SKU-{i}", "quantity": 1, "price": 20.0 + i}],
        "user": {"id": f"C-{i}", "email": f"Client{i}@Example.com", "consent_categories": [1, 3]},
        "context": {"event_timestamp": int((time.time() - 60) * 1000)},
        "integrations": {"facebook": {"event_id": f"tc-{i}"}},
        **extra,
    }


async def test_commandersact_records_delivered_filtered_or_dead_lettered(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread
) -> None:
    topic = new_topic(1)
    settings = config(kafka.bootstrap, topic, group_id, sandbox.url)
    dlq = settings.kafka.dead_letter_topic
    create_topic(kafka.bootstrap, dlq, 1)
    no_consent = tc_event(3, "purchase")
    no_consent["user"]["consent_categories"] = [1]
    records = [
        SCHEMA.encode(tc_event(0, "purchase")),
        SCHEMA.encode(tc_event(1, "add_to_cart")),
        SCHEMA.encode(tc_event(2, "view_item")),
        SCHEMA.encode(no_consent),  # filtered, not dead-lettered
        SCHEMA.encode({**tc_event(4, "purchase"), "amount": None}),  # missing_value
        SCHEMA.encode(
            {**tc_event(5, "page_view"), "user": {"gender": "m", "consent_categories": ["3"]}}
        ),  # insufficient_match_keys
        b"\x01not avro at all",  # undecodable
    ]
    produce(kafka.bootstrap, topic, [(f"k-{i}".encode(), v, 0) for i, v in enumerate(records)])
    ends = end_offsets(kafka.bootstrap, topic, 1)
    assert ends == {0: len(records)}

    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        await wait_until(
            lambda: task.done() or committed(kafka.bootstrap, group_id, topic, 1) == ends,
            60,
            "every offset committed",
        )
        assert not task.done(), "fboc stopped early"
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0

    received = sorted(
        (e["event_set_id"], e["event"]["event_name"], e["event"]["event_id"])
        for e in sandbox_events(sandbox.url)
    )
    assert received == [
        ("111", "Purchase", "tc-0"),
        ("111", "ViewContent", "tc-2"),
        ("222", "AddToCart", "tc-1"),
        ("222", "ViewContent", "tc-2"),
    ]
    purchase = next(e["event"] for e in sandbox_events(sandbox.url) if e["event"]["event_id"] == "tc-0")
    assert purchase["action_source"] == "physical_store"
    assert purchase["user_data"]["em"] == [hashlib.sha256(b"client0@example.com").hexdigest()]
    assert purchase["custom_data"] == {
        "value": 20.0,
        "currency": "EUR",
        "contents": [{"id": "SKU-0", "quantity": 1, "item_price": 20.0}],
        "content_type": "product",
        "order_id": "ORD-0",
    }

    dead = read_all(kafka.bootstrap, dlq, 3)
    reasons = {
        msg.key(): (header(headers_of(msg), "fboc.error.stage"), header(headers_of(msg), "fboc.error.reason"))
        for msg in dead
    }
    assert reasons == {
        b"k-4": ("transform", "missing_value"),
        b"k-5": ("transform", "insufficient_match_keys"),
        b"k-6": ("decode", "undecodable"),
    }
    for msg in dead:  # byte for byte
        assert msg.value() == records[int((msg.key() or b"").decode()[2:])]
