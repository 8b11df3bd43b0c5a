"""Match quality: the per-key counters, the keys-per-event histogram and `preview --summary`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from consumer.core.capi.event import Output
from consumer.core.capi.normalize import HASHED_KEYS, PLAIN_KEYS
from consumer.ops.cli import main
from consumer.telemetry.match_quality import (
    MATCH_KEYS,
    MAX_REMEMBERED_KEY_SETS,
    MatchQuality,
    preview_summary,
)


def event(*keys: str) -> dict[str, Any]:
    return {"event_name": "Purchase", "user_data": {key: ["x"] for key in keys}}


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def collected(quality: MatchQuality) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(quality)
    return registry


def test_match_keys_are_the_normaliser_keys() -> None:
    assert MATCH_KEYS == HASHED_KEYS + PLAIN_KEYS


def test_each_key_and_the_keys_per_event_are_counted_per_event_set() -> None:
    quality = MatchQuality()
    shared = event("em", "ph", "client_ip_address")
    quality.count("main", [Output("111", shared), Output("222", shared)])
    quality.count("main", [Output("111", event("em"))])
    quality.count("stores", [Output("111", event())])
    r = collected(quality)
    assert sample(r, "fboc_match_key_events_total", destination="main", event_set_id="111", key="em") == 2
    assert sample(r, "fboc_match_key_events_total", destination="main", event_set_id="111", key="ph") == 1
    assert (
        sample(
            r, "fboc_match_key_events_total", destination="main", event_set_id="222", key="client_ip_address"
        )
        == 1
    )
    # every key is exported, so a share of 0 is a 0 and not a missing series
    assert sample(r, "fboc_match_key_events_total", destination="main", event_set_id="222", key="madid") == 0
    assert sample(r, "fboc_match_keys_per_event_count", destination="main", event_set_id="111") == 2
    assert sample(r, "fboc_match_keys_per_event_sum", destination="main", event_set_id="111") == 4
    assert (
        sample(r, "fboc_match_keys_per_event_bucket", destination="main", event_set_id="111", le="1.0") == 1
    )
    assert (
        sample(r, "fboc_match_keys_per_event_bucket", destination="main", event_set_id="111", le="2.0") == 1
    )
    assert (
        sample(r, "fboc_match_keys_per_event_bucket", destination="main", event_set_id="111", le="3.0") == 2
    )
    assert (
        sample(r, "fboc_match_keys_per_event_bucket", destination="stores", event_set_id="111", le="0.0") == 1
    )


def test_hostile_user_data_costs_nothing_and_adds_no_label() -> None:
    quality = MatchQuality()
    quality.count(
        "main",
        [
            Output("1", {"user_data": "not an object"}),
            Output("1", {"no_user_data": True}),
            Output("1", {"user_data": {"em": ["x"], "<script>": 1, "ph\n": 2}}),
        ],
    )
    text = generate_latest(collected(quality)).decode()
    keys = {
        line.split('key="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("fboc_match_key_events_total{")
    }
    assert keys == set(MATCH_KEYS)
    r = collected(quality)
    assert sample(r, "fboc_match_key_events_total", destination="main", event_set_id="1", key="em") == 1
    assert sample(r, "fboc_match_keys_per_event_bucket", destination="main", event_set_id="1", le="0.0") == 2


def test_unknown_key_sets_are_remembered_only_up_to_a_bound() -> None:
    quality = MatchQuality()
    for i in range(MAX_REMEMBERED_KEY_SETS + 500):
        quality.count("main", [Output("1", {"user_data": {"em": ["x"], f"junk{i}": 1}})])
    assert len(quality._masks) == MAX_REMEMBERED_KEY_SETS
    assert len(quality.counts) == 1  # all of them are "em only"
    r = collected(quality)
    assert (
        sample(r, "fboc_match_key_events_total", destination="main", event_set_id="1", key="em")
        == MAX_REMEMBERED_KEY_SETS + 500
    )


@given(
    st.lists(
        st.tuples(st.sampled_from(["111", "222"]), st.sets(st.sampled_from((*MATCH_KEYS, "other")))),
        max_size=60,
    )
)
def test_counts_match_a_direct_count(events: list[tuple[str, set[str]]]) -> None:
    quality = MatchQuality()
    # one call, as a record's events come: each event its own object, the mask not carried over
    quality.count("main", [Output(event_set_id, event(*sorted(keys))) for event_set_id, keys in events])
    r = collected(quality)
    for event_set_id in ("111", "222"):
        mine = [keys - {"other"} for s, keys in events if s == event_set_id]
        labels = {"destination": "main", "event_set_id": event_set_id}
        if not mine:
            assert r.get_sample_value("fboc_match_keys_per_event_count", labels) is None
            continue
        assert r.get_sample_value("fboc_match_keys_per_event_count", labels) == len(mine)
        assert r.get_sample_value("fboc_match_keys_per_event_sum", labels) == sum(len(k) for k in mine)
        for key in MATCH_KEYS:
            assert r.get_sample_value("fboc_match_key_events_total", {**labels, "key": key}) == sum(
                key in k for k in mine
            )
        for n in range(len(MATCH_KEYS) + 1):
            assert r.get_sample_value("fboc_match_keys_per_event_bucket", {**labels, "le": f"{n}.0"}) == sum(
                len(k) <= n for k in mine
            )


def test_the_process_registry_exports_the_match_metrics() -> None:
    from consumer.telemetry.metrics import METRICS

    text = generate_latest(METRICS.registry).decode()
    assert "# TYPE fboc_match_key_events_total counter" in text
    assert "# TYPE fboc_match_keys_per_event histogram" in text


def test_summary_table_from_preview_lines() -> None:
    import orjson

    lines = [
        orjson.dumps(line)
        for line in [
            {"index": 0, "event_set_id": "111", "event": event("em", "ph", "fbp")},
            {"index": 0, "event_set_id": "222", "event": event("em", "ph", "fbp")},
            {"index": 1, "event_set_id": "111", "event": event("em")},
            {"index": 2, "event_set_id": "111", "event": event("em", "ph")},
            {"index": 3, "filtered": {"reason": "unmapped_event"}},
            {"index": 4, "rejected": {"reason": "insufficient_match_keys", "message": "..."}},
            {"index": 5, "rejected": {"reason": "insufficient_match_keys", "message": "..."}},
        ]
    ]
    out = list(preview_summary(lines, "main", {"ph": 2, "em": 0}, hashing=True))
    assert out[0] == "records: 6; with events: 3"
    assert "  filtered: unmapped_event: 1" in out
    assert "  rejected: insufficient_match_keys: 2" in out
    first = out.index("event set 111 (destination main): 3 events")
    table = out[first : first + 21]
    assert "  em                         3    100%" in table
    assert "  ph                         2     67%" in table
    assert "  fbp                        1     33%" in table
    assert "  madid                      0      0%" in table
    assert "  keys per event: median 2, min 1, max 3" in table
    assert "event set 222 (destination main): 1 events" in out
    assert (
        "  ph                         2  not a valid phone number (for its country or default_country)" in out
    )
    assert not any(line.startswith("  em ") and "email" in line for line in out)


CONFIG = """
sources: [{name: web, topic: t, dialect: segment, destination: main,
           schema: schemas/segment_track.avsc}]
