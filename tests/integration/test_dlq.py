"""`fboc dlq stats` and `fboc dlq replay` on the real broker, run as the real command.

Each test dead-letters a mix of records through the real pipeline (undecodable bytes, Purchases
without a value, a code-100 rejection for one event set, events too old for the window), stops
fboc, then works on the dead-letter topic.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Message, Producer

from consumer.adapters.kafka.admin import end_offsets
from consumer.adapters.kafka.deadletter import header, headers_of
from consumer.config.settings import Settings, parse_settings
from consumer.sandbox import SandboxThread
from tests.helpers import (
    ROOT,
    avro,
    committed,
    config_for,
    create_topic,
    key_of,
    offset_of,
    partition_of,
    read_all,
    sandbox_events,
    sandbox_post,
    track,
    wait_until,
    write_config,
)
from tests.integration.test_pipeline import run_until
from tests.kafka_broker import Broker

pytestmark = pytest.mark.kafka

DAY_S = 86_400
Record = tuple[bytes, bytes, int, list[tuple[str, bytes]], int | None]


def produce_records(bootstrap: str, topic: str, records: list[Record]) -> None:
    """(key, value, partition, headers, timestamp ms | None) records, all acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors: list[Any] = []
    for key, value, partition, headers, ts in records:
        kwargs: dict[str, Any] = {
            "key": key,
            "value": value,
            "partition": partition,
            "headers": headers,
            "on_delivery": lambda err, _m: errors.append(err),
        }
        if ts is not None:
            kwargs["timestamp"] = ts
        producer.produce(topic, **kwargs)
    assert producer.flush(30) == 0
    assert errors == [None] * len(records)


@dataclass
class Scene:
    bootstrap: str
    topic: str
    dlq: str
    group: str
    config: dict[str, Any]
    config_path: Path
    originals: dict[bytes, Record]  # by key
    reasons: dict[bytes, str]  # expected dead letters: key -> reason
    sandbox_url: str
    tmp: Path

    @property
    def settings(self) -> Settings:
        return parse_settings(orjson.loads(orjson.dumps(self.config)), {})

    def with_config(self, name: str, **changes: Any) -> Path:
        """Another configuration file: `dead_letter`/`destination` keys changed."""
        data = orjson.loads(orjson.dumps(self.config))
        data["dead_letter"] = {**data.get("dead_letter", {}), **changes.get("dead_letter", {})}
        data["destinations"][0].update(changes.get("destination", {}))
        return write_config(self.tmp / f"{name}.yaml", data)

    def ends(self, topic: str | None = None) -> dict[int, int]:
        return end_offsets(self.bootstrap, topic or self.topic, 2)


async def dead_letter_mix(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp: Path, undecodable: int = 3
) -> Scene:
    topic = new_topic(2)
    dlq = f"{topic}.dlq"
    create_topic(kafka.bootstrap, dlq, 2)
    config = config_for(kafka.bootstrap, topic, group_id, sandbox.url)
    config["destinations"][0]["max_event_age_days"] = 2
    now = time.time()
    missing_value = []
    for i in (20, 21):
        rec = track(i)
        rec["properties"] = {"currency": "USD"}  # a Purchase without any value
        missing_value.append((f"v-{i}".encode(), avro(rec), i % 2, [("trace", f"v-{i}".encode())], None))
    records: list[Record] = [
        *[(f"g-{i}".encode(), avro(track(i)), i % 2, [], None) for i in range(4)],
        *[
            (
                f"u-{i}".encode(),
                b"\x02garbage-not-avro-" + str(i).encode(),
                i % 2,
                [("trace", f"u-{i}".encode())],
                None,
            )
            for i in range(undecodable)
        ],
        *missing_value,
        # Product Viewed goes to event sets 111 and 222; 222 refuses it (code 100)
        (b"r-0", avro(track(50, "Product Viewed")), 1, [("trace", b"r-0")], None),
        # too old for any window / for this destination's 2 days, both by event_time and timestamp
        (
            b"o-0",
            avro(track(60, when=now - 10 * DAY_S)),
            0,
            [("trace", b"o-0")],
            int((now - 10 * DAY_S) * 1000),
        ),
        (
            b"o-1",
            avro(track(61, when=now - 3 * DAY_S)),
            1,
            [("trace", b"o-1")],
            int((now - 3 * DAY_S) * 1000),
        ),
    ]
    reasons = {
        **{f"u-{i}".encode(): "undecodable" for i in range(undecodable)},
        b"v-20": "missing_value",
        b"v-21": "missing_value",
        b"r-0": "graph_invalid_event",
        b"o-0": "event_too_old",
        b"o-1": "event_too_old",
    }
    sandbox_post(
        sandbox.url,
        "/_sandbox/faults",
        {"match": {"event_set_id": "222", "event_ids": ["m-50"]}, "action": {"reject_events": True}},
    )
    produce_records(kafka.bootstrap, topic, records)
    scene = Scene(
        kafka.bootstrap,
        topic,
        dlq,
        group_id,
        config,
        write_config(tmp / "fboc.yaml", config),
        {r[0]: r for r in records},
        reasons,
        sandbox.url,
        tmp,
    )
    await run_fboc(scene, len(reasons))
    return scene


