"""On the real broker and the sandbox: customer data in custom properties never reaches Meta,
and events Meta would refuse for their action_source are dead-lettered instead of failing a
request."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from consumer.adapters.kafka.deadletter import header, headers_of
from consumer.config.settings import Settings
from consumer.runtime.service import serve
from consumer.sandbox import SandboxThread
from consumer.telemetry.metrics import METRICS
from tests.helpers import (
    avro,
    committed,
    create_topic,
    key_of,
    produce,
    read_all,
    sandbox_events,
    settings_for,
    track,
    wait_until,
)
from tests.kafka_broker import Broker

pytestmark = pytest.mark.kafka

PLANTED: dict[str, Any] = {
    "customer_email": "pat.doe@example.org",
    "contactEmail": "pat.doe@example.org",
    "billing_phone": "+44 20 7946 0958",
    "mobile_phone": "+1 650 555 1212",
    "shipping_address": "1 Main St",
    "surname": "Doe",
    "givenName": "Pat",
    "ip_address": "10.1.2.3",
    "note": "call me on +1 650 555 1212",
    "ref": "pat.doe@example.org",
    "extra": {"nested": [{"contact": "pat.doe@example.org"}], "store_id": "S-9"},
}


def dropped(reason: str) -> float:
    value = METRICS.registry.get_sample_value("fboc_custom_data_dropped_total", {"reason": reason})
    return value or 0.0


async def run_until(settings: Settings, done: Any, timeout: float, what: str) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        await wait_until(lambda: task.done() or done(), timeout, what)
        assert not task.done(), f"fboc stopped early with {task.result()}"
    finally:
        stop.set()
        code = await asyncio.wait_for(task, 30)
    assert code == 0


async def test_customer_data_is_screened_and_unsendable_events_are_dead_lettered(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread
) -> None:
    topic = new_topic(1)
    settings = settings_for(kafka.bootstrap, topic, group_id, sandbox.url)
    dlq = settings.kafka.dead_letter_topic
    create_topic(kafka.bootstrap, dlq, 1)
    planted = track(0, **PLANTED, kept_property="yes")
    planted["context"]["page"] = {
        "url": "https://shop.example/done?email=pat.doe%40example.org&utm_source=mail"
    }
    app = track(1, action_source="app")  # Segment records carry no app_data
    xyz = track(2, currency="XYZ")
    plain = track(3)
    before = {r: dropped(r) for r in ("name", "email_value", "phone_value")}
    produce(
        kafka.bootstrap,
        topic,
        [(f"k-{i}".encode(), avro(r), 0) for i, r in enumerate((planted, app, xyz, plain))],
    )
    await run_until(
        settings,
        lambda: committed(kafka.bootstrap, group_id, topic, 1)[0] == 4,
        60,
        "all four records committed",
    )

    events = {e["event"]["event_id"]: e["event"] for e in sandbox_events(sandbox.url)}
    assert sorted(events) == ["m-0", "m-3"]
    sent = events["m-0"]
    assert sent["custom_data"]["kept_property"] == "yes"
    assert sent["custom_data"]["extra"] == {"nested": [{}], "store_id": "S-9"}
    assert sent["event_source_url"] == "https://shop.example/done?utm_source=mail"
    outside = orjson.dumps({k: v for k, v in sent.items() if k != "user_data"}).decode()
    for value in ("pat.doe", "7946", "555 1212", "Main St", "Doe", "10.1.2.3"):
        assert value not in outside
    for name in PLANTED:
        assert name == "extra" or name not in sent["custom_data"]
    # counted once per record and property
    assert dropped("name") - before["name"] == 9  # 8 names and the URL's `email` parameter
    assert dropped("email_value") - before["email_value"] == 2  # ref, extra.nested[].contact
    assert dropped("phone_value") - before["phone_value"] == 1  # note

    dead = read_all(kafka.bootstrap, dlq, 2)
    reasons = {
        key_of(m): (header(headers_of(m), "fboc.error.reason"), header(headers_of(m), "fboc.error.message"))
        for m in dead
    }
    assert reasons == {
        b"k-1": ("missing_required_field", "action_source app needs app_data"),
        b"k-2": ("invalid_currency", "currency is not an ISO 4217 code"),
    }
