"""End to end on the real broker and the sandbox: Avro in, Conversions API out, no loss."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import random
from collections import Counter
from typing import Any

import orjson
import pytest

from consumer.adapters.kafka.admin import end_offsets
from consumer.adapters.kafka.deadletter import header, headers_of
from consumer.config.settings import Settings
from consumer.runtime.service import serve
from consumer.sandbox import SandboxThread
from consumer.telemetry.metrics import configure_logging
from tests.helpers import (
    avro,
    committed,
    create_topic,
    key_of,
    produce,
    read_all,
    sandbox_events,
    sandbox_post,
    sandbox_stats,
    settings_for,
    track,
    wait_until,
)
from tests.kafka_broker import Broker

pytestmark = pytest.mark.kafka


async def run_until(settings: Settings, done: Any, timeout: float, what: str) -> None:
    """Run fboc in this loop until `done()` holds, then stop it cleanly; it must exit 0."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        await wait_until(lambda: task.done() or done(), timeout, what)
        assert not task.done(), f"fboc stopped early with {task.result()}"
    finally:
        stop.set()
        code = await asyncio.wait_for(task, 30)
    assert code == 0


def make_mix(n: int, seed: int = 7) -> tuple[list[tuple[bytes, bytes, int]], dict[int, str]]:
    """n records over 4 partitions, about 1% undecodable or invalid: bad[i] = expected reason."""
    rng = random.Random(seed)
    names = ["Order Completed", "Product Added", "Product Viewed"]
    records, bad = [], {}
    for i in range(n):
        roll = rng.random()
        if roll < 0.004:
            value, bad[i] = b"\x02garbage-not-avro-" + str(i).encode(), "undecodable"
        elif roll < 0.007:
            value, bad[i] = avro({**track(i), "type": "identify"}), "unsupported_type"
        elif roll < 0.010:
            rec = track(i)
            rec["properties"] = {"currency": "USD"}  # a Purchase without any value
            value, bad[i] = avro(rec), "missing_value"
        else:
            value = avro(track(i, names[i % 3]))
        records.append((f"k-{i}".encode(), value, i % 4))
    return records, bad


async def test_ten_thousand_records_every_one_delivered_or_dead_lettered(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread
) -> None:
    topic = new_topic(4)
    settings = settings_for(kafka.bootstrap, topic, group_id, sandbox.url)
    dlq = settings.kafka.dead_letter_topic
    create_topic(kafka.bootstrap, dlq, 1)
    records, bad = make_mix(10_000)
    assert 60 < len(bad) < 140
    produce(kafka.bootstrap, topic, records)
    ends = end_offsets(kafka.bootstrap, topic, 4)
    assert sum(ends.values()) == 10_000

    await run_until(
        settings,
        lambda: committed(kafka.bootstrap, group_id, topic, 4) == ends,
        120,
        "committed offsets to reach the log end",
    )

    # every good record delivered, with the right event_name per event set
    received = sandbox_events(sandbox.url)
    by_id = Counter((e["event"]["event_id"], e["event_set_id"], e["event"]["event_name"]) for e in received)
    expected: Counter[tuple[str, str, str]] = Counter()
    for i in range(10_000):
        if i in bad:
            continue
        name = ["Order Completed", "Product Added", "Product Viewed"][i % 3]
        sets = {
            "Order Completed": [("111", "Purchase")],
            "Product Added": [("222", "AddToCart")],
            "Product Viewed": [("111", "ViewContent"), ("222", "ViewContent")],
        }[name]
        for set_id, standard in sets:
            expected[(f"m-{i}", set_id, standard)] += 1
    missing = expected - by_id
    assert not missing, f"{len(missing)} events never reached the sandbox"
    assert set(by_id) == set(expected)  # nothing unexpected (duplicates would only be retries)

    # every bad record on the dead-letter topic, byte for byte, with its reason and origin
    dead = read_all(kafka.bootstrap, dlq, len(bad))
    assert len(dead) == len(bad)
    originals = {(i % 4, key): value for i, (key, value, _p) in enumerate(records)}
    seen_reasons = {}
    for msg in dead:
        h = headers_of(msg)
        part = int(header(h, "fboc.original.partition") or -1)
        assert originals[(part, key_of(msg))] == msg.value()
        index = int(key_of(msg).decode().split("-")[1])
        assert header(h, "fboc.error.reason") == bad[index]
        assert header(h, "fboc.error.stage") == ("decode" if bad[index] == "undecodable" else "transform")
        assert header(h, "fboc.original.topic") == topic
        assert header(h, "fboc.consumer_group") == group_id
        assert header(h, "fboc.replay_count") == "0"
        for name in (
            "fboc.original.offset",
            "fboc.original.timestamp",
            "fboc.failed_at",
            "fboc.attempts",
            "fboc.error.message",
        ):
            assert header(h, name), name
        seen_reasons[index] = bad[index]
    assert seen_reasons == bad


