"""Amperity rows through the real pipeline: rows of one order become one event, a late row its
own event, returns are filtered, bad rows dead-lettered; every offset committed. A clean stop
leaves an open order unsent and uncommitted, and the next run sends it whole."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from consumer.adapters.codec import AvroSchema
from consumer.adapters.kafka.admin import end_offsets
from consumer.adapters.kafka.deadletter import DeadLetterWriter, SourceRecord
from consumer.adapters.kafka.source import KafkaSource
from consumer.config.settings import parse_settings
from consumer.core.offsets import TopicPartition
from consumer.errors import SchemaUnavailable
from consumer.runtime.pipeline import Pipeline
from consumer.runtime.service import build_routes, serve
from consumer.sandbox import SandboxThread
from tests.helpers import (
    ROOT,
    amperity_config,
    committed,
    create_topic,
    produce,
    produce_at,
    read_all,
    sandbox_events,
    wait_until,
)
from tests.kafka_broker import Broker

pytestmark = pytest.mark.kafka
SCHEMA = AvroSchema.from_file(ROOT / "schemas" / "amperity_row.avsc")


def row(order: str, product: str, quantity: int, price: float, **extra: Any) -> bytes:
    return SCHEMA.encode(
        {
            "external_id": "amp-1",
            "email": "pat@example.org",
            "order_id": order,
            "quantity": quantity,
            "product_id": product,
            "timestamp": int(time.time()) - 3600,
            "price": price,
            "currency": "USD",
            **extra,
        }
    )


async def test_rows_of_an_order_become_one_event(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    topic = new_topic(1)
    settings = parse_settings(amperity_config(kafka.bootstrap, topic, group_id, sandbox.url, 300), {})
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    produce(
        kafka.bootstrap,
        topic,
        [
            (b"A", row("A", "sku-1", 2, 10.0), 0),
            (b"A", row("A", "sku-2", 1, 5.5), 0),
            (b"B", row("B", "sku-3", -1, 10.0), 0),  # a return: filtered
            (b"C", row("C", "sku-4", 1, 3.0, currency=None), 0),  # no currency: dead letter
        ],
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        await wait_until(
            lambda: committed(kafka.bootstrap, group_id, topic, 1)[0] == 4, 30, "the first rows final"
        )
        produce(kafka.bootstrap, topic, [(b"A", row("A", "sku-5", 1, 1.0), 0)])  # late row
        await wait_until(
            lambda: committed(kafka.bootstrap, group_id, topic, 1) == end_offsets(kafka.bootstrap, topic, 1),
            30,
            "the late row final",
        )
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    events = [e["event"] for e in sandbox_events(sandbox.url)]
    assert len(events) == 2
    first, late = events
    assert first["event_id"] == f"A-{first['custom_data']['item_number']}"
    assert first["custom_data"]["value"] == 25.5
    assert first["custom_data"]["num_items"] == 3
    assert [c["id"] for c in first["custom_data"]["contents"]] == ["sku-1", "sku-2"]
    assert late["custom_data"]["order_id"] == "A"
    assert late["custom_data"]["item_number"] != first["custom_data"]["item_number"]
    assert late["event_id"] == f"A-{late['custom_data']['item_number']}"
    dead = read_all(kafka.bootstrap, f"{topic}.dlq", 1, timeout=15)
    assert [m.key() for m in dead] == [b"C"]


async def test_a_stop_leaves_an_open_order_unsent_and_the_next_run_sends_it_whole(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    topic = new_topic(1)
    # a window so long that only record time closes a group here (idle would take 61 s)
    settings = parse_settings(amperity_config(kafka.bootstrap, topic, group_id, sandbox.url, 60_000), {})
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    t = int(time.time() * 1000) - 3_600_000
    produce_at(
        kafka.bootstrap,
        topic,
        [
            (b"B", row("B", "sku-1", 1, 4.0), t),
            (b"R", row("R", "sku-0", -1, 1.0), t + 100_000),  # a return, 100 s later: closes B
            (b"A", row("A", "sku-2", 2, 10.0), t + 100_000),
            (b"A", row("A", "sku-3", 1, 5.5), t + 100_001),
        ],
    )
    for run in (1, 2):
        stop = asyncio.Event()
        task = asyncio.create_task(serve(settings, stop))
        try:
            if run == 1:
                await wait_until(lambda: committed(kafka.bootstrap, group_id, topic, 1)[0] == 2, 30, "B sent")
                await asyncio.sleep(1.0)  # A's rows were read long ago: A stays open
            else:
                produce_at(kafka.bootstrap, topic, [(b"R", row("R", "sku-0", -1, 1.0), t + 200_000)])
                await wait_until(lambda: committed(kafka.bootstrap, group_id, topic, 1)[0] == 5, 30, "A sent")
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 30) == 0
        orders = [e["event"]["custom_data"]["order_id"] for e in sandbox_events(sandbox.url)]
        if run == 1:
            # the stop did not send A early, and its commit stopped before A's first row
            assert orders == ["B"]
            assert committed(kafka.bootstrap, group_id, topic, 1) == {0: 2}
    a = sandbox_events(sandbox.url)[-1]["event"]["custom_data"]
    assert orders == ["B", "A"]
    assert [c["id"] for c in a["contents"]] == ["sku-2", "sku-3"]
    assert a["value"] == 25.5
    assert read_all(kafka.bootstrap, f"{topic}.dlq", 1, timeout=3) == []


async def test_rows_behind_a_held_row_wait_so_the_partition_is_grouped_in_offset_order(
    kafka: Broker, new_topic: Any, group_id: str
) -> None:
    """A row held (its schema not fetched yet) and the rows behind it, which decode: they must
    reach the grouper after it, in offset order, as a replay would feed them. Here the record
    at offset 1 (a return 2 s later) closes X's group {0}; fed out of order, offset 2 would
    have opened X's group first and offset 0 joined it: {2, 0}, a group no replay forms."""
    topic = new_topic(1)
    settings = parse_settings(
        amperity_config(kafka.bootstrap, topic, group_id, "http://127.0.0.1:9", 500), {}
    )
    routes = build_routes(settings)
    decode = routes[topic].decoder
    calls = []

    def first_unavailable(value: bytes) -> Any:
        calls.append(value)
        if len(calls) == 1:
            raise SchemaUnavailable("the registry is being asked")
        return decode(value)

    routes[topic] = dataclasses.replace(routes[topic], decoder=first_unavailable)
    pipeline = Pipeline(
        settings,
        routes,
        {},
        DeadLetterWriter(settings.kafka),
        KafkaSource(settings.kafka, [topic]),
    )
    try:
        t = int(time.time() * 1000)
        rows = [
            (row("X", "sku-1", 1, 2.0), t),
            (row("R", "sku-0", -1, 1.0), t + 2000),
            (row("X", "sku-2", 1, 3.0), t + 10),
        ]
        for offset, (value, at) in enumerate(rows):
            pipeline.accept(SourceRecord(topic, 0, offset, at, b"X", value, []))
        assert pipeline.ledger.held() == 3  # the first held, the two behind it wait
        pipeline.stages.retry_held()
        grouper = pipeline.stages.groupers[topic]
        assert [[r.offset for r in records] for _, records, _, _, _ in grouper.due(0.0)] == [[0]]
        assert grouper.open_rows(TopicPartition(topic, 0)) == 1  # offset 2, alone
    finally:
        await pipeline.source.finish({}, 10)
