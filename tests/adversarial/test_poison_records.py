"""One poison record per class against the real broker and the sandbox: it is dead-lettered
with its own reason (or, when the cause is outside it, held and delivered later), its
neighbours are delivered, the committed offsets reach the log end, and fboc keeps running: no
crash loop, no restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest

from consumer.adapters.codec import wire_format
from consumer.adapters.kafka.admin import end_offsets
from consumer.adapters.kafka.deadletter import header, headers_of
from consumer.config.settings import Settings, parse_settings
from consumer.runtime.service import serve
from consumer.sandbox import SandboxThread
from consumer.telemetry.metrics import METRICS, configure_logging
from tests.adversarial.registry_stub import RegistryStub
from tests.helpers import (
    ROOT,
    SEGMENT_SCHEMA,
    TOKEN,
    avro,
    committed,
    config_for,
    create_topic,
    key_of,
    produce,
    read_all,
    sandbox_events,
    sandbox_post,
    settings_for,
    track,
    wait_until,
    write_config,
)
from tests.integration.test_dialect_commandersact import SCHEMA as TC_SCHEMA
from tests.integration.test_dialect_commandersact import tc_event
from tests.integration.test_pipeline import run_until
from tests.kafka_broker import Broker

pytestmark = pytest.mark.kafka


def deep(depth: int) -> Any:
    value: Any = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"next": value}
    return value


def commandersact(bootstrap: str, topic: str, group: str, url: str) -> Settings:
    return settings_for(
        bootstrap,
        topic,
        group,
        url,
        sources=[
            {
                "name": "tc",
                "topic": topic,
                "dialect": "commandersact",
                "destination": "main",
                "schema": str(ROOT / "schemas" / "commandersact_event.avsc"),
            }
        ],
        destinations=[
            {
                "name": "main",
                "access_token": TOKEN,
                "limited_data_use": True,
                "event_sets": {"Purchase": ["111"]},
            }
        ],
    )


def tc_poison(kind: str) -> bytes:
    event = tc_event(1, "purchase")
    facebook = event["integrations"]["facebook"]
    if kind == "deep_custom_data":
        facebook["custom_data"] = deep(300)
    else:
        facebook.update(data_processing_options=["LDU"], data_processing_options_country=1e300)
    # as JSON text: orjson, which the schema's encoder uses, refuses to write it 300 deep
    return TC_SCHEMA.encode({**event, "integrations": json.dumps(event["integrations"])})


# class → (dialect, the poison record's value, its reason, its stage)
POISON: dict[str, tuple[str, Callable[[], bytes], str, str]] = {
    "deep_custom_data": ("commandersact", lambda: tc_poison("deep_custom_data"), "too_deep", "transform"),
    "ldu_country_1e300": ("commandersact", lambda: tc_poison("ldu"), "number_out_of_range", "transform"),
    "undecodable_999900_bytes": ("segment", lambda: b"\x02" + b"\xff" * 999_899, "undecodable", "decode"),
}


@pytest.mark.parametrize("kind", sorted(POISON))
async def test_a_poison_record_is_dead_lettered_and_its_neighbours_delivered(
    kind: str, kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread
) -> None:
    dialect, poison, reason, stage = POISON[kind]
    topic = new_topic(1)
    if dialect == "commandersact":
        settings = commandersact(kafka.bootstrap, topic, group_id, sandbox.url)
        good = [TC_SCHEMA.encode(tc_event(i, "purchase")) for i in (0, 2)]
        ids = {"tc-0", "tc-2"}
    else:
        settings = settings_for(kafka.bootstrap, topic, group_id, sandbox.url)
        good = [avro(track(i)) for i in (0, 2)]
        ids = {"m-0", "m-2"}
    dlq = settings.kafka.dead_letter_topic
    create_topic(kafka.bootstrap, dlq, 1)
    value = poison()
    produce(
        kafka.bootstrap,
        topic,
        [(b"k-0", good[0], 0), (b"k-1", value, 0), (b"k-2", good[1], 0)],
        headers=[("trace", b"t-1")],
    )
    ends = end_offsets(kafka.bootstrap, topic, 1)
    assert ends == {0: 3}

    await run_until(
        settings,
        lambda: committed(kafka.bootstrap, group_id, topic, 1) == ends,
        60,
        "the offsets committed past the poison record",
    )

    assert {e["event"]["event_id"] for e in sandbox_events(sandbox.url)} == ids
    (dead,) = read_all(kafka.bootstrap, dlq, 1)
    h = headers_of(dead)
    assert (key_of(dead), header(h, "fboc.error.stage"), header(h, "fboc.error.reason")) == (
        b"k-1",
        stage,
        reason,
    )
    assert (
        header(h, "fboc.original.topic"),
        header(h, "fboc.original.partition"),
        header(h, "fboc.original.offset"),
    ) == (topic, "0", "1")
    if len(value) < 900_000:
        assert dead.value() == value
        assert header(h, "fboc.truncated") is None
    else:  # the whole dead letter would pass the producer's 1,000,000 bytes: cut, and said so
        assert header(h, "fboc.truncated") == str(len(value))
        body = dead.value()
        assert body is not None
        assert 900_000 < len(body) < len(value)
        assert value.startswith(body)
        assert header(h, "trace") == "t-1"


def registry_settings(bootstrap: str, topic: str, group: str, url: str, registry: str) -> Settings:
    return settings_for(
        bootstrap,
        topic,
        group,
        url,
        kafka={
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "dead_letter_topic": f"{topic}.dlq",
            "schema_registry_url": registry,
        },
    )


@pytest.fixture
def registry() -> Iterator[RegistryStub]:
    stub = RegistryStub({1: SEGMENT_SCHEMA.raw_json, 2: "this is not JSON {", 3: '"string"'})
    yield stub
    stub.stop()


async def test_schemas_the_registry_answers_but_fboc_cannot_read_dead_letter_their_records(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, registry: RegistryStub
) -> None:
    registry.start()
    topic = new_topic(1)
    settings = registry_settings(kafka.bootstrap, topic, group_id, sandbox.url, registry.url)
    create_topic(kafka.bootstrap, settings.kafka.dead_letter_topic, 1)
    ids = [1, 2, 1, 3, 1, 2]  # the schema id of each record, in order
    produce(
        kafka.bootstrap,
        topic,
        [(f"k-{i}".encode(), wire_format(s, avro(track(i))), 0) for i, s in enumerate(ids)],
    )
    ends = end_offsets(kafka.bootstrap, topic, 1)

    await run_until(
        settings,
        lambda: committed(kafka.bootstrap, group_id, topic, 1) == ends,
        60,
        "the offsets committed past the records with unreadable schemas",
    )

    assert {e["event"]["event_id"] for e in sandbox_events(sandbox.url)} == {"m-0", "m-2", "m-4"}
    dead = read_all(kafka.bootstrap, settings.kafka.dead_letter_topic, 3)
    assert sorted((key_of(m), header(headers_of(m), "fboc.error.reason")) for m in dead) == [
        (b"k-1", "invalid_schema"),
        (b"k-3", "invalid_schema"),
        (b"k-5", "invalid_schema"),
    ]
    assert registry.requests == 3  # each id asked once, the unreadable one included


def held_records() -> float:
    for line in generate_latest(METRICS.registry).decode().splitlines():
        if line.startswith("fboc_held_records "):
            return float(line.split()[1])
    raise AssertionError("no fboc_held_records in /metrics")


@pytest.mark.parametrize("outage", ["connection_refused", "http_500"])
async def test_a_registry_outage_holds_records_and_they_go_through_once_it_is_back(
    outage: str, kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, registry: RegistryStub
) -> None:
    if outage == "http_500":
        registry.status = 500
        registry.start()
    topic = new_topic(2)
    settings = registry_settings(kafka.bootstrap, topic, group_id, sandbox.url, registry.url)
    create_topic(kafka.bootstrap, settings.kafka.dead_letter_topic, 1)
    produce(
        kafka.bootstrap,
        topic,
        [(f"k-{i}".encode(), wire_format(1, avro(track(i))), i % 2) for i in range(10)],
    )
    ends = end_offsets(kafka.bootstrap, topic, 2)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        await wait_until(lambda: held_records() == 10, 30, "the ten records to be held")
        await asyncio.sleep(2)  # held, not dead-lettered, not committed, not delivered
        assert held_records() == 10
        assert not task.done()
        assert sandbox_events(sandbox.url) == []
        assert all(o <= 0 for o in committed(kafka.bootstrap, group_id, topic, 2).values())
        if outage == "http_500":
            registry.status = None
        else:
            registry.start()
        await wait_until(
            lambda: task.done() or committed(kafka.bootstrap, group_id, topic, 2) == ends,
            60,
            "the held records delivered once the registry answers",
        )
        assert not task.done(), "fboc stopped"
    finally:
        stop.set()
        code = await asyncio.wait_for(task, 30)
    assert code == 0
    assert held_records() == 0
    assert {e["event"]["event_id"] for e in sandbox_events(sandbox.url)} == {f"m-{i}" for i in range(10)}
    assert read_all(kafka.bootstrap, settings.kafka.dead_letter_topic, 0, timeout=3) == []


def metric(name: str) -> float:
    for line in generate_latest(METRICS.registry).decode().splitlines():
        if line.startswith(name):
            return float(line.split()[1])
    return 0.0


@pytest.mark.parametrize("cause", ["registry_down", "token_rejected"])
async def test_stopping_while_records_are_held_says_how_many_are_unfinished(
    cause: str,
    kafka: Broker,
    new_topic: Any,
    group_id: str,
    sandbox: SandboxThread,
    registry: RegistryStub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json")
    topic = new_topic(1)
    if cause == "registry_down":  # the registry never starts: every lookup is refused
        settings = registry_settings(kafka.bootstrap, topic, group_id, sandbox.url, registry.url)
        values = [wire_format(1, avro(track(i))) for i in range(10)]
        held = 10
    else:  # the destination halts on error 190 and holds its records
        settings = settings_for(kafka.bootstrap, topic, group_id, sandbox.url)
        sandbox_post(
            sandbox.url, "/_sandbox/faults", {"action": {"error": {"code": 190, "http_status": 401}}}
        )
        values = [avro(track(i)) for i in range(10)]
        held = 0
        # gauges are process-wide: an earlier test may have left them at the values awaited
        METRICS.destination_halted.labels("main").set(0)
        METRICS.buffered.set(0)
    create_topic(kafka.bootstrap, settings.kafka.dead_letter_topic, 1)
    produce(kafka.bootstrap, topic, [(f"k-{i}".encode(), v, 0) for i, v in enumerate(values)])
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        if cause == "registry_down":
            await wait_until(lambda: held_records() == 10, 30, "the ten records to be held")
        else:
            await wait_until(
                lambda: (
                    metric('fboc_destination_halted{destination="main"}') == 1
                    and metric("fboc_buffered_records") == 10
                ),
                30,
                "the destination to halt with the ten records",
            )
    finally:
        stop.set()
        code = await asyncio.wait_for(task, 30)
    assert code == 0
    (stopped,) = [orjson.loads(x) for x in capsys.readouterr().err.splitlines() if '"stopped"' in x]
    assert stopped["unfinished_records"] == 10
    assert stopped.get("held_records", 0) == held
    assert all(o <= 0 for o in committed(kafka.bootstrap, group_id, topic, 1).values())


def replay(config: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "consumer.ops.cli", "dlq", "replay", "--json", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )


async def test_a_truncated_dead_letter_is_never_replayed_as_if_it_were_the_record(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    topic = new_topic(1)
    config = config_for(kafka.bootstrap, topic, group_id, sandbox.url)
    settings = parse_settings(config, {})
    create_topic(kafka.bootstrap, settings.kafka.dead_letter_topic, 1)
    produce(kafka.bootstrap, topic, [(b"big", b"\x02" + b"\xff" * 999_899, 0), (b"small", b"\x02garbage", 0)])
    await run_until(
        settings,
        lambda: committed(kafka.bootstrap, group_id, topic, 1) == {0: 2},
        60,
        "both records dead-lettered",
    )
    proc = replay(write_config(tmp_path / "fboc.yaml", config))
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    summary = orjson.loads(proc.stdout)
    assert (summary["replayed"], summary["skipped"]) == (1, 1)
    assert end_offsets(kafka.bootstrap, topic, 1) == {0: 3}  # only the small one came back
    assert b"replay_truncated" in proc.stderr