async def test_commit_never_passes_a_record_whose_batch_is_still_in_flight(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread
) -> None:
    topic = new_topic(1)
    settings = settings_for(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        facebook={"graph_url": sandbox.url, "timeout_seconds": 20},
    )
    # record 0 goes to event set 111, which answers after 4 s; record 1 goes to 222 at once
    sandbox_post(
        sandbox.url, "/_sandbox/faults", {"match": {"event_set_id": "111"}, "action": {"latency_ms": 4000}}
    )
    produce(
        kafka.bootstrap,
        topic,
        [(b"a", avro(track(0, "Order Completed")), 0), (b"b", avro(track(1, "Product Added")), 0)],
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        await wait_until(
            lambda: any(e["event_set_id"] == "222" for e in sandbox_events(sandbox.url)),
            30,
            "record 1 to be acknowledged",
        )
        # record 1 is final, record 0 is not: the watermark must stay at 0
        await asyncio.sleep(0.5)  # several commit intervals pass
        assert committed(kafka.bootstrap, group_id, topic, 1)[0] < 1
        assert not any(e["event_set_id"] == "111" for e in sandbox_events(sandbox.url))
        await wait_until(
            lambda: committed(kafka.bootstrap, group_id, topic, 1)[0] == 2, 30, "both records committed"
        )
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0


async def test_restarted_consumer_resends_nothing_already_committed(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread
) -> None:
    topic = new_topic(2)
    settings = settings_for(kafka.bootstrap, topic, group_id, sandbox.url)
    first = [(f"k{i}".encode(), avro(track(i)), i % 2) for i in range(200)]
    produce(kafka.bootstrap, topic, first)
    await run_until(
        settings,
        lambda: committed(kafka.bootstrap, group_id, topic, 2) == end_offsets(kafka.bootstrap, topic, 2),
        60,
        "first run committed",
    )
    assert len(sandbox_events(sandbox.url)) == 200

    second = [(f"k{i}".encode(), avro(track(i)), i % 2) for i in range(200, 300)]
    produce(kafka.bootstrap, topic, second)
    await run_until(
        settings,
        lambda: committed(kafka.bootstrap, group_id, topic, 2) == end_offsets(kafka.bootstrap, topic, 2),
        60,
        "second run committed",
    )
    ids = Counter(e["event"]["event_id"] for e in sandbox_events(sandbox.url))
    assert len(ids) == 300
    assert max(ids.values()) == 1, "an event committed by the first run was sent again"
    # a copy sent again would be dropped by the sandbox's offline dedup: counted there
    assert sandbox_stats(sandbox.url)["deduplicated"] == 0


async def test_a_dialect_bug_dead_letters_the_record_by_type_only_and_the_rest_goes_on(
    kafka: Broker,
    new_topic: Any,
    group_id: str,
    sandbox: SandboxThread,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unexpected exception in a dialect must not stop the partition: the record goes to the
    dead-letter topic as transform_error, and the records around it are delivered. The log and
    the dead letter name the exception's type only: its message (here an email address) could
    hold customer data."""
    configure_logging("json")
    segment = importlib.import_module("consumer.core.dialects.segment")

    def transform(payload: Any, *args: Any) -> Any:
        if payload.get("messageId") == "m-1":
            raise KeyError("pat@example.org")
        return segment.transform(payload, *args)

    monkeypatch.setattr(segment, "DIALECT", dataclasses.replace(segment.DIALECT, transform=transform))
    topic = new_topic(1)
    settings = settings_for(kafka.bootstrap, topic, group_id, sandbox.url)
    create_topic(kafka.bootstrap, settings.kafka.dead_letter_topic, 1)
    produce(kafka.bootstrap, topic, [(f"k-{i}".encode(), avro(track(i)), 0) for i in range(3)])
    await run_until(
        settings,
        lambda: committed(kafka.bootstrap, group_id, topic, 1)[0] == 3,
        60,
        "all three records committed",
    )
    assert sorted(e["event"]["event_id"] for e in sandbox_events(sandbox.url)) == ["m-0", "m-2"]
    (dead,) = read_all(kafka.bootstrap, settings.kafka.dead_letter_topic, 1)
    h = headers_of(dead)
    assert (
        key_of(dead),
        header(h, "fboc.error.stage"),
        header(h, "fboc.error.reason"),
        header(h, "fboc.error.message"),
    ) == (b"k-1", "transform", "transform_error", "unexpected KeyError")
    logged = capsys.readouterr().err
    assert "pat@example.org" not in logged
    (line,) = [orjson.loads(x) for x in logged.splitlines() if '"dialect_error"' in x]
    assert (line["error"], line["offset"]) == ("KeyError", 1)
    assert line["at"].startswith("transform (test_pipeline.py:")
