"""Fault tests: crashes, broker restarts, rebalances, slow and failing Graph API, secrets.

Every test ends with the same check: every produced record delivered or dead-lettered, none
missing, and the committed offsets at the log end.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kafka_local  # scripts/: tests/kafka_broker.py (which conftest.py loads) puts it on sys.path
import orjson
import psutil
import pytest

from consumer.adapters.kafka.admin import end_offsets
from consumer.adapters.kafka.deadletter import header, headers_of
from consumer.runtime.service import serve
from consumer.sandbox import SandboxThread
from consumer.telemetry.metrics import configure_logging
from tests.fboc_process import FbocProcess
from tests.helpers import (
    avro,
    committed,
    config_for,
    create_topic,
    produce,
    read_all,
    sandbox_events,
    sandbox_post,
    sandbox_requests,
    sandbox_stats,
    settings_for,
    track,
    wait_until,
)
from tests.integration.test_pipeline import make_mix
from tests.kafka_broker import Broker, start_broker_or_fail

pytestmark = [pytest.mark.kafka, pytest.mark.faults]
FAST_SESSION = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


def all_committed(bootstrap: str, group: str, topic: str, partitions: int) -> bool:
    return committed(bootstrap, group, topic, partitions) == end_offsets(bootstrap, topic, partitions)


def check_nothing_lost(
    bootstrap: str, topic: str, dlq: str, url: str, good_ids: set[str], bad_keys: set[bytes]
) -> dict[str, list[bytes]]:
    """Every good record reached the sandbox and every bad one the dead-letter topic.
    Returns the sandbox's events by (event_id, event set) as canonical bytes."""
    copies: dict[str, list[bytes]] = defaultdict(list)
    for e in sandbox_events(url):
        copies[f"{e['event']['event_id']}@{e['event_set_id']}"].append(
            orjson.dumps(e["event"], option=orjson.OPT_SORT_KEYS)
        )
    delivered = {k.split("@")[0] for k in copies}
    missing = good_ids - delivered
    # an event Meta's offline dedup dropped although it was another conversion is lost too
    assert sandbox_stats(url)["deduplicated_distinct"] == 0
    assert not missing, f"{len(missing)} records never delivered, e.g. {sorted(missing)[:5]}"
    assert delivered <= good_ids
    dead = {m.key() for m in read_all(bootstrap, dlq, len(bad_keys), timeout=30)}
    assert dead == bad_keys
    return copies


