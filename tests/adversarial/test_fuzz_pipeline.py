"""Hostile records through fboc's own per-record path (decode → dialect → route → encode →
batch: `Pipeline.accept`), for every dialect, with dead letters written to the real broker.

Each example is one Avro record made with the dialect's schema from a valid seed and then
mutated with values chosen to hurt (nesting far past any limit, integers past 64 bits, huge
strings, wrong types, raw JSON text no parser should accept), or plain garbage bytes. Nothing
may escape `accept`, and the record must be settled: its events in a batch, or filtered, or
dead-lettered and acknowledged by the broker, never held (there is no registry here).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from consumer.adapters.codec import AvroSchema
from consumer.adapters.kafka.deadletter import DeadLetterWriter, SourceRecord, header, headers_of
from consumer.adapters.kafka.source import KafkaSource
from consumer.config.settings import parse_settings
from consumer.core.batching import Batch
from consumer.core.encode import ENVELOPE_BYTES
from consumer.runtime.pipeline import Pipeline
from consumer.runtime.service import build_routes
from tests.core.test_dialect_amperity import COFFEE, MINIMAL
from tests.core.test_dialect_amperity import NOW as AMPERITY_NOW
from tests.core.test_dialect_mparticle import NOW as MPARTICLE_NOW
from tests.core.test_dialect_mparticle import seed_batch
from tests.fuzz import DELETE, mutate, paths
from tests.helpers import ROOT, TOKEN, config_for, create_topic, read_all, track
from tests.kafka_broker import Broker

pytestmark = pytest.mark.kafka

# per dialect: the five together stay well under a minute
EXAMPLES = int(os.environ.get("FBOC_FUZZ_EXAMPLES", "80"))
MAX_BYTES = 10_000  # batching.max_bytes at its minimum, so a large value is a large event


def deep(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


def deep_text(depth: int) -> str:
    """JSON text nested deeper than any encoder would write it."""
    return '{"a":' * depth + "1" + "}" * depth


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=20),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**30, 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e300, -1e300, 1e-300, 0.5, 1e18]),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "USD",
            "purchase",
            "Order Completed",
            "a@b.co",
            "x" * 20_000,
            "é" * 5_000,
            "+1 202 555 0146",
            "1e300",
        ]
    ),
)
HOSTILE = st.one_of(
    SCALARS,
    st.integers(min_value=25, max_value=250).map(deep),
    st.lists(SCALARS, max_size=5),
    st.dictionaries(
        st.sampled_from(
            [
                "id",
                "price",
                "quantity",
                "value",
                "email",
                "custom_data",
                "event_id",
                "data_processing_options_country",
            ]
        ),
        SCALARS,
        max_size=4,
    ),
    st.integers(min_value=1, max_value=400).map(
        lambda n: [{"id": f"s{i}", "price": 1.0, "quantity": 1} for i in range(n)]
    ),
)
# Keys a dialect reads, set under any object of the seed (mutations only replace what exists)
KEYS = [
    "custom_data",
    "data_processing_options",
    "data_processing_options_country",
    "data_processing_options_state",
    "dataProcessingOptions",
    "facebook",
    "Facebook",
    "Facebook Conversions API",
    "value",
    "revenue",
    "price",
    "quantity",
    "currency",
    "products",
    "items",
    "contents",
    "email",
    "phone",
    "event_id",
    "event_name",
]


def now_iso(offset_s: int = -60) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_s))


def segment_seed() -> dict[str, Any]:
    rec = track(1, integrations={})
    rec["properties"]["products"] = [{"product_id": "p1", "price": 5.0, "quantity": 2}]
    rec["integrations"] = {
        "Facebook Conversions API": {"dataProcessingOptions": [["LDU"], 1, 1000], "custom_data": {"a": 1}}
    }
    return rec


def commandersact_seed() -> dict[str, Any]:
    return {
        "event_name": "purchase",
        "type": "offline",
        "id": "ORD-1",
        "amount": 20.0,
        "currency": "EUR",
        "items": [{"id": "SKU-1", "quantity": 1, "price": 20.0}],
        "user": {"id": "C-1", "email": "Client@Example.com", "consent_categories": [1, 3]},
        "context": {"event_timestamp": int((time.time() - 60) * 1000)},
        "integrations": {
            "facebook": {
                "event_id": "tc-1",
                "custom_data": {"a": 1},
                "data_processing_options": ["LDU"],
                "data_processing_options_country": 1,
            }
        },
    }


class Dialect:
    def __init__(
        self,
        name: str,
        schema: str,
        seeds: list[dict[str, Any]],
        now: Callable[[], float],
        **destination: Any,
    ) -> None:
        self.name, self.schema_path = name, str(ROOT / "schemas" / schema)
        self.schema = AvroSchema.from_file(self.schema_path)
        self.seeds, self.now, self.destination = seeds, now, destination


DIALECTS = {
    "segment": Dialect("segment", "segment_track.avsc", [segment_seed()], time.time, limited_data_use=True),
    "rudderstack": Dialect(
        "rudderstack",
        "segment_track.avsc",
        [segment_seed()],
        time.time,
        limited_data_use="when_location_known",
    ),
    "mparticle": Dialect(
        "mparticle",
        "mparticle_batch.avsc",
        [seed_batch()],
        lambda: float(MPARTICLE_NOW),
        limited_data_use=True,
    ),
    "commandersact": Dialect(
        "commandersact",
        "commandersact_event.avsc",
        [commandersact_seed()],
        time.time,
        limited_data_use=True,
        consent_category="3",
    ),
    "amperity": Dialect(
        "amperity",
        "amperity_row.avsc",
        [{**COFFEE, "custom": {"store": "12"}}, MINIMAL],
        lambda: float(AMPERITY_NOW),
        group_window_ms=0,  # every row is its group: it closes as it is added
    ),
}


@st.composite
def records(draw: st.DrawFn, dialect: Dialect) -> bytes:
    """Avro bytes of a mutated seed (or, now and then, bytes that are no Avro at all)."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "raw_json", "garbage"]))
    if kind == "garbage":
        return draw(st.binary(max_size=200))
    payload = copy.deepcopy(draw(st.sampled_from(dialect.seeds)))
    if kind == "raw_json":
        field = draw(st.sampled_from(list(dialect.schema.json_fields)))
        payload[field] = draw(
            st.one_of(
                st.integers(min_value=250, max_value=1500).map(deep_text),
                st.sampled_from(
                    [
                        "1e400",
                        "123456789012345678901234567890",
                        "[" * 3000,
                        "{}",
                        "[]",
                        '{"a":NaN}',
                        '"text"',
                        "null",
                    ]
                ),
            )
        )
    else:
        where = paths(payload)
        where += [(*p, key) for p in [*where, ()] for key in KEYS if isinstance(_at(payload, p), dict)]
        mutations = draw(
            st.lists(
                st.tuples(st.sampled_from(where), st.one_of(HOSTILE, st.just(DELETE))), min_size=1, max_size=4
            )
        )
        for path, value in mutations:
            parent = _at(payload, path[:-1])
            if isinstance(parent, dict) and path[-1] not in parent and value is not DELETE:
                parent[path[-1]] = None  # a new key: mutate() only sets existing ones
        mutate(payload, mutations)
    try:
        return dialect.schema.encode(payload)
    except Exception:  # the schema does not take that value: no such record can exist
        reject()


