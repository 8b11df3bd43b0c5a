from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from consumer.config.settings import parse_settings
from consumer.core.capi.event import Output
from consumer.core.dialects import Dialect, Grouping
from consumer.ops import cli
from consumer.ops.cli import main
from tests.helpers import ROOT

CONFIG = """
sources: [{name: web, topic: t, dialect: rudderstack, destination: main,
           schema: schemas/segment_track.avsc}]
destinations: [{name: main, event_sets: {Purchase: ["111"]}, default_event_sets: ["999"]}]
"""


def preview(tmp_path: Path, lines: str) -> int:
    """`fboc preview` of JSON `lines` through CONFIG's source `web` on 2026-11-22: its exit code."""
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)  # no access_token: preview needs only sources and destinations
    path = tmp_path / "in.jsonl"
    path.write_text(lines)
    return main(
        ["preview", "--config", str(config), "--source", "web", "--now", "2026-11-22T00:00:00Z", str(path)]
    )


def test_preview_command_prints_one_line_per_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = (
        "\n".join(
            [
                '{"type": "track", "event": "Order Completed", "messageId": "m1",'
                ' "timestamp": "2026-11-20T10:00:00Z", "userId": "u1",'
                ' "properties": {"revenue": 12.5, "currency": "eur"}}',
                "not json",
                '{"type": "page"}',
            ]
        )
        + "\n"
    )
    assert preview(tmp_path, lines) == 0
    out = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [list(o) for o in out] == [
        ["index", "event_set_id", "event"],
        ["index", "rejected"],
        ["index", "rejected"],
    ]
    assert out[0]["event_set_id"] == "111"
    assert out[0]["event"]["event_name"] == "Purchase"
    assert out[0]["event"]["event_time"] == 1795168800  # 2026-11-20T10:00:00Z
    assert out[0]["event"]["custom_data"]["currency"] == "EUR"
    assert out[1] == {"index": 1, "rejected": {"reason": "invalid_json", "message": "the line is not JSON"}}
    assert out[2]["rejected"]["reason"] == "unsupported_type"


def test_preview_judges_age_against_now(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = (
        '{"type": "track", "event": "Order Completed", "messageId": "m1",'
        ' "timestamp": "2026-11-01T10:00:00Z", "userId": "u1",'
        ' "properties": {"revenue": 1}}\n'
    )
    assert preview(tmp_path, line) == 0
    assert orjson.loads(capsys.readouterr().out)["rejected"]["reason"] == "event_too_old"


def test_sandbox_refuses_a_negative_event_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "--max-stored-events", "-1"]) == 2
    assert "--max-stored-events must be 0 or more" in capsys.readouterr().err


HOSTILE_CONFIG = """
sources:
  - {name: web, topic: t, dialect: segment, destination: main, schema: schemas/segment_track.avsc}
  - {name: mp, topic: m, dialect: mparticle, destination: main, schema: schemas/mparticle_batch.avsc}
destinations: [{name: main, event_sets: {Purchase: ["111"]}, default_event_sets: ["999"]}]
"""
NOW = "2026-12-01T00:00:00Z"
GOOD_TRACK = {
    "type": "track",
    "event": "Order Completed",
    "messageId": "m1",
    "timestamp": "2026-11-30T10:00:00Z",
    "userId": "u1",
    "properties": {"revenue": 12.5, "currency": "eur"},
    "context": {"traits": {"email": "not-an-email"}},
}  # dropped, logged at debug level
GOOD_BATCH: dict[str, Any] = {
    "events": [
        {
            "event_type": "commerce_event",
            "data": {
                "timestamp_unixtime_ms": 1796032800000,
                "currency_code": "USD",
                "product_action": {
                    "action": "purchase",
                    "total_amount": 10,
                    "products": [{"price": 1, "quantity": 1}],
                },
            },
        }
    ],
    "user_identities": {"email": "a@b.com"},
}


def run_preview(tmp_path: Path, source: str, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    config = tmp_path / "c.yaml"
    config.write_text(HOSTILE_CONFIG)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "consumer.ops.cli",
            "preview",
            "--config",
            str(config),
            "--source",
            source,
            *args,
        ],
        input=data,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def with_timestamp(value: object) -> dict[str, Any]:
    batch = copy.deepcopy(GOOD_BATCH)
    batch["events"][0]["data"]["timestamp_unixtime_ms"] = value
    return batch


def test_preview_stdout_holds_only_the_json_lines(tmp_path: Path) -> None:
    """`fboc preview ... | jq` works: logs go to stderr, never between the JSON lines."""
    lines = b"\n".join(orjson.dumps(GOOD_TRACK) for _ in range(3)) + b"\n"
    proc = run_preview(tmp_path, "web", lines, "--now", NOW)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [o["index"] for o in out] == [0, 1, 2]
    assert all(o["event"]["event_name"] == "Purchase" for o in out)
    for line in proc.stderr.splitlines():  # whatever is logged is JSON, on stderr
        orjson.loads(line)