async def run_fboc(scene: Scene, dead_letters: int, settings: Settings | None = None) -> None:
    """fboc until every source offset is committed and `dead_letters` are on the topic."""
    ends = scene.ends()
    await run_until(
        settings or scene.settings,
        lambda: (
            committed(scene.bootstrap, scene.group, scene.topic, 2) == ends
            and sum(scene.ends(scene.dlq).values()) == dead_letters
        ),
        60,
        "fboc to finish the records",
    )


def dlq(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "consumer.ops.cli", "dlq", *args, "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def start_dlq(config: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "consumer.ops.cli", "dlq", *args, "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def dlq_json(config: Path, *args: str, code: int = 0) -> dict[str, Any]:
    proc = dlq(config, *args, "--json")
    assert proc.returncode == code, proc.stderr.decode()[-3000:]
    out: dict[str, Any] = orjson.loads(proc.stdout)
    return out


def records_after(bootstrap: str, topic: str, before: dict[int, int]) -> list[Message]:
    total = sum(end_offsets(bootstrap, topic, len(before)).values())
    return [
        m for m in read_all(bootstrap, topic, total, timeout=30) if offset_of(m) >= before[partition_of(m)]
    ]


def fboc_headers(msg: Message) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in headers_of(msg) if k.startswith("fboc.")]


def no_group_commits(bootstrap: str, group: str, topic: str) -> bool:
    return all(o < 0 for o in committed(bootstrap, group, topic, 2).values())


