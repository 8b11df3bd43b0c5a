"""`fboc dlq replay` on the real broker: where it may write, and where a resumed run stops.

The dead letters are written directly (with the headers fboc gives them), so each test controls
exactly what is on the dead-letter topic and when more arrives.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from consumer.adapters.kafka.admin import end_offsets
from consumer.adapters.kafka.deadletter import header, headers_of
from tests.helpers import committed, config_for, create_topic, key_of, read_all, wait_until, write_config
from tests.integration.test_dlq import dlq_json, produce_records, start_dlq
from tests.kafka_broker import Broker

pytestmark = pytest.mark.kafka


def dead_letters(
    keys: list[str], original_topic: str, replay_count: int = 0, partition: int = 0
) -> list[Any]:
    """Undecodable dead letters from `original_topic`, as fboc writes them."""
    now_ms = int(time.time() * 1000)
    return [
        (
            key.encode(),
            b"\x02not-avro-" + key.encode(),
            partition,
            [
                ("trace", key.encode()),
                ("fboc.error.stage", b"decode"),
                ("fboc.error.reason", b"undecodable"),
                ("fboc.original.topic", original_topic.encode()),
                ("fboc.original.partition", b"0"),
                ("fboc.original.timestamp", str(now_ms - 60_000).encode()),
                ("fboc.replay_count", str(replay_count).encode()),
            ],
            None,
        )
        for key in keys
    ]


def scene(kafka: Broker, new_topic: Any, group_id: str, tmp: Path) -> tuple[str, str, Path]:
    """A source topic and its dead-letter topic (one partition each) and fboc's config file."""
    topic = new_topic(1)
    dlq = f"{topic}.dlq"
    create_topic(kafka.bootstrap, dlq, 1)
    config = config_for(kafka.bootstrap, topic, group_id, "http://127.0.0.1:9")
    return topic, dlq, write_config(tmp / "fboc.yaml", config)


async def test_replay_writes_only_to_source_topics_unless_told(
    kafka: Broker, new_topic: Any, group_id: str, tmp_path: Path
) -> None:
    topic, dlq, config = scene(kafka, new_topic, group_id, tmp_path)
    elsewhere = new_topic(1, prefix="not-fbocs")  # exists, but fboc does not consume it
    produce_records(
        kafka.bootstrap,
        dlq,
        [
            *dead_letters([f"own-{i}" for i in range(3)], topic),
            *dead_letters([f"other-{i}" for i in range(4)], elsewhere),
            *dead_letters(["missing-topic"], "does-not-exist-anywhere"),
        ],
    )
    summary = dlq_json(config, "replay")
    assert (summary["replayed"], summary["skipped"]) == (3, 5)
    assert summary["skipped_by"] == {"not_a_source_topic": 5}
    assert summary["error"] is None
    assert end_offsets(kafka.bootstrap, elsewhere, 1) == {0: 0}
    assert sorted(key_of(m) for m in read_all(kafka.bootstrap, topic, 3, timeout=10)) == [
        b"own-0",
        b"own-1",
        b"own-2",
    ]
    # --to is an explicit choice: there, every dead letter may go
    out = new_topic(1, prefix="chosen")
    again = dlq_json(config, "replay", "--to", out, "--group", f"{group_id}.to")
    assert (again["replayed"], again["skipped"]) == (8, 0)


async def test_a_resumed_replay_stops_at_the_ends_of_the_run_it_resumes(
    kafka: Broker, new_topic: Any, group_id: str, tmp_path: Path
) -> None:
    """The first run stops at --limit; meanwhile fboc dead-letters some of what it re-published
    again. The rerun finishes the first run's records only; the new ones wait for the next."""
    topic, dlq, config = scene(kafka, new_topic, group_id, tmp_path)
    first_keys = [f"d-{i}" for i in range(100)]
    produce_records(kafka.bootstrap, dlq, dead_letters(first_keys, topic))
    first = dlq_json(config, "replay", "--limit", "30")
    assert (first["replayed"], first["limit_reached"], first["resumed"]) == (30, True, False)
    republished = [key_of(m) for m in read_all(kafka.bootstrap, topic, 30, timeout=10)]
    # fboc fails the re-published records again: new dead letters, replay_count 1
    produce_records(
        kafka.bootstrap, dlq, dead_letters([k.decode() for k in republished], topic, replay_count=1)
    )

    second = dlq_json(config, "replay")
    assert (second["replayed"], second["resumed"]) == (70, True)
    assert committed(kafka.bootstrap, f"{group_id}.replay", dlq, 1) == {0: 100}
    counts = Counter(key_of(m) for m in read_all(kafka.bootstrap, topic, 100, timeout=10))
    assert counts == Counter({k.encode(): 1 for k in first_keys})  # nothing twice

    third = dlq_json(config, "replay")  # a new run: the dead letters written since
    assert (third["replayed"], third["resumed"]) == (30, False)
    final = read_all(kafka.bootstrap, topic, 130, timeout=10)
    assert Counter(key_of(m) for m in final) == Counter(
        {k.encode(): 2 if k.encode() in republished else 1 for k in first_keys}
    )
    assert sorted(header(headers_of(m), "fboc.replay_count") or "" for m in final[100:]) == ["2"] * 30
    assert dlq_json(config, "replay")["replayed"] == 0


async def test_a_replay_killed_and_rerun_while_dead_letters_arrive_repeats_nothing_new(
    kafka: Broker, new_topic: Any, group_id: str, tmp_path: Path
) -> None:
    topic, dlq, config = scene(kafka, new_topic, group_id, tmp_path)
    first_keys = [f"k-{i}" for i in range(20)]
    produce_records(kafka.bootstrap, dlq, dead_letters(first_keys, topic))
    proc = start_dlq(config, "replay", "--rate", "5")
    try:
        await wait_until(lambda: end_offsets(kafka.bootstrap, topic, 1)[0] >= 5, 30, "a few re-publishes")
    finally:
        proc.kill()  # SIGKILL: no last commit
        proc.wait()
    killed_at = end_offsets(kafka.bootstrap, topic, 1)[0]
    assert killed_at < 20
    # fboc, still running, dead-letters what the killed run re-published
    produce_records(
        kafka.bootstrap,
        dlq,
        dead_letters(
            [key_of(m).decode() for m in read_all(kafka.bootstrap, topic, killed_at, timeout=10)],
            topic,
            replay_count=1,
        ),
    )
    rerun = dlq_json(config, "replay")
    assert rerun["resumed"] is True
    counts = Counter(key_of(m) for m in read_all(kafka.bootstrap, topic, 20, timeout=10))
    assert set(counts) == {k.encode() for k in first_keys}  # nothing skipped
    # a kill between an acknowledgement and its commit repeats that record (at-least-once);
    # commits follow acknowledgements within 0.2 s, so at 5 records/s at most one or two. None
    # of the dead letters written after the first run started is re-published by the rerun.
    assert sum(counts.values()) - 20 <= 2, counts
    replay_counts = [
        header(headers_of(m), "fboc.replay_count") for m in read_all(kafka.bootstrap, topic, 20, timeout=10)
    ]
    assert "2" not in replay_counts