def _at(payload: Any, path: tuple[Any, ...]) -> Any:
    node = payload
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    return node


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_hostile_records_are_each_settled_and_nothing_escapes(
    name: str, kafka: Broker, new_topic: Any, group_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialect = DIALECTS[name]
    topic = new_topic(1, prefix=f"fuzz-{name}")
    data = config_for(
        kafka.bootstrap,
        topic,
        group_id,
        "http://127.0.0.1:9",
        batching={"max_bytes": MAX_BYTES, "linger_ms": 3_600_000},
        sources=[
            {
                "name": "src",
                "topic": topic,
                "dialect": name,
                "destination": "main",
                "schema": dialect.schema_path,
            }
        ],
        destinations=[
            {
                "name": "main",
                "access_token": TOKEN,
                "default_event_sets": ["999"],
                "event_sets": {"Purchase": ["111"], "AddToCart": ["222"]},
                **dialect.destination,
            }
        ],
    )
    config = parse_settings(data, {})
    create_topic(kafka.bootstrap, config.kafka.dead_letter_topic, 1)
    pipeline = Pipeline(
        config,
        build_routes(config),
        {},
        DeadLetterWriter(config.kafka),
        make_source=lambda p: KafkaSource(
            config.kafka,
            [topic],
            on_assign=p.on_assign,
            on_revoke=p.on_revoke,
            on_lost=p.on_lost,
            on_error=p.brokers.on_error,
            on_stats=p.brokers.on_stats,
            on_commit=p.on_commit,
        ),
        now=dialect.now,
    )
    # The path under test ends at the batcher: a batch it closes is kept here, not sent.
    closed: list[Batch[Any]] = []
    monkeypatch.setattr(pipeline.dispatch, "send", closed.append)
    partitions = itertools.count()
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(value=records(dialect))
    def check(value: bytes) -> None:
        tp = (topic, next(partitions))  # a partition per example: its own watermark
        src = SourceRecord(tp[0], tp[1], 0, int(dialect.now() * 1000), b"key", value, [])
        pipeline.accept(src)
        pipeline._emit_groups()  # amperity: hand out the row's group
        assert pipeline.dead_letters.flush(30) == 0, "a dead letter was not acknowledged"
        assert pipeline.ledger.held() == 0
        batches, closed[:] = [*closed, *pipeline.batcher.drain()], []
        batched = [
            event
            for batch in batches
            for event, (records, _name) in zip(batch.events, batch.owners, strict=True)
            if any(record.tp == tp for record in records)
        ]
        if pipeline.ledger.pending(tp):
            assert batched, "neither final nor in a batch: the record is lost"
            assert all(len(e) <= MAX_BYTES - ENVELOPE_BYTES for e in batched)
            outcomes["batched"] += 1
        else:
            assert not batched
            outcomes["final"] += 1

    try:
        check()
        # every record still pending is one of those left in a batch
        assert pipeline.ledger.pending() == outcomes["batched"]
    finally:
        asyncio.run(pipeline.source.finish({}, 10))  # leave no consumer for exit to close
    # the fuzz reached every outcome: it is not only feeding records the decoder refuses
    assert outcomes["batched"], outcomes
    assert outcomes["final"], outcomes
    reasons = Counter(
        header(headers_of(m), "fboc.error.reason")
        for m in read_all(kafka.bootstrap, config.kafka.dead_letter_topic, 1, timeout=5)
    )
    assert "internal_error" not in reasons, reasons  # a bug in fboc's own path
    print(name, dict(outcomes), dict(reasons))