def test_preview_gives_every_bad_line_a_rejected_line_and_goes_on(tmp_path: Path) -> None:
    deep_list = b"[" * 600 + b"]" * 600
    lines = [
        orjson.dumps(GOOD_BATCH),
        orjson.dumps(with_timestamp("\u00b2\u00b3")),  # superscript digits: str.isdigit, not int
        orjson.dumps(with_timestamp("\u0661\u0667\u0669\u0666\u0660\u0663\u0662\u0668\u0660\u0660")),
        orjson.dumps(with_timestamp("9" * 30)),
        orjson.dumps(with_timestamp(-(2**63))),
        b'{"events": [{"event_type": "commerce_event", "data": ' + deep_list + b"}]}",
        b'{"events": ' + b"[" * 2000 + b"]" * 2000 + b"}",  # deeper than orjson reads
        b'{"user_identities": {"email": "\xff\xfe"}}',  # not UTF-8
        b"[1, 2]",
        orjson.dumps(GOOD_BATCH),
    ]
    proc = run_preview(tmp_path, "mp", b"\n".join(lines) + b"\n", "--now", NOW)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert sorted({o["index"] for o in out}) == list(range(len(lines)))  # no line lost
    by_index = {o["index"]: o for o in out}
    assert "event" in by_index[0]
    assert "event" in by_index[len(lines) - 1]
    # a line the dialect cannot handle is rejected (on main it was a traceback, all lines lost)
    assert set(by_index[1]) == {"index", "rejected"}
    for index in (6, 7, 8):
        assert by_index[index]["rejected"]["reason"] == "invalid_json"


@pytest.mark.parametrize(
    "now",
    [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-01:00",
        "9" * 30,
        "",
        "yesterday",
        "+275760-09-13",
        "1999-12-31T23:59:59Z",
    ],
)
def test_preview_refuses_a_now_out_of_range_with_exit_2(
    tmp_path: Path, now: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(HOSTILE_CONFIG)
    assert main(["preview", "--config", str(config), "--source", "web", "--now", now, str(config)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("fboc preview: --now: ")
    assert "Traceback" not in captured.err


def test_preview_accepts_unix_seconds_for_now(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(HOSTILE_CONFIG)
    lines = tmp_path / "in.jsonl"
    lines.write_bytes(orjson.dumps(GOOD_TRACK) + b"\n")
    assert (
        main(["preview", "--config", str(config), "--source", "web", "--now", "1796083200", str(lines)]) == 0
    )
    assert orjson.loads(capsys.readouterr().out)["event"]["event_time"] == 1796032800


def test_preview_names_an_unreadable_input_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(HOSTILE_CONFIG)
    assert main(["preview", "--config", str(config), "--source", "web", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def broken_transform(payload: Any, _ctx: Any, _dest: Any, _now: int) -> list[Output]:
    if payload.get("bug") == "recursion":
        raise RecursionError("maximum recursion depth exceeded: person@example.com")
    if payload.get("bug") == "unencodable":
        return [Output("111", {"event_name": "Purchase", "value": 2**70})]
    return [Output("111", {"event_name": "Purchase"})]


def test_a_dialect_bug_costs_only_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = parse_settings(yaml.safe_load(HOSTILE_CONFIG), {})
    monkeypatch.setattr(cli, "get_dialect", lambda _name: Dialect("broken", broken_transform))
    lines = [b'{"bug": "recursion"}', b'{"ok": 1}', b'{"bug": "unencodable"}', b'{"ok": 2}']
    out = [orjson.loads(line) for line in cli.preview_lines(settings, "web", 1796083200, lines)]
    assert out == [
        {"index": 0, "rejected": {"reason": "transform_error", "message": "unexpected RecursionError"}},
        {"index": 1, "event_set_id": "111", "event": {"event_name": "Purchase"}},
        {
            "index": 2,
            "rejected": {"reason": "invalid_payload", "message": "the event is not encodable as JSON"},
        },
        {"index": 3, "event_set_id": "111", "event": {"event_name": "Purchase"}},
    ]


def broken_grouping(payloads: Any, _dest: Any, _now: int) -> list[tuple[int, Any]]:
    if any(p.get("bug") for _, p in payloads):
        raise OverflowError("date value out of range")
    return [(index, [Output("111", {"event_name": "Purchase"})]) for index, _ in payloads]


def test_a_grouping_dialect_bug_costs_only_the_rows_that_cause_it(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = parse_settings(yaml.safe_load(HOSTILE_CONFIG), {})
    unused = broken_transform  # preview never checks, keys, emits or groups rows one by one
    grouping = Grouping(unused, unused, unused, broken_grouping, unused)  # type: ignore[arg-type]
    monkeypatch.setattr(cli, "get_dialect", lambda _name: Dialect("g", broken_transform, grouping=grouping))
    lines = [b'{"ok": 1}', b'{"bug": true}', b'{"ok": 2}']
    out = [orjson.loads(line) for line in cli.preview_lines(settings, "web", 1796083200, lines)]
    assert [(o["index"], "rejected" in o) for o in out] == [(0, False), (1, True), (2, False)]
    assert out[1]["rejected"]["reason"] == "transform_error"
