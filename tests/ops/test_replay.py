"""The pure parts of `fboc dlq stats` and `fboc dlq replay`: headers, filters, windows, pacing."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from consumer.adapters.kafka.deadletter import Headers
from consumer.config.settings import Settings, parse_settings
from consumer.ops.cli import main
from consumer.ops.dlq.command import render_summary
from consumer.ops.dlq.records import (
    MALFORMED,
    MAX_SHOWN_VALUES,
    NOT_A_SOURCE_TOPIC,
    OTHER,
    DeadLetterView,
    Filters,
    Pacer,
    ReplaySummary,
    Verdict,
    age_bucket,
    age_limit_days,
    classify,
    destination_for,
    end_metadata,
    iso_ms,
    loggable,
    parse_rate,
    parse_time_arg,
    replay_headers,
    resume_ends,
    stored_end,
    target_partition,
    too_old,
)
from consumer.ops.dlq.stats import DeadLetterStats, render

DAY_MS = 86_400_000
NOW = 1_800_000_000_000


def dead_letter(stage: str = "deliver", reason: str = "graph_invalid_event", **extra: str) -> Headers:
    fields = {
        "fboc.error.stage": stage,
        "fboc.error.reason": reason,
        "fboc.error.message": "code 100",
        "fboc.original.topic": "events.track",
        "fboc.original.partition": "3",
        "fboc.original.offset": "41",
        "fboc.original.timestamp": str(NOW - DAY_MS),
        "fboc.consumer_group": "fboc",
        "fboc.failed_at": "2027-01-15T08:00:00.000+00:00",
        "fboc.attempts": "3",
        "fboc.replay_count": "0",
        **extra,
    }
    if stage == "deliver":
        fields = {
            "fboc.destination": "main",
            "fboc.event_set_id": "222",
            "fboc.graph.code": "100",
            "fboc.graph.fbtrace_id": "Abc",
            **fields,
        }
    original: Headers = [("traceparent", b"00-abc-01"), ("empty", None), ("bin", b"\xff\x00")]
    return original + [(k, v.encode()) for k, v in fields.items()]


def view(headers: Headers | None = None, timestamp_ms: int = NOW, /, **extra: str) -> DeadLetterView:
    """A dead letter's view: of `headers`, else of `dead_letter(**extra)` (positional-only, so an
    `**{"fboc.<name>": "..."}` header can never land on `headers` or `timestamp_ms`)."""
    return DeadLetterView.of(headers if headers is not None else dead_letter(**extra), timestamp_ms)


def settings(**dest: Any) -> Settings:
    return parse_settings(
        {
            "sources": [
                {
                    "name": "web",
                    "topic": "events.track",
                    "dialect": "segment",
                    "destination": "main",
                    "schema": "s.avsc",
                },
                {
                    "name": "shop",
                    "topic": "events.shop",
                    "dialect": "segment",
                    "destination": "stores",
                    "schema": "s.avsc",
                },
            ],
            "destinations": [
                {"name": "main", "action_source": "website", **dest},
                {"name": "stores", "action_source": "physical_store", "max_event_age_days": 30},
            ],
        },
        {},
    )


# -- reading the headers --------------------------------------------------------------------------


def test_view_reads_the_fboc_headers() -> None:
    v = view()
    assert (v.reason, v.stage, v.destination, v.event_set_id) == (
        "graph_invalid_event",
        "deliver",
        "main",
        "222",
    )
    assert (v.original_topic, v.original_partition, v.original_timestamp_ms) == (
        "events.track",
        3,
        NOW - DAY_MS,
    )
    assert v.failed_at_ms == int(datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp() * 1000)
    assert v.replay_count == 0
    assert v.event_time_proxy_ms == NOW - DAY_MS


def test_view_of_a_record_without_fboc_headers_falls_back_to_its_own_timestamp() -> None:
    v = view([("traceparent", b"x"), ("fboc.replay_count", b"not-a-number")], 123)
    assert (v.reason, v.stage, v.destination, v.event_set_id) == ("unknown", "unknown", None, None)
    assert v.replay_count == 0
    assert v.event_time_proxy_ms == 123
    assert v.failed_ms == 123


# -- header rewriting -----------------------------------------------------------------------------


def test_replay_headers_keep_the_originals_bump_the_count_and_target_the_failed_event_set() -> None:
    out = replay_headers(dead_letter(**{"fboc.replay_count": "1"}))
    assert out == [
        ("traceparent", b"00-abc-01"),
        ("empty", None),
        ("bin", b"\xff\x00"),
        ("fboc.replay_count", b"2"),
        ("fboc.target.event_set_id", b"222"),
    ]


def test_replay_headers_of_a_decode_or_transform_failure_have_no_target() -> None:
    for stage in ("decode", "transform"):
        out = replay_headers(dead_letter(stage=stage, reason="undecodable"))
        assert [k for k, _ in out if k.startswith("fboc.")] == ["fboc.replay_count"]
        assert dict(out)["fboc.replay_count"] == b"1"


def test_replay_headers_keep_a_target_the_dead_letter_still_carries() -> None:
    headers: Headers = [("fboc.error.stage", b"transform"), ("fboc.target.event_set_id", b"333")]
    assert replay_headers(headers) == [("fboc.replay_count", b"1"), ("fboc.target.event_set_id", b"333")]


def test_a_deliver_failure_without_an_event_set_gets_no_target() -> None:
    headers = [(k, v) for k, v in dead_letter() if k != "fboc.event_set_id"]
    assert "fboc.target.event_set_id" not in dict(replay_headers(headers))


# -- arguments ------------------------------------------------------------------------------------


def test_time_arguments_are_unix_ms_or_iso_8601() -> None:
    assert parse_time_arg("1767225600000") == 1_767_225_600_000
    assert parse_time_arg("2026-01-01T00:00:00Z") == 1_767_225_600_000
    assert parse_time_arg("2026-01-01T01:00:00+01:00") == 1_767_225_600_000
    assert parse_time_arg("2026-01-01") == 1_767_225_600_000  # naive = UTC
    for bad in ("yesterday", "", "12:00"):
        with pytest.raises(ValueError, match="ISO 8601"):
            parse_time_arg(bad)
    assert iso_ms(None) is None


def test_rates_are_positive_records_per_second() -> None:
    assert parse_rate("200") == 200
    assert parse_rate("200/s") == 200
    assert parse_rate("2.5") == 2.5
    for bad in ("0", "-3", "fast", "nan", "inf", "10/m"):
        with pytest.raises(ValueError, match="rate"):
            parse_rate(bad)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--since", "soon"], "--since"),
        (["--until", "later"], "--until"),
        (["--since", "2000", "--until", "1000"], "--until"),
        (["--rate", "0"], "--rate"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_bad_replay_arguments_exit_2_naming_the_flag(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dlq", "replay", "--config", "/nonexistent.yaml", *argv]) == 2
    assert f"config error: {flag}:" in capsys.readouterr().err


# -- filters, windows, verdicts -------------------------------------------------------------------


def test_filters_match_reason_event_set_and_the_half_open_time_range() -> None:
    v = view(None, NOW)
    assert Filters().matches(v)
    assert Filters(frozenset({"graph_invalid_event", "undecodable"})).matches(v)
    assert not Filters(frozenset({"undecodable"})).matches(v)
    assert Filters(event_set_id="222").matches(v)
    assert not Filters(event_set_id="111").matches(v)
    assert not Filters(event_set_id="222").matches(view(stage="decode", reason="undecodable"))
    assert Filters(since_ms=NOW, until_ms=NOW + 1).matches(v)  # since inclusive
    assert not Filters(since_ms=NOW + 1).matches(v)
    assert not Filters(until_ms=NOW).matches(v)  # until exclusive


def test_age_limit_is_the_destination_window_within_metas_limit() -> None:
    s = settings(max_event_age_days=30)
    assert age_limit_days(s.destination("main")) == 7  # website: Meta's 7 days
    assert age_limit_days(s.destination("stores")) == 30  # physical_store: up to 62
    assert age_limit_days(settings(max_event_age_days=3).destination("main")) == 3
    assert age_limit_days(None) == 7


def test_destination_is_the_failed_one_else_the_source_of_the_target_topic() -> None:
    s = settings()
    assert destination_for(s, view(), None).name == "main"  # type: ignore[union-attr]
    decode = view(stage="decode", reason="undecodable")
    assert destination_for(s, decode, None).name == "main"  # type: ignore[union-attr]
    assert destination_for(s, decode, "events.shop").name == "stores"  # type: ignore[union-attr]
    assert destination_for(s, decode, "elsewhere") is None
    gone = view(**{"fboc.destination": "renamed"})
    assert destination_for(s, gone, "events.shop").name == "stores"  # type: ignore[union-attr]


def test_too_old_compares_the_original_timestamp_with_the_window() -> None:
    v = view(**{"fboc.original.timestamp": str(NOW - 7 * DAY_MS)})
    assert not too_old(v, 7, NOW)  # exactly at the limit: still inside
    assert too_old(v, 7, NOW + 1)
    assert too_old(v, 6, NOW)
    no_original = DeadLetterView.of([("fboc.error.reason", b"x")], NOW - 8 * DAY_MS)
    assert too_old(no_original, 7, NOW)  # the dead letter's own timestamp stands in


def test_classify_skips_then_parks_then_reports_too_old() -> None:
    old_parked = view(**{"fboc.replay_count": "3", "fboc.original.timestamp": "0"})
    assert classify(old_parked, Filters(frozenset({"other"})), 3, 7, NOW) is Verdict.SKIPPED
    assert classify(old_parked, Filters(), 3, 7, NOW) is Verdict.PARKED
    assert classify(view(**{"fboc.replay_count": "2"}), Filters(), 3, 7, NOW) is Verdict.REPLAY
    assert classify(view(**{"fboc.original.timestamp": "0"}), Filters(), 3, 7, NOW) is Verdict.TOO_OLD
    assert classify(view(), Filters(), 0, 7, NOW) is Verdict.PARKED  # max_replays 0: never


def test_target_partition_is_the_original_one_only_on_the_original_topic() -> None:
    v = view()
    assert target_partition(v, "events.track", {0, 1, 2, 3}) == 3
    assert target_partition(v, "events.track", {0, 1}) is None  # fewer partitions now
    assert target_partition(v, "other", {0, 1, 2, 3}) is None


def test_pacer_spaces_sends_and_does_not_burst_after_a_pause() -> None:
    pacer = Pacer(4)
    assert pacer.delay(100.0) == 0
    pacer.sent(100.0)
    assert pacer.delay(100.0) == pytest.approx(0.25)
    assert pacer.delay(100.1) == pytest.approx(0.15)
    pacer.sent(100.25)
    assert pacer.delay(100.25) == pytest.approx(0.25)
    pacer.sent(200.0)  # long after: the next slot counts from now, not from the backlog
    assert pacer.delay(200.0) == pytest.approx(0.25)
    unlimited = Pacer(None)
    unlimited.sent(1.0)
    assert unlimited.delay(1.0) == 0


# -- stats and summaries --------------------------------------------------------------------------


def test_age_buckets() -> None:
    assert [
        age_bucket(ms) for ms in (0, 3_599_999, 3_600_000, DAY_MS - 1, DAY_MS, 7 * DAY_MS - 1, 7 * DAY_MS)
    ] == ["<1h", "<1h", "<1d", "<1d", "<7d", "<7d", "older"]


def test_stats_count_by_every_dimension() -> None:
    failed = iso_ms("2027-01-15T08:00:00Z")
    assert failed is not None
    stats = DeadLetterStats("dlq", max_replays=1)
    stats.add(view(), failed + 30 * 60_000)
    stats.add(view(stage="decode", reason="undecodable", **{"fboc.replay_count": "1"}), failed + 2 * DAY_MS)
    bare = DeadLetterView.of([], failed - 10 * DAY_MS)  # no failed_at: its own timestamp
    stats.add(bare, failed)
    out = stats.to_json()
    assert out["total"] == 3
    assert out["replays_exhausted"] == 1
    assert out["by_reason"] == {"graph_invalid_event": 1, "undecodable": 1, "unknown": 1}
    assert out["by_stage"] == {"decode": 1, "deliver": 1, "unknown": 1}
    assert out["by_destination"] == {"main": 1}
    assert out["by_event_set"] == {"222": 1}
    assert out["by_original_topic"] == {"events.track": 2}
    assert out["by_age"] == {"<1h": 1, "<1d": 0, "<7d": 1, "older": 1}
    assert out["by_replay_count"] == {"0": 2, "1": 1}


FORGED = (
    "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",  # a terminal hyperlink escape
    "[bold red]ALL LOST[/]",  # rich markup
    "person@example.com",
    "x" * 5_000,
)


def test_stats_and_the_replay_summary_show_forged_header_values_as_malformed() -> None:
    stats = DeadLetterStats("dlq", max_replays=1)
    summary = ReplaySummary("dlq", "fboc.replay", dry_run=True, to_topic=None)
    for forged in FORGED:
        fields = {
            "fboc.error.reason": forged,
            "fboc.error.stage": forged,
            "fboc.destination": forged,
            "fboc.event_set_id": forged,
            "fboc.original.topic": forged,
        }
        stats.add(view(**fields), NOW)
        summary.count(Verdict.REPLAY, forged)
    out = stats.to_json()
    for dimension in ("reason", "stage", "destination", "event_set", "original_topic"):
        assert out[f"by_{dimension}"] == {MALFORMED: len(FORGED)}, dimension
    assert summary.to_json()["by_reason"] == {MALFORMED: {"replayed": len(FORGED)}}
    screen = io.StringIO()
    render(stats, Console(file=screen, width=200))
    render_summary(summary, Console(file=screen, width=200))
    assert not any(piece in screen.getvalue() for piece in ("\x1b", "ALL LOST", "@example.com", "xxxx"))


def test_stats_count_at_most_a_thousand_distinct_values_per_column() -> None:
    stats = DeadLetterStats("dlq", max_replays=1)
    for i in range(MAX_SHOWN_VALUES + 500):
        stats.add(view(**{"fboc.original.topic": f"topic-{i}"}), NOW)
    topics = stats.to_json()["by_original_topic"]
    assert len(topics) == MAX_SHOWN_VALUES + 1
    assert topics[OTHER] == 500
    stats.add(view(**{"fboc.original.topic": "topic-0"}), NOW)  # one already counted keeps its row
    assert stats.to_json()["by_original_topic"]["topic-0"] == 2


def test_summary_counts_by_reason_and_renders_a_dry_run_as_such() -> None:
    summary = ReplaySummary("dlq", "fboc.replay", dry_run=True, to_topic=None)
    for verdict, reason in (
        (Verdict.REPLAY, "undecodable"),
        (Verdict.REPLAY, "undecodable"),
        (Verdict.PARKED, "missing_value"),
        (Verdict.TOO_OLD, "event_too_old"),
        (Verdict.SKIPPED, "graph_invalid_event"),
    ):
        summary.count(verdict, reason)
    out = summary.to_json()
    assert (out["replayed"], out["parked"], out["too_old"], out["skipped"]) == (2, 1, 1, 1)
    assert out["by_reason"] == {
        "event_too_old": {"too_old": 1},
        "missing_value": {"parked": 1},
        "undecodable": {"replayed": 2},
    }
    buffer = io.StringIO()
    render_summary(summary, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "DRY RUN" in text
    assert "would replay 2, parked 1, too old 1, skipped 1" in text


# -- hostile times, headers and commit metadata ---------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "9" * 30,
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2100-01-01",
        "-5",
        "1e12",
        "\u0661\u0667\u0666\u0667",
        "\u00b2\u00b3",
        "4102444800000",
    ],
)
def test_time_arguments_beyond_1970_to_2100_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="between 1970 and 2100"):
        parse_time_arg(bad)


def test_time_arguments_at_the_edges_of_the_range() -> None:
    assert parse_time_arg("0") == 0
    assert parse_time_arg("4102444799999") == 4_102_444_799_999
    assert parse_time_arg("2099-12-31T23:59:59.999Z") == 4_102_444_799_999


@pytest.mark.parametrize("flag", ["--since", "--until"])
@pytest.mark.parametrize("value", ["9" * 30, "0001-01-01T00:00:00Z"])
def test_out_of_range_times_exit_2_naming_the_flag(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dlq", "replay", "--config", "/nonexistent.yaml", flag, value]) == 2
    err = capsys.readouterr().err
    assert f"config error: {flag}: not unix milliseconds or an ISO 8601 time between" in err
    assert "Traceback" not in err


def test_hostile_header_values_read_as_absent() -> None:
    huge = "9" * 30
    v = view(
        **{
            "fboc.original.timestamp": huge,
            "fboc.original.partition": "-1",
            "fboc.failed_at": "0001-01-01T00:00:00+01:00",
            "fboc.replay_count": huge,
        }
    )
    assert (v.original_timestamp_ms, v.original_partition, v.failed_at_ms) == (None, None, None)
    assert v.event_time_proxy_ms == NOW  # the dead letter's own timestamp
    assert v.replay_count == 0
    assert view(**{"fboc.original.timestamp": str(2**63)}).original_timestamp_ms is None
    assert view(**{"fboc.original.partition": str(2**31)}).original_partition is None
    assert view(**{"fboc.original.partition": "\u0663"}).original_partition is None


def test_stored_ends_round_trip_and_ignore_foreign_metadata() -> None:
    assert stored_end(end_metadata(1234)) == 1234
    for other in (
        None,
        "",
        "1234",
        "fboc.replay.end=",
        "fboc.replay.end=x",
        "fboc.replay.end=-1",
        "fboc.replay.end=" + "9" * 30,
    ):
        assert stored_end(other) is None


def test_a_replay_resumes_an_unfinished_run_up_to_its_ends() -> None:
    assert resume_ends({}) is None
    assert resume_ends({0: (-1001, None), 1: (-1001, None)}) is None  # never ran
    assert resume_ends({0: (10, 10), 1: (7, 7)}) is None  # the last run finished
    assert resume_ends({0: (10, None), 1: (7, None)}) is None  # committed by an older fboc
    # partition 1 stopped short of its run's end: resume both up to the ends of that run
    assert resume_ends({0: (10, 10), 1: (5, 7)}) == {0: 10, 1: 7}
    # a partition that run did not know stays where it is
    assert resume_ends({0: (3, 10), 1: (-1001, None), 2: (4, None)}) == {0: 10, 1: 0, 2: 4}


def test_summary_says_why_records_were_skipped() -> None:
    summary = ReplaySummary("dlq", "fboc.replay", dry_run=False, to_topic=None)
    summary.count(Verdict.SKIPPED, "undecodable")
    summary.count(Verdict.SKIPPED, "undecodable", NOT_A_SOURCE_TOPIC)
    summary.count(Verdict.SKIPPED, "undecodable", NOT_A_SOURCE_TOPIC)
    summary.resumed = True
    out = summary.to_json()
    assert out["skipped"] == 3
    assert out["skipped_by"] == {"filters": 1, "not_a_source_topic": 2}
    assert out["by_reason"] == {}
    assert out["resumed"] is True
    buffer = io.StringIO()
    render_summary(summary, Console(file=buffer, width=200))
    assert "skipped 3 (filters 1, not_a_source_topic 2)" in buffer.getvalue()
    assert "resumed an interrupted replay" in buffer.getvalue()


def test_only_codes_and_numeric_ids_of_a_dead_letter_are_logged() -> None:
    assert loggable(view()) == {"reason": "graph_invalid_event", "event_set_id": "222"}
    assert loggable(view(stage="decode", reason="undecodable")) == {
        "reason": "undecodable",
        "event_set_id": None,
    }
    forged = view(**{"fboc.error.reason": "person@example.com", "fboc.event_set_id": "+1 415 555 0100"})
    assert loggable(forged) == {"reason": "unknown", "event_set_id": "unknown"}
    assert loggable(view(**{"fboc.error.reason": "x" * 65}))["reason"] == "unknown"
