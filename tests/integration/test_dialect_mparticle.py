"""mParticle batches end to end: Avro records on a real broker → the sandbox or the dead-letter
topic; a batch with no qualifying event is filtered (neither sent nor dead-lettered)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from consumer.adapters.codec import AvroSchema
from consumer.adapters.kafka.admin import end_offsets
from consumer.adapters.kafka.deadletter import header, headers_of
from consumer.config.settings import parse_settings
from consumer.runtime.service import serve
from consumer.sandbox import SandboxThread
from tests.helpers import (
    ROOT,
    TOKEN,
    committed,
    create_topic,
    key_of,
    produce,
    read_all,
    sandbox_events,
    wait_until,
)
from tests.kafka_broker import Broker

pytestmark = pytest.mark.kafka

SCHEMA_PATH = ROOT / "schemas" / "mparticle_batch.avsc"
SCHEMA = AvroSchema.from_file(SCHEMA_PATH)


def event(
    event_type: str, message_id: str, age_s: float, action: str | None = None, **product_action: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "source_message_id": message_id,
        "timestamp_unixtime_ms": int((time.time() - age_s) * 1000),
        "custom_attributes": {"store_id": "NOLA-7", "register": 3},
    }
    if action:
        data["product_action"] = {"action": action, **product_action}
    else:
        data["event_name"] = "Store Visit"
    return {"event_type": event_type, "data": data}


def batch(i: int, *events: dict[str, Any]) -> bytes:
    return SCHEMA.encode(
        {
            "schema_version": 2,
            "environment": "production",
            "mpid": 1000 + i,
            "user_identities": {"email": f"Person{i}@Example.com", "customer_id": f"cust-{i}"},
            "user_attributes": {"$FirstName": "Jane", "$Country": "US", "$State": "CA", "tags": ["a", "b"]},
            "device_info": {"android_advertising_id": "38400000-8cf0-11bd-b23e-10b96e40000d"},
            "events": list(events),
        }
    )


PRODUCTS = [{"id": "sku-1", "price": 20.0, "quantity": 2}]


async def test_mparticle_batches_are_delivered_filtered_or_dead_lettered(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread
) -> None:
    topic = new_topic(2)
    settings = parse_settings(
        {
            "kafka": {
                "bootstrap_servers": kafka.bootstrap,
                "group_id": group_id,
                "dead_letter_topic": f"{topic}.dlq",
            },
            "facebook": {"graph_url": sandbox.url, "timeout_seconds": 5},
            "batching": {"linger_ms": 50},
            "service": {"port": 0, "shutdown_deadline_seconds": 10, "commit_interval_ms": 100},
            "sources": [
                {
                    "name": "mp",
                    "topic": topic,
                    "dialect": "mparticle",
                    "destination": "main",
                    "schema": str(SCHEMA_PATH),
                }
            ],
            "destinations": [
                {
                    "name": "main",
                    "access_token": TOKEN,
                    "limited_data_use": "always",
                    "event_sets": {"Purchase": ["111"], "AddToCart": ["222"], "ViewContent": ["111", "222"]},
                }
            ],
        },
        {},
    )
    dlq = settings.kafka.dead_letter_topic
    create_topic(kafka.bootstrap, dlq, 1)
    records = [
        (
            b"b0",
            batch(
                0,
                event("commerce_event", "m0-cart", 120, "add_to_cart", products=PRODUCTS),
                event("custom_event", "m0-visit", 110),
                event(
                    "commerce_event",
                    "m0-buy",
                    100,
                    "purchase",
                    transaction_id="o-0",
                    total_amount=40.0,
                    products=PRODUCTS,
                ),
            ),
            0,
        ),
        (
            b"b1",
            batch(
                1,
                event("commerce_event", "m1-view", 90, "view_detail", products=PRODUCTS),
                event("commerce_event", "m1-refund", 80, "refund", total_amount=5.0),
            ),
            1,
        ),
        (b"b2", batch(2, event("custom_event", "m2-visit", 70)), 0),
        (b"b3", batch(3, event("commerce_event", "m3-old", 30 * 86400, "purchase", total_amount=9.0)), 1),
        (b"b4", batch(4, event("commerce_event", "m4-novalue", 60, "purchase")), 0),
        (b"b5", b"\x08not-an-mparticle-batch", 1),
    ]
    produce(kafka.bootstrap, topic, records)
    ends = end_offsets(kafka.bootstrap, topic, 2)

    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        await wait_until(
            lambda: task.done() or committed(kafka.bootstrap, group_id, topic, 2) == ends,
            60,
            "committed offsets to reach the log end",
        )
        assert not task.done(), f"fboc stopped early with {task.result()}"
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0

    received = sandbox_events(sandbox.url)
    assert sorted(
        (e["event"]["event_id"], e["event_set_id"], e["event"]["event_name"]) for e in received
    ) == [
        ("m0-buy", "111", "Purchase"),
        ("m0-cart", "222", "AddToCart"),
        ("m1-view", "111", "ViewContent"),
        ("m1-view", "222", "ViewContent"),
    ]
    purchase = next(e["event"] for e in received if e["event"]["event_id"] == "m0-buy")
    assert purchase["custom_data"]["value"] == 40.0
    assert purchase["custom_data"]["order_id"] == "o-0"
    assert purchase["custom_data"]["store_id"] == "NOLA-7"
    assert purchase["user_data"]["madid"] == "38400000-8cf0-11bd-b23e-10b96e40000d"
    assert purchase["data_processing_options"] == ["LDU"]
    assert purchase["data_processing_options_state"] == 1000

    dead = read_all(kafka.bootstrap, dlq, 3)
    originals = {key: value for key, value, _p in records}
    reasons = {}
    for msg in dead:
        h = headers_of(msg)
        assert msg.value() == originals[key_of(msg)]  # byte for byte, so a replay re-decodes it
        reasons[key_of(msg)] = (header(h, "fboc.error.stage"), header(h, "fboc.error.reason"))
    assert reasons == {
        b"b3": ("transform", "event_too_old"),
        b"b4": ("transform", "missing_value"),
        b"b5": ("decode", "undecodable"),
    }
