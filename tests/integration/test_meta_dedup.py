"""Nothing lost at Meta's end: the sandbox applies Meta's offline dedup (dataset, event_name,
event_time, item_number, order_id or the customer), so a distinct conversion that shares another's
key is dropped there as Meta would drop it. With fboc killed mid-stream, every conversion must
still be kept exactly once: redeliveries collide, distinct records never do."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from consumer.adapters.codec import AvroSchema
from consumer.adapters.kafka.admin import end_offsets
from consumer.sandbox import SandboxThread
from tests.fboc_process import FbocProcess
from tests.helpers import (
    ROOT,
    amperity_config,
    avro,
    committed,
    config_for,
    create_topic,
    produce,
    produce_at,
    read_all,
    sandbox_events,
    sandbox_post,
    sandbox_stats,
    track,
    wait_until,
)
from tests.kafka_broker import Broker

pytestmark = [pytest.mark.kafka, pytest.mark.faults]
FAST_SESSION = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
AMPERITY = AvroSchema.from_file(ROOT / "schemas" / "amperity_row.avsc")
CENT = Decimal("0.01")


def all_committed(bootstrap: str, group: str, topic: str, partitions: int) -> bool:
    return committed(bootstrap, group, topic, partitions) == end_offsets(bootstrap, topic, partitions)


async def kill_mid_stream(fboc: FbocProcess, rng: random.Random, low: float, high: float) -> None:
    fboc.start()
    await asyncio.sleep(rng.uniform(low, high))
    assert fboc.running(), fboc.log_path.read_text()[-2000:]
    fboc.kill9()


async def kill_after_events(fboc: FbocProcess, url: str, at_least: int) -> None:
    """Start fboc and SIGKILL it once the sandbox accepted ``at_least`` more events: delivery is
    under way then, so rows delivered since the last commit are replayed (a kill after a fixed
    time may find the compiled build done and everything committed)."""
    before = int(sandbox_stats(url)["accepted_events"])
    fboc.start()
    await wait_until(
        lambda: int(sandbox_stats(url)["accepted_events"]) >= before + at_least, 60, "deliveries under way"
    )
    assert fboc.running(), fboc.log_path.read_text()[-2000:]
    fboc.kill9()


def starts(fboc: FbocProcess) -> int:
    """How many runs logged `started` (every run appends to the same log)."""
    if not fboc.log_path.exists():
        return 0
    return sum(1 for line in fboc.log_lines() if line.get("event") == "started")


async def finish(fboc: FbocProcess, bootstrap: str, group: str, topic: str, partitions: int) -> None:
    runs = starts(fboc)
    fboc.start()
    await wait_until(lambda: starts(fboc) > runs, 30, "the last run to start")
    await wait_until(
        lambda: all_committed(bootstrap, group, topic, partitions),
        180,
        "all offsets committed after the restarts",
    )
    assert fboc.terminate() == 0


def twice_in_one_second(n: int) -> list[tuple[bytes, bytes, int]]:
    """n purchases: customers buy in pairs, both in the same second; four pairs in five carry no
    order id, so only the item_number can keep the two apart at Meta."""
    base = time.time() - 4 * 3600
    records = []
    for i in range(n):
        pair = i // 2
        call = track(i, when=base + pair % 7200)
        call["userId"] = f"buyer-{pair}"
        call["context"]["traits"]["email"] = f"buyer{pair}@example.com"
        if pair % 5 != 4:
            del call["properties"]["order_id"]
        records.append((f"k-{i}".encode(), avro(call), i % 4))
    return records


async def test_segment_pairs_without_order_id_survive_three_kills(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    topic = new_topic(4)
    # commits every 2 s: a kill leaves many delivered records uncommitted, to be sent again
    config = config_for(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        batching={"linger_ms": 100, "max_events": 100, "max_in_flight": 2},
        service={"port": 0, "shutdown_deadline_seconds": 10, "commit_interval_ms": 2000},
    )
    config["kafka"]["options"] = FAST_SESSION
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    n = 10_000
    produce(kafka.bootstrap, topic, twice_in_one_second(n))
    sandbox_post(sandbox.url, "/_sandbox/faults", {"action": {"latency_ms": 300}})
    rng = random.Random(16)
    fboc = FbocProcess(tmp_path, config)
    try:
        for _ in range(3):
            await kill_mid_stream(fboc, rng, 5.0, 8.0)
        assert sandbox_stats(sandbox.url)["accepted_events"] > 0, "every kill came too early"
        assert not all_committed(kafka.bootstrap, group_id, topic, 4), "no kill was mid-stream"
        await finish(fboc, kafka.bootstrap, group_id, topic, 4)
    finally:
        fboc.stop_quietly()
    stats = sandbox_stats(sandbox.url)
    kept = Counter(e["event"]["event_id"] for e in sandbox_events(sandbox.url))
    missing = {f"m-{i}" for i in range(n)} - set(kept)
    print(
        f"dedup test (a): {n} records, accepted {stats['accepted_events']}, kept {len(kept)}, "
        f"deduplicated {stats['deduplicated']}, deduplicated_distinct "
        f"{stats['deduplicated_distinct']}, missing {len(missing)}"
    )
    assert stats["deduplicated_distinct"] == 0
    assert not missing, f"{len(missing)} conversions lost, e.g. {sorted(missing)[:5]}"
    assert max(kept.values()) == 1  # a redelivery is dropped at Meta, not kept twice
    assert read_all(kafka.bootstrap, f"{topic}.dlq", 1, timeout=5) == []


def amperity_row(order: str, row_id: str, quantity: int, when: int) -> bytes:
    return AMPERITY.encode(
        {
            "external_id": f"cust-{order}",
            "email": f"{order}@example.org",
            "order_id": order,
            "quantity": quantity,
            "product_id": row_id,
            "timestamp": when,
            "price": 2.5,
            "currency": "USD",
        }
    )


class Orders:
    """Amperity rows; each row has its own product id, so each kept event says which rows it
    carries. The rows of an order share the order's timestamp, as a transaction's rows do."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.quantity: dict[str, int] = {}  # row id -> quantity
        self.when = int(time.time()) - 3 * 3600

    def rows(self, order: str, count: int, first: int = 0) -> list[tuple[bytes, bytes, int]]:
        out = []
        for r in range(first, first + count):
            row_id = f"{order}/r{r}"
            self.quantity[row_id] = self.rng.randint(1, 4)
            when = self.when + int(order.split("-")[1])
            out.append(
                (
                    order.encode(),
                    amperity_row(order, row_id, self.quantity[row_id], when),
                    int(order.split("-")[1]) % 2,
                )
            )
        return out