async def test_stats_counts_every_dead_letter_by_reason_stage_event_set_and_age(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    scene = await dead_letter_mix(kafka, new_topic, group_id, sandbox, tmp_path)
    stats = dlq_json(scene.config_path, "stats")
    assert stats["total"] == 8
    assert stats["by_reason"] == {
        "undecodable": 3,
        "missing_value": 2,
        "event_too_old": 2,
        "graph_invalid_event": 1,
    }
    assert stats["by_stage"] == {"decode": 3, "transform": 4, "deliver": 1}
    assert stats["by_destination"] == {"main": 1}
    assert stats["by_event_set"] == {"222": 1}
    assert stats["by_original_topic"] == {scene.topic: 8}
    assert stats["by_age"] == {"<1h": 8, "<1d": 0, "<7d": 0, "older": 0}  # failed just now
    assert stats["by_replay_count"] == {"0": 8}
    assert stats["replays_exhausted"] == 0
    table = dlq(scene.config_path, "stats")
    assert table.returncode == 0, table.stderr.decode()
    text = table.stdout.decode()
    for word in ("undecodable", "graph_invalid_event", "222", "<1h", scene.topic):
        assert word in text
    assert no_group_commits(scene.bootstrap, f"{group_id}.replay", scene.dlq)


async def test_dry_run_changes_nothing_and_counts_what_would_be_replayed(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    before_mix = int(time.time() * 1000) - 1000
    scene = await dead_letter_mix(kafka, new_topic, group_id, sandbox, tmp_path)
    after_mix = int(time.time() * 1000) + 1000
    src, dead = scene.ends(), scene.ends(scene.dlq)
    summary = dlq_json(scene.config_path, "replay", "--dry-run")
    assert summary["dry_run"] is True
    # o-0 (10 days) and o-1 (3 days) are past this destination's 2-day window
    assert (summary["replayed"], summary["too_old"], summary["parked"], summary["skipped"]) == (6, 2, 0, 0)
    assert summary["by_reason"] == {
        "undecodable": {"replayed": 3},
        "missing_value": {"replayed": 2},
        "graph_invalid_event": {"replayed": 1},
        "event_too_old": {"too_old": 2},
    }
    # filters: event set, and --since/--until through offsets_for_times
    assert dlq_json(scene.config_path, "replay", "--dry-run", "--event-set", "222")["replayed"] == 1
    assert dlq_json(scene.config_path, "replay", "--dry-run", "--until", str(before_mix))["replayed"] == 0
    assert (
        dlq_json(
            scene.config_path,
            "replay",
            "--dry-run",
            "--since",
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(after_mix / 1000 + 1)),
        )["replayed"]
        == 0
    )
    both = dlq_json(
        scene.config_path,
        "replay",
        "--dry-run",
        "--since",
        str(before_mix),
        "--until",
        str(after_mix),
        "--reason",
        "undecodable,missing_value",
    )
    assert (both["replayed"], both["skipped"]) == (5, 3)
    text = dlq(scene.config_path, "replay", "--dry-run")
    assert text.returncode == 0
    assert "DRY RUN" in text.stdout.decode()
    assert "would replay 6" in text.stdout.decode()
    # nothing written, nothing committed
    assert scene.ends() == src
    assert scene.ends(scene.dlq) == dead
    assert no_group_commits(scene.bootstrap, f"{group_id}.replay", scene.dlq)


async def test_replay_by_reason_republishes_exactly_those_and_fboc_delivers_to_their_event_set(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    scene = await dead_letter_mix(kafka, new_topic, group_id, sandbox, tmp_path)
    src, dead = scene.ends(), scene.ends(scene.dlq)
    summary = dlq_json(scene.config_path, "replay", "--reason", "graph_invalid_event")
    assert (summary["replayed"], summary["skipped"], summary["parked"], summary["too_old"]) == (1, 7, 0, 0)
    (again,) = records_after(scene.bootstrap, scene.topic, src)
    key, value, partition, headers, _ts = scene.originals[b"r-0"]
    assert (again.key(), again.value(), again.partition()) == (key, value, partition)
    assert headers_of(again) == [*headers, ("fboc.replay_count", b"1"), ("fboc.target.event_set_id", b"222")]
    # the skipped records' offsets advanced too: the group is at the end of the topic
    assert committed(scene.bootstrap, f"{group_id}.replay", scene.dlq, 2) == dead
    # ... so another filter in the same group finds nothing left; it needs its own group
    assert dlq_json(scene.config_path, "replay", "--reason", "missing_value")["replayed"] == 0
    other = dlq_json(scene.config_path, "replay", "--reason", "missing_value", "--group", f"{group_id}.other")
    assert other["replayed"] == 2
    src2 = scene.ends()
    assert sum(src2.values()) == sum(src.values()) + 3
    missing = records_after(scene.bootstrap, scene.topic, src)
    missing = [m for m in missing if m.key() != b"r-0"]
    assert sorted(key_of(m) for m in missing) == [b"v-20", b"v-21"]
    for msg in missing:
        key, value, partition, headers, _ts = scene.originals[key_of(msg)]
        assert (msg.value(), msg.partition()) == (value, partition)
        assert headers_of(msg) == [*headers, ("fboc.replay_count", b"1")]  # no target: all sets

    # fboc again, the fault gone: m-50 reaches 222 only (111 had it already); the Purchases
    # without a value are dead-lettered again, now with replay_count 1
    sandbox_post(sandbox.url, "/_sandbox/reset", {})
    await run_fboc(scene, 8 + 2)
    received = Counter((e["event"]["event_id"], e["event_set_id"]) for e in sandbox_events(sandbox.url))
    assert received == Counter({("m-50", "222"): 1})
    redead = records_after(scene.bootstrap, scene.dlq, dead)
    assert sorted(key_of(m) for m in redead) == [b"v-20", b"v-21"]
    for msg in redead:
        assert header(headers_of(msg), "fboc.replay_count") == "1"
        assert header(headers_of(msg), "fboc.error.reason") == "missing_value"


async def test_interrupted_replay_resumes_without_repeating_or_skipping(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    n = 200
    scene = await dead_letter_mix(kafka, new_topic, group_id, sandbox, tmp_path, undecodable=n)
    out = new_topic(1, prefix="replayed")
    args = ["replay", "--reason", "undecodable", "--to", out]
    first = dlq_json(scene.config_path, *args, "--limit", "7")
    assert (first["replayed"], first["limit_reached"]) == (7, True)
    assert end_offsets(scene.bootstrap, out, 1)[0] == 7

    # a run stopped by SIGTERM mid-stream (50/s: acknowledgements not yet committed are
    # in the air): it commits what was acknowledged and exits 130
    proc = start_dlq(scene.config_path, *args, "--rate", "50", "--json")
    try:
        await wait_until(
            lambda: end_offsets(scene.bootstrap, out, 1)[0] >= 7 + 20, 30, "the second run to re-publish some"
        )
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr.decode()[-2000:]
    second = orjson.loads(stdout)
    assert second["interrupted"] is True
    assert 20 <= second["replayed"] < n - 7
    assert end_offsets(scene.bootstrap, out, 1)[0] == 7 + second["replayed"]

    third = dlq_json(scene.config_path, *args)
    assert third["replayed"] == n - 7 - second["replayed"]
    assert third["interrupted"] is False
    replayed = read_all(scene.bootstrap, out, n, timeout=30)
    keys = Counter(m.key() for m in replayed)
    assert keys == Counter({f"u-{i}".encode(): 1 for i in range(n)})
    for msg in replayed:
        assert msg.value() == scene.originals[key_of(msg)][1]
        assert fboc_headers(msg) == [("fboc.replay_count", b"1")]
    assert dlq_json(scene.config_path, *args)["replayed"] == 0  # finished: nothing left


async def test_replay_killed_with_sigkill_resumes_without_skipping(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    scene = await dead_letter_mix(kafka, new_topic, group_id, sandbox, tmp_path, undecodable=20)
    out = new_topic(1, prefix="replayed")
    args = ["replay", "--reason", "undecodable", "--to", out]
    proc = start_dlq(scene.config_path, *args, "--rate", "4")
    try:
        await wait_until(lambda: end_offsets(scene.bootstrap, out, 1)[0] >= 5, 30, "a few re-publishes")
    finally:
        proc.kill()
        proc.wait()
    killed_at = end_offsets(scene.bootstrap, out, 1)[0]
    assert killed_at < 20
    dlq_json(scene.config_path, *args)
    keys = Counter(m.key() for m in read_all(scene.bootstrap, out, 20, timeout=30))
    assert set(keys) == {f"u-{i}".encode() for i in range(20)}  # nothing skipped
    # a kill between an acknowledgement and its commit repeats that record (at-least-once);
    # commits follow acknowledgements within 0.2 s, so at 4 records/s at most one or two
    assert sum(keys.values()) - 20 <= 2, keys


async def test_record_that_reached_max_replays_is_parked_not_republished(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    scene = await dead_letter_mix(kafka, new_topic, group_id, sandbox, tmp_path)
    config = scene.with_config("once", dead_letter={"max_replays": 1})
    assert dlq_json(config, "replay", "--reason", "missing_value")["replayed"] == 2
    dead = scene.ends(scene.dlq)
    await run_fboc(scene, 8 + 2)  # the same Purchases without a value fail again
    redead = records_after(scene.bootstrap, scene.dlq, dead)
    assert [header(headers_of(m), "fboc.replay_count") for m in redead] == ["1", "1"]
    src = scene.ends()
    proc = dlq(config, "replay", "--reason", "missing_value")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "parked 2" in proc.stdout.decode()
    summary = dlq_json(config, "replay", "--reason", "missing_value", "--group", "g-parked")
    # the new group sees the first generation (replay_count 0) and the second (parked)
    assert (summary["replayed"], summary["parked"]) == (2, 2)
    assert summary["by_reason"] == {"missing_value": {"replayed": 2, "parked": 2}}
    assert sum(scene.ends().values()) == sum(src.values()) + 2
    parked_logs = [
        orjson.loads(line)
        for line in proc.stderr.splitlines()
        if line.startswith(b"{") and b"replay_parked" in line
    ]
    assert [entry["replay_count"] for entry in parked_logs] == [1, 1]
    # parked records stay on the dead-letter topic, counted by stats
    stats = dlq_json(config, "stats")
    assert stats["replays_exhausted"] == 2
    assert stats["by_replay_count"] == {"0": 8, "1": 2}


async def test_record_too_old_for_meta_is_reported_not_republished(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path
) -> None:
    scene = await dead_letter_mix(kafka, new_topic, group_id, sandbox, tmp_path)
    src = scene.ends()
    proc = dlq(scene.config_path, "replay", "--reason", "event_too_old", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    summary = orjson.loads(proc.stdout)
    assert (summary["too_old"], summary["replayed"]) == (2, 0)
    assert scene.ends() == src
    reports = [
        orjson.loads(line)
        for line in proc.stderr.splitlines()
        if line.startswith(b"{") and b"replay_too_old" in line
    ]
    assert sorted((r["limit_days"], round(r["age_days"])) for r in reports) == [(2, 3), (2, 10)]
    assert b"Person6" not in proc.stderr + proc.stdout  # no record content in the report

    # with a 7-day window (the destination's max_event_age_days raised) o-1 is replayable,
    # o-0 (10 days) still is not; the original Kafka timestamp travels with the record
    wider = scene.with_config("wider", destination={"max_event_age_days": 7})
    summary = dlq_json(wider, "replay", "--reason", "event_too_old", "--group", "g-wider")
    assert (summary["too_old"], summary["replayed"]) == (1, 1)
    (again,) = records_after(scene.bootstrap, scene.topic, src)
    assert again.key() == b"o-1"
    assert again.value() == scene.originals[b"o-1"][1]
    assert again.timestamp()[1] == scene.originals[b"o-1"][4]
    config = orjson.loads(orjson.dumps(scene.config))
    config["destinations"][0]["max_event_age_days"] = 7
    await run_fboc(scene, 8, parse_settings(config, {}))
    ids = {(e["event"]["event_id"], e["event_set_id"]) for e in sandbox_events(sandbox.url)}
    assert ("m-61", "111") in ids
    assert not any(event_id == "m-60" for event_id, _ in ids)
