from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consumer.cli import main
from consumer.config import load_settings, parse_settings, runtime_problems
from consumer.errors import ConfigError


def minimal(**dest: Any) -> dict[str, Any]:
    return {
        "sources": [{"name": "web", "topic": "events", "dialect": "segment",
                     "destination": "main", "schema": "schemas/segment_track.avsc"}],
        "destinations": [{"name": "main", "access_token": "${TOKEN}", **dest}],
    }


def problems(data: dict[str, Any], env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_settings(data, env if env is not None else {"TOKEN": "t"})
    return info.value.problems


def test_defaults_match_the_spec() -> None:
    s = parse_settings(minimal(), {"TOKEN": "tok"})
    assert s.kafka.group_id == "fboc"
    assert s.kafka.dead_letter_topic == "fboc.dead-letter"
    assert s.facebook.api_version == "v26.0"
    assert s.facebook.timeout_seconds == 1.5
    assert s.batching.max_events == 1000
    assert s.dead_letter.breaker.max_ratio == 0.5
    dest = s.destinations[0]
    assert dest.access_token is not None
    assert dest.access_token.get_secret_value() == "tok"
    assert (dest.action_source, dest.max_event_age_days, dest.default_country) == (
        "physical_store", 7, "US")


def test_env_and_file_references_and_overrides(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    data = minimal(app_secret=f"${{file:{secret}}}")
    s = parse_settings(data, {"TOKEN": "t", "FBOC_KAFKA__GROUP_ID": "other",
                              "FBOC_BATCHING__LINGER_MS": "20"})
    assert s.destinations[0].app_secret is not None
    assert s.destinations[0].app_secret.get_secret_value() == "from-file"
    assert s.kafka.group_id == "other"
    assert s.batching.linger_ms == 20


def test_missing_env_var_names_the_key() -> None:
    assert problems(minimal(), {}) == [
        ("destinations[0].access_token", "environment variable TOKEN is not set")]


@pytest.mark.parametrize(("change", "key"), [
    ({"event_sets": {"Purchase": ["12ab"]}}, "destinations.0.event_sets"),
    ({"event_mapping": {"Signed Up": "Registered"}}, "destinations.0.event_mapping"),
    ({"action_source": "shop"}, "destinations.0.action_source"),
    ({"max_event_age_days": 90}, "destinations.0.max_event_age_days"),
    ({"surprise": 1}, "destinations.0.surprise"),
])
def test_bad_values_name_their_key(change: dict[str, Any], key: str) -> None:
    found = problems(minimal(**change))
    assert [p for p, _ in found] == [key.replace(".0.", "[0].")]


def test_cross_checks() -> None:
    data = minimal()
    data["sources"].append({**data["sources"][0], "destination": "nowhere"})
    paths = [p for p, _ in problems(data)]
    assert paths == ["sources", "sources[1].destination"]


def test_event_mapping_accepts_one_name_or_a_list() -> None:
    s = parse_settings(minimal(event_mapping={"A": "Lead", "B": ["Lead", "Purchase"]}),
                       {"TOKEN": "t"})
    assert s.destinations[0].event_mapping == {"A": ("Lead",), "B": ("Lead", "Purchase")}


def test_runtime_needs_a_token_and_an_existing_schema() -> None:
    data = minimal()
    data["destinations"][0]["access_token"] = None
    data["sources"][0]["schema"] = "/nonexistent.avsc"
    assert [p for p, _ in runtime_problems(parse_settings(data, {}))] == [
        "destinations[0].access_token", "sources[0].schema"]


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("sources: [{name: web, topic: t, dialect: segment, destination: main,"
                    " schema: schemas/segment_track.avsc}]\n"
                    "destinations: [{name: main, access_token: '${FB_TOKEN_TEST}'}]\n")
    monkeypatch.setenv("FB_TOKEN_TEST", "secret-value-123")
    assert main(["check-config", "--config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("segment", "segmnt"))
    assert main(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "sources[0].dialect" in err
    assert "secret-value-123" not in err


def test_unreadable_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings("/nonexistent/fboc.yaml")
    assert info.value.problems[0][0] == "<file>"


def test_normalisation_and_custom_data_keys() -> None:
    dest = parse_settings(minimal(), {"TOKEN": "t"}).destinations[0]
    assert (dest.date_order, dest.external_id_normalization, dest.allowed_custom_properties) == (
        "mdy", "lowercase", frozenset())
    chosen = parse_settings(minimal(date_order="dmy", external_id_normalization="exact",
                                    allowed_custom_properties=["phone_model"]), {"TOKEN": "t"})
    assert chosen.destinations[0].allowed_custom_properties == frozenset({"phone_model"})
    alias = parse_settings(minimal(custom_data_allow=["mobile"]), {"TOKEN": "t"})
    assert alias.destinations[0].allowed_custom_properties == frozenset({"mobile"})
    found = problems(minimal(date_order="ymd", external_id_normalization="none"))
    assert [key for key, _ in found] == ["destinations[0].date_order",
                                        "destinations[0].external_id_normalization"]