async def test_amperity_orders_across_restarts_and_late_rows_count_once(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    topic = new_topic(2)
    config = amperity_config(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        300,
        batching={"linger_ms": 100, "max_events": 50, "max_in_flight": 2},
        service={"port": 0, "shutdown_deadline_seconds": 10, "commit_interval_ms": 2000},
    )
    config["kafka"]["options"] = FAST_SESSION
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    rng = random.Random(26)
    orders = Orders(rng)
    # phase 1: 1,500 orders of 1 to 4 rows, each order's rows together as an export writes
    # them; orders S-* get their first two rows only
    first: list[tuple[bytes, bytes, int]] = []
    for o in range(1500):
        first += orders.rows(f"O-{o}", rng.randint(1, 4))
    for s in range(200):
        first += orders.rows(f"S-{s}", 2)
    produce(kafka.bootstrap, topic, first)
    sandbox_post(sandbox.url, "/_sandbox/faults", {"action": {"latency_ms": 200}})
    fboc = FbocProcess(tmp_path, config)
    try:
        await kill_after_events(fboc, sandbox.url, 300)
        fboc.start()
        await wait_until(lambda: all_committed(kafka.bootstrap, group_id, topic, 2), 180, "phase 1 committed")
        # phase 2, while it runs: the S orders' remaining rows (their order straddles a restart),
        # and late rows, one or two, of orders sent long ago
        second: list[tuple[bytes, bytes, int]] = []
        for s in range(200):
            second += orders.rows(f"S-{s}", 2, first=2)
        for o in range(0, 1500, 3):
            second += orders.rows(f"O-{o}", 1 + o % 2, first=10)
        produce(kafka.bootstrap, topic, second)
        await asyncio.sleep(rng.uniform(2.0, 3.0))
        fboc.kill9()
        await kill_mid_stream(fboc, rng, 4.0, 6.0)
        await finish(fboc, kafka.bootstrap, group_id, topic, 2)
    finally:
        fboc.stop_quietly()
    stats = sandbox_stats(sandbox.url)
    seen: Counter[str] = Counter()
    value = 0.0
    for e in sandbox_events(sandbox.url):
        custom = e["event"]["custom_data"]
        value += custom["value"]
        for c in custom["contents"]:
            assert c["quantity"] == orders.quantity[c["id"]]
            seen[c["id"]] += 1
    missing = set(orders.quantity) - set(seen)
    twice = {row_id for row_id, count in seen.items() if count > 1}
    print(
        f"dedup test (b): {len(orders.quantity)} rows, accepted {stats['accepted_events']}, "
        f"kept {stats['stored_events']}, deduplicated {stats['deduplicated']}, "
        f"deduplicated_distinct {stats['deduplicated_distinct']}, rows missing "
        f"{len(missing)}, rows in two kept events {len(twice)}"
    )
    assert not missing, f"{len(missing)} rows lost at Meta, e.g. {sorted(missing)[:5]}"
    assert not twice, f"{len(twice)} rows counted twice, e.g. {sorted(twice)[:5]}"
    assert value == pytest.approx(2.5 * sum(orders.quantity.values()))
    assert stats["deduplicated_distinct"] == 0
    assert stats["deduplicated"] > 0, "no kill left delivered rows uncommitted: nothing replayed"
    assert read_all(kafka.bootstrap, f"{topic}.dlq", 1, timeout=5) == []


def interleaved_orders(
    rng: random.Random, count: int
) -> tuple[list[tuple[bytes, bytes, int]], dict[str, Decimal]]:
    """`count` orders of 2 to 8 rows in one partition, up to 10 open at once, their rows mixed
    (a record every 10 ms of record time, so an order's rows spread over up to ~1 s and some
    are split by the 500 ms window); one order in five gets a late row 3 s later, one row in
    twenty is a return (filtered). Returns the records and each order's sum of price * quantity."""
    start = int(time.time() * 1000) - 600_000
    when = int(time.time()) - 3 * 3600
    left = {f"I-{o}": rng.randint(2, 8) for o in range(count)}
    waiting = list(left)
    active: list[str] = []
    late: list[tuple[int, str]] = []
    values: dict[str, Decimal] = {}
    out: list[tuple[bytes, bytes, int]] = []
    step = 0
    while waiting or active or late:
        at = start + step * 10
        step += 1
        if late and late[0][0] <= at:
            _, order = late.pop(0)
            values[order] += Decimal("9.99")
            out.append((order.encode(), interleaved_row(order, f"{order}/late", 1, 9.99, when), at))
            continue
        while len(active) < 10 and waiting:
            active.append(waiting.pop(0))
        if not active:
            out.append((b"tick", interleaved_row("tick", "tick/0", -1, 1.0, when), at))  # time goes on
            continue
        order = rng.choice(active)
        quantity, price = rng.randint(1, 4), rng.choice([1.25, 2.5, 9.99])
        if rng.random() < 0.05:
            quantity = -1  # a return: filtered, never counted
        else:
            values[order] = values.get(order, Decimal(0)) + Decimal(repr(price)) * quantity
        row = interleaved_row(order, f"{order}/r{left[order]}", quantity, price, when)
        out.append((order.encode(), row, at))
        left[order] -= 1
        if not left[order]:
            active.remove(order)
            if rng.random() < 0.2 and order in values:
                late.append((at + 3000, order))
    return out, values


def interleaved_row(order: str, row_id: str, quantity: int, price: float, when: int) -> bytes:
    return AMPERITY.encode(
        {
            "external_id": f"cust-{order}",
            "email": f"{order}@example.org",
            "order_id": order,
            "quantity": quantity,
            "product_id": row_id,
            "timestamp": when,
            "price": price,
            "currency": "USD",
        }
    )


async def test_interleaved_amperity_orders_paused_mid_order_and_killed_count_once(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    """Orders interleaved in one partition, a buffer cap so small that reading pauses inside
    orders, deliveries slow enough to saturate, fboc SIGKILLed three times: every kept event at
    Meta is a group that no other kept event overlaps, so each order's kept value is its rows'
    sum of price * quantity exactly (a regrouped replay would keep a second event with other rows,
    hence another item_number, and count those rows twice)."""
    topic = new_topic(1)
    config = amperity_config(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        500,
        batching={"linger_ms": 50, "max_events": 5, "max_in_flight": 2, "max_buffered_records": 30},
        service={"port": 0, "shutdown_deadline_seconds": 10, "commit_interval_ms": 200},
    )
    config["kafka"]["options"] = FAST_SESSION
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    rng = random.Random(1616)
    records, values = interleaved_orders(rng, 400)
    produce_at(kafka.bootstrap, topic, records)
    sandbox_post(sandbox.url, "/_sandbox/faults", {"action": {"latency_ms": 150}})
    fboc = FbocProcess(tmp_path, config)
    try:
        for at_least in (100, 100, 100):
            await kill_after_events(fboc, sandbox.url, at_least)
        assert not all_committed(kafka.bootstrap, group_id, topic, 1), "no kill was mid-stream"
        await finish(fboc, kafka.bootstrap, group_id, topic, 1)
    finally:
        fboc.stop_quietly()
    stats = sandbox_stats(sandbox.url)
    kept: dict[str, Decimal] = {}
    seen: Counter[str] = Counter()
    for e in sandbox_events(sandbox.url):
        custom = e["event"]["custom_data"]
        kept[custom["order_id"]] = kept.get(custom["order_id"], Decimal(0)) + Decimal(repr(custom["value"]))
        seen.update(c["id"] for c in custom["contents"])
    twice = sorted(row_id for row_id, n in seen.items() if n > 1)
    wrong = sorted(o for o in values if kept.get(o, Decimal(0)).quantize(CENT) != values[o].quantize(CENT))
    log = fboc.log_lines()
    print(
        f"dedup test (c): {len(records)} records, {len(values)} orders, {len(seen)} rows kept, "
        f"{sum(1 for line in log if line.get('event') == 'started')} runs, "
        f"{sum(1 for line in log if line.get('event') == 'backpressure_pause')} pauses, "
        f"accepted {stats['accepted_events']}, kept {stats['stored_events']}, deduplicated "
        f"{stats['deduplicated']}, deduplicated_distinct {stats['deduplicated_distinct']}, rows in "
        f"two kept events {len(twice)}, orders with a wrong value {len(wrong)}"
    )
    assert not twice, f"{len(twice)} rows counted twice, e.g. {twice[:5]}"
    assert not wrong, f"{len(wrong)} orders' kept value differs from their rows', e.g. {wrong[:5]}"
    assert set(kept) == set(values)
    assert stats["deduplicated_distinct"] == 0
    assert stats["deduplicated"] > 0, "no kill left delivered rows uncommitted: nothing replayed"
    assert any(line.get("event") == "backpressure_pause" for line in log), "reading never paused"
    assert read_all(kafka.bootstrap, f"{topic}.dlq", 1, timeout=5) == []