destinations: [{name: main, default_event_sets: ["999"], event_sets: {Purchase: ["111"]}%s}]
"""
RECORDS = [
    '{"type": "track", "event": "Order Completed", "messageId": "m1", "userId": "u1",'
    ' "timestamp": "2026-11-20T10:00:00Z", "properties": {"revenue": 1},'
    ' "context": {"traits": {"email": "A@Example.com", "phone": "+1 202 555 0146"}}}',
    '{"type": "track", "event": "Order Completed", "messageId": "m2", "userId": "u2",'
    ' "timestamp": "2026-11-20T10:00:00Z", "properties": {"revenue": 1},'
    ' "context": {"traits": {"email": "not-an-email", "phone": "12"}}}',
    '{"type": "track", "event": "Product Viewed", "messageId": "m3", "anonymousId": "a3",'
    ' "timestamp": "2026-11-20T10:00:00Z",'
    ' "context": {"traits": {"email": "b@example.com"}, "ip": "203.0.113.7",'
    ' "userAgent": "Mozilla/5.0"}}',
    "not json",
]


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """The command configures structlog for the process: put back what the other tests had."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.usefixtures("logging_restored")
@pytest.mark.parametrize("hashing", [True, False])
def test_preview_summary_command(tmp_path: Path, capsys: pytest.CaptureFixture[str], hashing: bool) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG % ("" if hashing else ", hashing: false"))
    lines = tmp_path / "in.jsonl"
    lines.write_text("\n".join(RECORDS) + "\n")
    assert (
        main(
            [
                "preview",
                "--config",
                str(config),
                "--source",
                "web",
                "--summary",
                "--now",
                "2026-11-22T00:00:00Z",
                str(lines),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert "  rejected: invalid_json: 1" in out
    if not hashing:  # nothing pre-hashed: every hashed value is dropped, external_id too
        assert (
            "  em                         3  "
            + "hashing is off for this destination: only pre-hashed values are sent"
            in out
        )
        return
    assert out[0] == "records: 4; with events: 3"
    assert "event set 111 (destination main): 2 events" in out
    assert "event set 999 (destination main): 1 events" in out
    start = out.index("event set 111 (destination main): 2 events")
    table = out[start : start + 21]
    assert "  em                         1     50%" in table  # m2's email was dropped
    assert "  ph                         1     50%" in table
    assert "  external_id                2    100%" in table
    start = out.index("event set 999 (destination main): 1 events")
    assert "  client_user_agent          1    100%" in out[start : start + 21]
    assert "  em                         1  not an email address" in out
    assert (
        "  ph                         1  not a valid phone number (for its country or default_country)" in out
    )
    # no customer value ever reaches the summary
    assert not any("example.com" in line.lower() or "not-an-email" in line for line in out)


@pytest.mark.usefixtures("logging_restored")
@pytest.mark.parametrize("content", ["", "\n\n", 'not json\n[1, 2]\n"text"\n'])
def test_preview_summary_of_nothing_usable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG % "")
    lines = tmp_path / "in.jsonl"
    lines.write_text(content)
    assert main(["preview", "--config", str(config), "--source", "web", "--summary", str(lines)]) == 0
    out = capsys.readouterr().out.splitlines()
    rejected = 3 if content.startswith("not") else 0
    assert out[0] == f"records: {rejected}; with events: 0"
    assert "no events: nothing to measure" in out
    assert "dropped by normalisation: none" in out