async def test_kill_9_five_times_loses_nothing_and_duplicates_are_identical(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    topic = new_topic(4)
    config = config_for(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        batching={"linger_ms": 100, "max_events": 250, "max_in_flight": 2},
    )
    # a killed member holds its partitions until its session expires: keep that short
    config["kafka"]["options"] = FAST_SESSION
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    records, bad = make_mix(20_000, seed=11)
    produce(kafka.bootstrap, topic, records)
    # at most 2 x 250 events per 0.3 s: the stream outlasts the five kills
    sandbox_post(sandbox.url, "/_sandbox/faults", {"action": {"latency_ms": 300}})
    rng = random.Random(5)
    fboc = FbocProcess(tmp_path, config)
    try:
        for _ in range(5):
            fboc.start()
            await asyncio.sleep(rng.uniform(4.0, 9.0))
            assert fboc.running(), fboc.log_path.read_text()[-2000:]
            fboc.kill9()
        delivered_before_last_run = len(sandbox_events(sandbox.url))
        assert delivered_before_last_run > 0, "the kills all landed before any delivery"
        assert not all_committed(kafka.bootstrap, group_id, topic, 4), "no kill was mid-stream"
        fboc.start()
        await wait_until(
            lambda: any(line.get("event") == "started" for line in fboc.log_lines()),
            30,
            "the last run to start",
        )
        await wait_until(
            lambda: all_committed(kafka.bootstrap, group_id, topic, 4),
            180,
            "all offsets committed after the restarts",
        )
        assert fboc.terminate() == 0
    finally:
        fboc.stop_quietly()
    good = {f"m-{i}" for i in range(len(records)) if i not in bad}
    copies = check_nothing_lost(
        kafka.bootstrap, topic, f"{topic}.dlq", sandbox.url, good, {f"k-{i}".encode() for i in bad}
    )
    # a copy sent again is dropped by the sandbox's offline dedup, as Meta would: it must have
    # been the same event, and copies come only from records in flight at a kill
    stats = sandbox_stats(sandbox.url)
    assert stats["deduplicated_changed"] == 0, "an event was sent twice with different content"
    assert stats["deduplicated"] < 5 * 8 * 250
    assert all(len(v) == 1 for v in copies.values())


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    broker = start_broker_or_fail()
    yield broker
    broker.remove()


async def test_broker_restart_mid_stream_recovers_without_restarting_fboc(
    own_broker: Broker, sandbox: SandboxThread
) -> None:
    topic, group = "restart-topic", "restart-group"
    create_topic(own_broker.bootstrap, topic, 2)
    create_topic(own_broker.bootstrap, f"{topic}.dlq", 1)
    settings = settings_for(
        own_broker.bootstrap,
        topic,
        group,
        sandbox.url,
        kafka={
            "bootstrap_servers": own_broker.bootstrap,
            "group_id": group,
            "dead_letter_topic": f"{topic}.dlq",
            "unreachable_timeout_seconds": 120,
        },
    )
    produce(own_broker.bootstrap, topic, [(f"k{i}".encode(), avro(track(i)), i % 2) for i in range(3000)])
    sandbox_post(sandbox.url, "/_sandbox/faults", {"action": {"latency_ms": 200}})
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        await wait_until(lambda: len(sandbox_events(sandbox.url)) > 0, 30, "first deliveries")
        await asyncio.to_thread(own_broker.stop)
        await asyncio.sleep(4)
        await asyncio.to_thread(own_broker.start)
        sandbox_post(sandbox.url, "/_sandbox/reset", {})  # faults off; deliveries recounted
        produce(
            own_broker.bootstrap,
            topic,
            [(f"k{i}".encode(), avro(track(i)), i % 2) for i in range(3000, 3500)],
        )
        await wait_until(
            lambda: task.done() or all_committed(own_broker.bootstrap, group, topic, 2), 120, "recovery"
        )
        assert not task.done(), "fboc exited instead of recovering"
    finally:
        stop.set()
        code = await asyncio.wait_for(task, 60)
    assert code == 0
    # everything not yet committed before the outage was sent again after it: the records
    # produced after the restart all arrived
    ids = {e["event"]["event_id"] for e in sandbox_events(sandbox.url)}
    assert {f"m-{i}" for i in range(3000, 3500)} <= ids


async def test_second_consumer_joins_then_leaves_nothing_lost(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    topic = new_topic(4)
    # at most 2 x 100 events per 0.2 s, so the stream is still flowing when the second joins
    config = config_for(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        batching={"linger_ms": 50, "max_events": 100, "max_in_flight": 2, "max_buffered_records": 400},
    )
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    records, bad = make_mix(8000, seed=3)
    produce(kafka.bootstrap, topic, records)
    sandbox_post(sandbox.url, "/_sandbox/faults", {"action": {"latency_ms": 200}})
    first, second = FbocProcess(tmp_path, config, "a"), FbocProcess(tmp_path, config, "b")
    try:
        first.start()
        await wait_until(lambda: len(sandbox_events(sandbox.url)) > 500, 60, "first progress")
        second.start()
        await wait_until(
            lambda: any(
                line.get("event") == "partitions_assigned" and line["partitions"]
                for line in second.log_lines()
            ),
            60,
            "the second consumer to get partitions",
        )
        await asyncio.sleep(2)
        assert second.running()
        assert second.terminate() == 0
        await wait_until(
            lambda: all_committed(kafka.bootstrap, group_id, topic, 4),
            120,
            "the first consumer to finish alone",
        )
        assert first.terminate() == 0
    finally:
        first.stop_quietly()
        second.stop_quietly()
    # the group really rebalanced: the first gave partitions to the second, and got them back
    assert any(line.get("event") == "partitions_released" for line in first.log_lines())
    assert (
        len(
            [
                line
                for line in first.log_lines()
                if line.get("event") == "partitions_assigned" and line["partitions"]
            ]
        )
        >= 2
    )
    check_nothing_lost(
        kafka.bootstrap,
        topic,
        f"{topic}.dlq",
        sandbox.url,
        {f"m-{i}" for i in range(8000) if i not in bad},
        {f"k-{i}".encode() for i in bad},
    )


async def test_sigterm_stops_cleanly_and_commits_only_delivered_records(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    topic = new_topic(1)
    config = config_for(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        batching={"linger_ms": 20, "max_events": 50, "max_in_flight": 2},
        service={"port": 0, "shutdown_deadline_seconds": 8},
    )
    produce(kafka.bootstrap, topic, [(f"k{i}".encode(), avro(track(i)), 0) for i in range(2000)])
    sandbox_post(sandbox.url, "/_sandbox/faults", {"action": {"latency_ms": 1000}})
    fboc = FbocProcess(tmp_path, config).start()
    try:
        await wait_until(lambda: len(sandbox_events(sandbox.url)) >= 100, 30, "deliveries")
        started = time.monotonic()
        assert fboc.terminate(timeout=30) == 0
        assert time.monotonic() - started < 8 + 5
    finally:
        fboc.stop_quietly()
    mark = committed(kafka.bootstrap, group_id, topic, 1)[0]
    delivered = {e["event"]["event_id"] for e in sandbox_events(sandbox.url)}
    assert 100 <= mark < 2000
    assert {f"m-{i}" for i in range(mark)} <= delivered  # nothing committed that was not sent
    assert any(line.get("event") == "stopped" for line in fboc.log_lines())


async def test_graph_faults_end_in_dead_letters_with_graph_headers(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread
) -> None:
    topic = new_topic(1)
    settings = settings_for(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        facebook={"graph_url": sandbox.url, "max_attempts": 3, "timeout_seconds": 2},
    )
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    # record 3 is refused by Meta (code 100); event set 222 (AddToCart) always fails with 500
    sandbox_post(
        sandbox.url, "/_sandbox/faults", {"match": {"event_ids": ["m-3"]}, "action": {"reject_events": True}}
    )
    sandbox_post(
        sandbox.url, "/_sandbox/faults", {"match": {"event_set_id": "222"}, "action": {"http_status": 500}}
    )
    names = ["Order Completed"] * 8 + ["Product Viewed"]  # Product Viewed → sets 111 and 222
    produce(
        kafka.bootstrap, topic, [(f"k-{i}".encode(), avro(track(i, name)), 0) for i, name in enumerate(names)]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        await wait_until(lambda: all_committed(kafka.bootstrap, group_id, topic, 1), 60, "all committed")
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    dead = read_all(kafka.bootstrap, f"{topic}.dlq", 2, timeout=20)
    by_key = {m.key(): headers_of(m) for m in dead}
    assert set(by_key) == {b"k-3", b"k-8"}
    invalid, failed = by_key[b"k-3"], by_key[b"k-8"]
    assert header(invalid, "fboc.error.reason") == "graph_invalid_event"
    assert header(invalid, "fboc.graph.code") == "100"
    assert header(invalid, "fboc.event_set_id") == "111"
    assert header(invalid, "fboc.error.stage") == "deliver"
    assert header(invalid, "fboc.graph.fbtrace_id")
    assert header(failed, "fboc.error.reason") == "graph_retries_exhausted"
    assert header(failed, "fboc.event_set_id") == "222"  # the 111 copy was delivered
    assert header(failed, "fboc.attempts") == "3"
    received = {(e["event"]["event_id"], e["event_set_id"]) for e in sandbox_events(sandbox.url)}
    assert ("m-8", "111") in received
    assert ("m-3", "111") not in received
    requests = await asyncio.to_thread(sandbox_requests, sandbox.url)
    assert len(requests) <= 12  # no retry storm: 1 + split 4 levels for 111, 3 attempts for 222


def start_against_slow_api(
    kafka: Broker,
    topic: str,
    group_id: str,
    sandbox: SandboxThread,
    tmp_path: Path,
    records: int,
    latency_ms: int,
    batching: dict[str, Any],
) -> tuple[FbocProcess, int]:
    """`records` track calls over 4 partitions, a sandbox answering in `latency_ms`, and fboc
    started on them with its metrics on the returned port."""
    port = kafka_local.free_port()
    config = config_for(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        batching=batching,
        service={"port": port, "shutdown_deadline_seconds": 10},
    )
    produce(kafka.bootstrap, topic, [(f"k{i}".encode(), avro(track(i)), i % 4) for i in range(records)])
    sandbox_post(sandbox.url, "/_sandbox/faults", {"action": {"latency_ms": latency_ms}})
    return FbocProcess(tmp_path, config).start(), port


async def test_slow_graph_api_pauses_partitions_and_memory_stays_flat(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    topic = new_topic(4)
    fboc, port = start_against_slow_api(
        kafka,
        topic,
        group_id,
        sandbox,
        tmp_path,
        records=40_000,
        latency_ms=2000,
        batching={"linger_ms": 50, "max_events": 100, "max_in_flight": 2, "max_buffered_records": 300},
    )
    rss: list[float] = []
    paused_seen = []
    try:
        # start-up (config checks, the country table) can take seconds on a loaded machine
        await wait_until(lambda: serving(port), 60, "fboc's metrics port")
        for _ in range(12):
            await asyncio.sleep(1.5)
            rss.append(psutil.Process(fboc.proc.pid).memory_info().rss / 2**20)  # type: ignore[union-attr]
            paused_seen.append(await asyncio.to_thread(paused_partitions, port))
        assert max(paused_seen) == 4, paused_seen
        sandbox_post(sandbox.url, "/_sandbox/reset", {})  # fast again: the backlog drains
        await wait_until(lambda: paused_partitions(port) == 0, 60, "partitions to resume")
        await wait_until(
            lambda: all_committed(kafka.bootstrap, group_id, topic, 4), 180, "the backlog to drain"
        )
        assert fboc.terminate() == 0
    finally:
        fboc.stop_quietly()
    # flat: the last samples are no higher than the early ones plus a small allowance
    assert max(rss[6:]) - max(rss[:6]) < 15, rss


def gauge(port: int, name: str) -> float:
    """An unlabelled gauge from fboc's /metrics; -1 when absent."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return -1.0


def serving(port: int) -> bool:
    """Whether fboc's metrics port answers yet."""
    import urllib.error

    try:
        gauge(port, "fboc_paused_partitions")
    except urllib.error.URLError:
        return False
    return True


def paused_partitions(port: int) -> float:
    return gauge(port, "fboc_paused_partitions")


async def test_saturated_deliveries_stop_reading_so_the_buffer_stays_small(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    """One request in flight at 400 ms and a large buffer cap: fboc reads one poll's worth,
    then waits for deliveries instead of filling the buffer up to the cap."""
    topic = new_topic(4)
    fboc, port = start_against_slow_api(
        kafka,
        topic,
        group_id,
        sandbox,
        tmp_path,
        records=3000,
        latency_ms=400,
        batching={"linger_ms": 50, "max_events": 50, "max_in_flight": 1, "max_buffered_records": 5000},
    )
    buffered: list[float] = []
    try:
        await wait_until(lambda: len(sandbox_events(sandbox.url)) >= 50, 60, "first delivery")
        for _ in range(16):
            buffered.append(await asyncio.to_thread(gauge, port, "fboc_buffered_records"))
            await asyncio.sleep(0.25)
        sandbox_post(sandbox.url, "/_sandbox/faults", {}, method="DELETE")  # fast again
        await wait_until(
            lambda: all_committed(kafka.bootstrap, group_id, topic, 4), 120, "the backlog to drain"
        )
        assert fboc.terminate() == 0
    finally:
        fboc.stop_quietly()
    # at most one poll (500 records), the open batch held while saturated (max_events 50) and
    # the one-record polls that keep the consumer in its group; reading on would buffer 3,000
    assert 0 < max(buffered) <= 500 + 50 + 10, buffered
    assert {e["event"]["event_id"] for e in sandbox_events(sandbox.url)} == {f"m-{i}" for i in range(3000)}


async def test_lingered_batches_wait_for_a_free_slot_and_keep_filling(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    """Two event sets share the stream and one request is in flight at a time. A batch that
    has lingered is sent only when the slot is free; until then it keeps filling, instead of
    going out part full as soon as the batch ahead of it took the slot. A batch holds 400
    events, a poll brings at most 250 of each set."""
    topic = new_topic(1)
    config = config_for(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        batching={"linger_ms": 50, "max_events": 400, "max_in_flight": 1, "max_buffered_records": 5000},
    )
    names = ("Order Completed", "Product Added")  # Purchase -> 111, AddToCart -> 222
    produce(
        kafka.bootstrap, topic, [(f"k{i}".encode(), avro(track(i, names[i % 2])), 0) for i in range(4000)]
    )
    sandbox_post(sandbox.url, "/_sandbox/faults", {"action": {"latency_ms": 300}})
    fboc = FbocProcess(tmp_path, config).start()
    try:
        await wait_until(
            lambda: all_committed(kafka.bootstrap, group_id, topic, 1), 120, "every record delivered"
        )
        assert fboc.terminate() == 0
    finally:
        fboc.stop_quietly()
    requests = await asyncio.to_thread(sandbox_requests, sandbox.url)
    sizes = [r["events"] for r in requests]
    assert sum(sizes) == 4000
    # 2,000 events per set make 5 full requests each. Part full: the first one (the slot was
    # free when it lingered) and the last of each set.
    assert sum(1 for n in sizes if n < 400) <= 3, sizes


async def test_dead_letter_flood_stops_fboc(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json")
    topic = new_topic(1)
    settings = settings_for(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        dead_letter={"breaker": {"window_records": 1000, "max_ratio": 0.5, "max_consecutive": 50}},
    )
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    produce(kafka.bootstrap, topic, [(f"k{i}".encode(), b"\x07garbage", 0) for i in range(500)])
    code = await asyncio.wait_for(serve(settings, asyncio.Event()), 60)
    assert code == 1  # stopped on the flood instead of dead-lettering the whole topic
    (fatal,) = [orjson.loads(x) for x in capsys.readouterr().err.splitlines() if '"fatal"' in x]
    assert fatal["condition"] == "DeadLetterBreakerTripped"
    assert "50 consecutive dead letters" in fatal["error"]
    mark = committed(kafka.bootstrap, group_id, topic, 1)[0]
    # the 49 dead letters before the trip are committed; the one the breaker refused is not
    assert mark == 49
    assert len(read_all(kafka.bootstrap, f"{topic}.dlq", mark, timeout=10)) >= mark


async def test_unreachable_brokers_exit_non_zero(sandbox: SandboxThread, tmp_path: Path) -> None:
    port = kafka_local.free_port()
    config = config_for(
        f"127.0.0.1:{port}",
        "nowhere",
        "g",
        sandbox.url,
        kafka={
            "bootstrap_servers": f"127.0.0.1:{port}",
            "group_id": "g",
            "dead_letter_topic": "dlq",
            "unreachable_timeout_seconds": 3,
        },
    )
    fboc = FbocProcess(tmp_path, config).start()
    try:
        code = await asyncio.to_thread(fboc.proc.wait, 60)  # type: ignore[union-attr]
    finally:
        fboc.stop_quietly()
    assert code == 1
    (fatal,) = [line for line in fboc.log_lines() if line.get("event") == "fatal"]
    assert "unreachable" in fatal["error"]
    # named by its class, or as the stop that came first when the final commit failed after it
    assert "BrokersUnreachable" in (fatal["condition"], fatal.get("first_condition"))
