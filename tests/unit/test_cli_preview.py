from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from consumer.cli import main

CONFIG = """
sources: [{name: web, topic: t, dialect: rudderstack, destination: main,
           schema: schemas/segment_track.avsc}]
destinations: [{name: main, event_sets: {Purchase: ["111"]}, default_event_sets: ["999"]}]
"""


def test_preview_command_prints_one_line_per_output(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)  # no access_token: preview needs only sources and destinations
    lines = tmp_path / "in.jsonl"
    lines.write_text("\n".join([
        '{"type": "track", "event": "Order Completed", "messageId": "m1",'
        ' "timestamp": "2026-11-20T10:00:00Z", "userId": "u1",'
        ' "properties": {"revenue": 12.5, "currency": "eur"}}',
        "not json",
        '{"type": "page"}',
    ]) + "\n")
    assert main(["preview", "--config", str(config), "--source", "web",
                 "--now", "2026-11-22T00:00:00Z", str(lines)]) == 0
    out = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [list(o) for o in out] == [["index", "event_set_id", "event"], ["index", "rejected"],
                                      ["index", "rejected"]]
    assert out[0]["event_set_id"] == "111"
    assert out[0]["event"]["event_name"] == "Purchase"
    assert out[0]["event"]["event_time"] == 1795168800  # 2026-11-20T10:00:00Z
    assert out[0]["event"]["custom_data"]["currency"] == "EUR"
    assert out[1] == {"index": 1, "rejected": {"reason": "invalid_json",
                                               "message": "the line is not JSON"}}
    assert out[2]["rejected"]["reason"] == "unsupported_type"


def test_preview_judges_age_against_now(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    lines = tmp_path / "in.jsonl"
    lines.write_text('{"type": "track", "event": "Order Completed", "messageId": "m1",'
                     ' "timestamp": "2026-11-01T10:00:00Z", "userId": "u1",'
                     ' "properties": {"revenue": 1}}\n')
    assert main(["preview", "--config", str(config), "--source", "web",
                 "--now", "2026-11-22T00:00:00Z", str(lines)]) == 0
    assert orjson.loads(capsys.readouterr().out)["rejected"]["reason"] == "event_too_old"


def test_sandbox_refuses_a_negative_event_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "--max-stored-events", "-1"]) == 2
    assert "--max-stored-events must be 0 or more" in capsys.readouterr().err
