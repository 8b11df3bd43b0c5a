from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consumer.config.settings import load_settings, parse_settings
from consumer.errors import ConfigError
from consumer.ops.checks import runtime_problems
from consumer.ops.cli import main


def minimal(**dest: Any) -> dict[str, Any]:
    return {
        "sources": [
            {
                "name": "web",
                "topic": "events",
                "dialect": "segment",
                "destination": "main",
                "schema": "schemas/segment_track.avsc",
            }
        ],
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
    assert (dest.action_source, dest.max_event_age_days, dest.default_country) == ("physical_store", 7, "US")


def test_env_and_file_references_and_overrides(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    data = minimal(app_secret=f"${{file:{secret}}}")
    s = parse_settings(
        data, {"TOKEN": "t", "FBOC_KAFKA__GROUP_ID": "other", "FBOC_BATCHING__LINGER_MS": "20"}
    )
    assert s.destinations[0].app_secret is not None
    assert s.destinations[0].app_secret.get_secret_value() == "from-file"
    assert s.kafka.group_id == "other"
    assert s.batching.linger_ms == 20


def test_missing_env_var_names_the_key() -> None:
    assert problems(minimal(), {}) == [
        ("destinations[0].access_token", "environment variable TOKEN is not set")
    ]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"event_sets": {"Purchase": ["12ab"]}}, "destinations.0.event_sets"),
        ({"event_mapping": {"Signed Up": "Registered"}}, "destinations.0.event_mapping"),
        ({"action_source": "shop"}, "destinations.0.action_source"),
        ({"max_event_age_days": 90}, "destinations.0.max_event_age_days"),
        ({"surprise": 1}, "destinations.0.surprise"),
    ],
)
def test_bad_values_name_their_key(change: dict[str, Any], key: str) -> None:
    found = problems(minimal(**change))
    assert [p for p, _ in found] == [key.replace(".0.", "[0].")]


def test_cross_checks() -> None:
    data = minimal()
    data["sources"].append({**data["sources"][0], "topic": "other", "destination": "nowhere"})
    paths = [p for p, _ in problems(data)]
    assert paths == ["sources[1].name", "sources[1].destination"]


def test_event_mapping_accepts_one_name_or_a_list() -> None:
    s = parse_settings(minimal(event_mapping={"A": "Lead", "B": ["Lead", "Purchase"]}), {"TOKEN": "t"})
    assert s.destinations[0].event_mapping == {"A": ("Lead",), "B": ("Lead", "Purchase")}


def test_runtime_needs_a_token_and_an_existing_schema() -> None:
    data = minimal()
    data["destinations"][0]["access_token"] = None
    data["sources"][0]["schema"] = "/nonexistent.avsc"
    assert [p for p, _ in runtime_problems(parse_settings(data, {}))] == [
        "destinations[0].access_token",
        "sources[0].schema",
    ]


def test_check_config_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "sources: [{name: web, topic: t, dialect: segment, destination: main,"
        " schema: schemas/segment_track.avsc}]\n"
        "destinations: [{name: main, access_token: '${FB_TOKEN_TEST}'}]\n"
    )
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


# --- environment overrides ---------------------------------------------------------------------


def two_destinations() -> dict[str, Any]:
    data = minimal(event_sets={"Purchase": ["111"]})
    data["destinations"].append({"name": "backup", "access_token": "b-token"})
    return data


def test_an_override_into_a_list_sets_only_that_key() -> None:
    s = parse_settings(two_destinations(), {"TOKEN": "t", "FBOC_DESTINATIONS__0__ACCESS_TOKEN": "x"})
    main_dest, backup = s.destinations
    assert main_dest.access_token is not None
    assert backup.access_token is not None
    assert main_dest.access_token.get_secret_value() == "x"
    assert main_dest.event_sets == {"Purchase": ("111",)}
    assert (backup.name, backup.access_token.get_secret_value()) == ("backup", "b-token")
    assert [src.name for src in s.sources] == ["web"]


def test_an_override_matches_an_existing_key_whatever_its_case() -> None:
    s = parse_settings(
        two_destinations(),
        {
            "TOKEN": "t",
            "FBOC_DESTINATIONS__0__EVENT_SETS__PURCHASE": "['222', '333']",
            "FBOC_KAFKA__OPTIONS": "{linger.ms: 5}",
            "FBOC_KAFKA__OPTIONS__ACKS": "all",
        },
    )
    assert s.destinations[0].event_sets == {"Purchase": ("222", "333")}
    assert s.kafka.options == {"linger.ms": 5, "acks": "all"}  # shorter names apply first


@pytest.mark.parametrize(
    ("env", "key", "words"),
    [
        ({"FBOC_DESTINATIONS__2__ACCESS_TOKEN": "x"}, "destinations[2].access_token", "no item 2"),
        ({"FBOC_DESTINATIONS__X__ACCESS_TOKEN": "x"}, "destinations.x.access_token", "no item x"),
        ({"FBOC_DESTINATIONS__\u0660__ACCESS_TOKEN": "x"}, "destinations.\u0660.access_token", "no item"),
        ({"FBOC_SERVICE__PORT": "{"}, "service.port", "not valid YAML at line 2, column 1"),
        ({"FBOC_SOURCES__0__NAME__X": "y"}, "sources[0].name", "is not a mapping or a list"),
        ({"FBOC_KAFKA____GROUP_ID": "y"}, "FBOC_KAFKA____GROUP_ID", "on each side of every __"),
    ],
)
def test_bad_overrides_name_the_key(env: dict[str, str], key: str, words: str) -> None:
    found = problems(two_destinations(), {"TOKEN": "t", **env})
    assert len(found) == 1
    assert found[0][0] == key
    assert words in found[0][1]
    assert next(iter(env)) in " ".join(found[0])


def test_a_bad_override_value_is_never_echoed() -> None:
    found = problems(minimal(), {"TOKEN": "t", "FBOC_DESTINATIONS__0__ACCESS_TOKEN": "{EAAsecret99"})
    assert found == [
        (
            "destinations[0].access_token",
            "FBOC_DESTINATIONS__0__ACCESS_TOKEN: the value is not valid YAML at line 2, column 1",
        )
    ]


# --- file references and secrets -----------------------------------------------------------------


def test_a_file_reference_drops_one_trailing_newline_only(tmp_path: Path) -> None:
    (tmp_path / "one").write_text("tok-1\n")
    (tmp_path / "crlf").write_bytes(b"tok-2\r\n")
    (tmp_path / "two").write_text("tok-3\n\n")
    s = parse_settings(
        minimal(access_token=f"${{file:{tmp_path / 'one'}}}", app_secret=f"${{file:{tmp_path / 'crlf'}}}"), {}
    )
    assert s.destinations[0].access_token is not None
    assert s.destinations[0].app_secret is not None
    assert s.destinations[0].access_token.get_secret_value() == "tok-1"
    assert s.destinations[0].app_secret.get_secret_value() == "tok-2"
    found = problems(minimal(access_token=f"${{file:{tmp_path / 'two'}}}"))
    assert found == [
        (
            "destinations[0].access_token",
            "holds a line break (a file reference drops only one trailing newline) at character 6",
        )
    ]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"tok\xffen", "not UTF-8 text (byte 3)"),
        (b"\x7fELF\x02\x01\x01\x00\x00", "a binary file"),
        (b"x" * (1 << 20 + 1), "larger than"),
    ],
)
def test_unreadable_referenced_files_name_the_key(tmp_path: Path, content: bytes, words: str) -> None:
    (tmp_path / "f").write_bytes(content)
    found = problems(minimal(access_token=f"${{file:{tmp_path / 'f'}}}"))
    assert [p for p, _ in found] == ["destinations[0].access_token"]
    assert words in found[0][1]


@pytest.mark.parametrize(
    "ref",
    [
        "${file:/bin/true}",
        "${file:/dev/zero}",
        "${file:/}",
        "${file:/nonexistent}",
        "${file:}",
        "${file:/a\0b}",
        "${not a name}",
    ],
)
def test_references_to_what_is_not_a_text_file_or_a_variable(ref: str) -> None:
    found = problems(minimal(access_token=ref))
    assert [p for p, _ in found] == ["destinations[0].access_token"]


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        ("EAA secret", "whitespace at character 4"),
        ("EAA\tsecret", "whitespace at character 4"),
        ("EAA\nsecret", "a line break"),
        ("EAAsecret\n", "a line break"),
        ("EAA\x00secret", "a control character"),
        ("EAA\u200bsecret", "a control character"),
        ("EAAsécret", "a non-ASCII character at character 5"),
    ],
)
@pytest.mark.parametrize("key", ["access_token", "app_secret"])
def test_tokens_and_app_secrets_must_fit_a_header(token: str, kind: str, key: str) -> None:
    found = problems(minimal(**{key: "${SECRET}"}), {"TOKEN": "t", "SECRET": token})
    assert [p for p, _ in found] == [f"destinations[0].{key}"]
    assert kind in found[0][1]
    assert "secret" not in found[0][1].replace("secrets", "")


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"event_sets": {"Purchase": ["²"]}}, "must be numeric"),
        ({"event_sets": {"Purchase": ["١٢٣"]}}, "must be numeric"),
        ({"event_sets": {"Purchase": [""]}}, "must be numeric"),
        (
            {"event_sets": {"Purchase": ["111", "222", "111"]}},
            "'Purchase' must not repeat: item(s) [2] repeat",
        ),
        ({"default_event_sets": ["7", "7"]}, "must not repeat"),
        ({"default_event_sets": ["7 "]}, "must be numeric"),
        ({"partner_agent": ""}, "at least 1 character"),
        ({"partner_agent": "fboc\n"}, "should match pattern"),
    ],
)
def test_event_set_ids_and_partner_agent(change: dict[str, Any], words: str) -> None:
    (field,) = change
    found = problems(minimal(**change))
    assert [p for p, _ in found] == [f"destinations[0].{field}"]
    assert words in found[0][1]


def test_partner_agent_is_unset_by_default() -> None:
    assert parse_settings(minimal(), {"TOKEN": "t"}).destinations[0].partner_agent is None
    s = parse_settings(minimal(partner_agent="agreed-with-meta"), {"TOKEN": "t"})
    assert s.destinations[0].partner_agent == "agreed-with-meta"


def with_facebook(**facebook: Any) -> dict[str, Any]:
    return {**minimal(), "facebook": facebook}


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "graph.facebook.com",
        "ftp://graph.facebook.com",
        "https://",
        "https:///v1",
        "http://[::1",
        "http://h:99999",
        "https://user:pw@graph.facebook.com",
        "https://h/?a=1",
        "https://h/#x",
        "https://gr aph.com",
        "https://h\n",
        "https://hé.com",
    ],
)
def test_graph_url_must_be_http_with_a_host(url: str) -> None:
    assert [p for p, _ in problems(with_facebook(graph_url=url))] == ["facebook.graph_url"]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8090", "https://graph.facebook.com", "https://proxy.internal/meta/"]
)
def test_graph_urls_accepted(url: str) -> None:
    assert parse_settings(with_facebook(graph_url=url), {"TOKEN": "t"}).facebook.graph_url == url


@pytest.mark.parametrize(
    "version", ["v30000.0", "v26.1", "v026.0", "26.0", "v٢٦.0", "v40.0", "v0.0", "v26.0 ", "V26.0", ""]
)
def test_api_version_must_be_a_sane_graph_version(version: str) -> None:
    assert [p for p, _ in problems(with_facebook(api_version=version))] == ["facebook.api_version"]


@pytest.mark.parametrize("version", ["v1.0", "v23.0", "v27.0", "v28.0", "v39.0"])
def test_api_versions_accepted(version: str) -> None:
    assert parse_settings(with_facebook(api_version=version), {"TOKEN": "t"}).facebook.api_version == version


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_infinite_numbers_are_rejected(value: str) -> None:
    import yaml

    data = with_facebook(timeout_seconds=yaml.safe_load(value))
    assert [p for p, _ in problems(data)] == ["facebook.timeout_seconds"]


@pytest.mark.parametrize(
    ("sources", "key", "words"),
    [
        ([("a", "events"), ("b", "events")], "sources[1].topic", "sources[0].topic names the same topic"),
        ([("a", "x"), ("b", "events"), ("c", "events")], "sources[2].topic", "sources[1].topic"),
        ([("a", "fboc.dead-letter")], "sources[0].topic", "is kafka.dead_letter_topic"),
        ([("a", "^events.*")], "sources[0].topic", "should match pattern"),
        ([("a", "")], "sources[0].topic", "should match pattern"),
    ],
)
def test_topics(sources: list[tuple[str, str]], key: str, words: str) -> None:
    data = minimal()
    data["sources"] = [{**data["sources"][0], "name": name, "topic": topic} for name, topic in sources]
    found = problems(data)
    assert [p for p, _ in found] == [key]
    assert words in found[0][1]


# --- the YAML file -----------------------------------------------------------------------------


def test_yaml_errors_are_reported_by_position_never_by_text(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("sources: []\ndestinations:\n  - name: main\n    access_token: EAAsecret99: {\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert info.value.problems == [("<file>", "the file is not valid YAML at line 4, column 30")]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"kafka: {group_id: \xff}\n", "not UTF-8 text (byte 18)"),
        (b"kafka: {group_id: \x01}\n", "a character YAML does not allow (character 19)"),
        (b"[" * 5000, "nested too deeply"),
        (b"- x\n", "the top level must be a mapping"),
        (
            b"destinations:\n  - name: main\n    access_token: a\n    access_token: b\n",
            "the file repeats a key at line 4, column 5",
        ),
        (b"1: 1\ntrue: 2\nb: {c: 1, c: 2}\n", "repeats a key at line 3, column 11"),
        (
            b"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            b"b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
            b"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
            b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
            b"f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
            "more than 100000 values",
        ),
    ],
)
def test_hostile_files(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert [p for p, _ in info.value.problems] == ["<file>"]
    assert words in info.value.problems[0][1]


@pytest.mark.parametrize("path", ["/dev/zero", "/", "/bin/true"])
def test_a_config_that_is_not_a_text_file(path: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert [p for p, _ in info.value.problems] == ["<file>"]


def test_deep_nesting_is_reported_at_its_key() -> None:
    deep: Any = "x"
    for _ in range(100):
        deep = {"k": deep}
    found = problems({**minimal(), "kafka": {"options": deep}})
    assert found[0] == ("kafka.options" + ".k" * 62, "nested deeper than 64 levels")


# --- what `fboc run` needs beyond the file ----------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ("not json {", "is not JSON"),
        ('["string", "null"]', "must hold an Avro record schema"),
        (
            '{"type": "record", "name": "T", "fields": [{"name": "a", "type": "nosuchtype"}]}',
            "not a valid Avro schema (UnknownType",
        ),
        ('{"type": "record", "name": "T", "fields": [{"name": "a"}]}', "not a valid Avro schema"),
        ('{"type": "record", "name": "T", "fields": [], "fboc.json_fields": "a"}', "must be a list"),
        ("[" * 2000, "is not JSON"),
    ],
)
def test_runtime_parses_the_schema_file(tmp_path: Path, schema: str, words: str) -> None:
    path = tmp_path / "s.avsc"
    path.write_text(schema)
    data = minimal()
    data["sources"][0]["schema"] = str(path)
    found = runtime_problems(parse_settings(data, {"TOKEN": "t"}))
    assert [p for p, _ in found] == ["sources[0].schema"]
    assert words in found[0][1]


def test_runtime_rejects_a_schema_that_is_a_directory() -> None:
    data = minimal()
    data["sources"][0]["schema"] = "schemas"
    assert runtime_problems(parse_settings(data, {"TOKEN": "t"})) == [
        ("sources[0].schema", "the file is not a regular file")
    ]


def with_options(**options: Any) -> dict[str, Any]:
    return {**minimal(), "kafka": {"options": options}}


@pytest.mark.parametrize(
    ("options", "key", "words"),
    [
        ({"nonsense.prop": "x"}, "kafka.options.nonsense.prop", "No such configuration property"),
        ({"session.timeout.ms": "abc"}, "kafka.options.session.timeout.ms", "Invalid value"),
        ({"session.timeout.ms": 10**30}, "kafka.options.session.timeout.ms", "outside allowed range"),
        ({"fetch.wait.max.ms": True}, "kafka.options.fetch.wait.max.ms", "Invalid value"),
        ({"error_cb": "x"}, "kafka.options.error_cb", "callable"),
        ({"acks": 1}, "kafka.options.acks", "must be set to `all`"),
        (
            {"security.protocol": "SSL", "ssl.certificate.pem": "XX"},
            "kafka.options",
            "ssl.certificate.pem failed",
        ),
        ({"enable.auto.commit": True}, "kafka.options.enable.auto.commit", "set by fboc"),
        ({"group.id": "x"}, "kafka.options.group.id", "use kafka.group_id"),
    ],
)
def test_runtime_lets_librdkafka_judge_the_options(options: dict[str, Any], key: str, words: str) -> None:
    found = runtime_problems(parse_settings(with_options(**options), {"TOKEN": "t"}))
    assert [p for p, _ in found] == [key]
    assert words in found[0][1]


def test_option_values_never_appear_in_librdkafka_messages() -> None:
    found = runtime_problems(
        parse_settings(with_options(**{"security.protocol": "SECRET-42"}), {"TOKEN": "t"})
    )
    assert found == [
        (
            "kafka.options.security.protocol",
            'librdkafka consumer: Invalid value "<value>" for configuration property "security.protocol"',
        )
    ]


def test_good_options_pass() -> None:
    options = {
        "auto.offset.reset": "latest",
        "security.protocol": "PLAINTEXT",
        "linger.ms": 20,
        "queued.max.messages.kbytes": 4096,
        "group.instance.id": "pod-1",
    }
    assert runtime_problems(parse_settings(with_options(**options), {"TOKEN": "t"})) == []


# --- Graph API versions --------------------------------------------------------------------------


def test_end_of_life_is_two_years_after_the_successor() -> None:
    from datetime import date

    from consumer.config.graph_versions import end_of_life

    assert end_of_life(23) == date(2027, 10, 8)
    assert end_of_life(26) == date(2028, 11, 3)
    assert end_of_life(27) is None


@pytest.mark.parametrize(
    ("version", "today", "words"),
    [
        ("v26.0", "2026-12-01", None),
        ("v27.0", "2030-01-01", None),
        ("v24.0", "2027-11-20", None),
        ("v24.0", "2027-11-21", "reaches its end of life on 2028-02-18"),
        ("v24.0", "2028-02-18", "past its end of life (2028-02-18)"),
        ("v23.0", "2027-09-01", "reaches its end of life on 2027-10-08"),
        ("v22.0", "2026-12-01", "older than every version fboc knows"),
        ("v28.0", "2026-12-01", "newer than the versions fboc knows (latest v27.0)"),
    ],
)
def test_version_warnings_follow_the_release_table(version: str, today: str, words: str | None) -> None:
    from datetime import date

    from consumer.config.graph_versions import version_warning

    warning = version_warning(version, date.fromisoformat(today))
    assert warning is None if words is None else words in (warning or "")


def test_the_default_version_is_not_near_its_end_of_life() -> None:
    from datetime import date

    from consumer.config.graph_versions import version_warning
    from consumer.config.settings import FacebookSettings

    assert version_warning(FacebookSettings().api_version, date(2028, 8, 1)) is None


def test_check_config_prints_warnings_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "facebook: {api_version: v31.0}\n"
        "sources: [{name: web, topic: t, dialect: segment, destination: main,"
        " schema: schemas/segment_track.avsc}]\n"
        "destinations: [{name: main, access_token: tok, test_event_code: TEST1}]\n"
    )
    assert main(["check-config", "--config", str(path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "config warning: facebook.api_version: v31.0 is newer than the versions fboc knows "
        "(latest v27.0): check it exists",
        "config warning: destinations[0].test_event_code: test events are NOT discarded by Meta: "
        "they count for ads",
    ]


# --- partner_agent in the request body -----------------------------------------------------------


@pytest.mark.parametrize("agent", [None, "agreed-with-meta"])
async def test_partner_agent_is_sent_only_when_configured(agent: str | None) -> None:
    import aiohttp
    import orjson
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from consumer.adapters.graph import GraphClient
    from consumer.config.settings import DestinationSettings, FacebookSettings

    bodies: list[dict[str, Any]] = []

    async def events(request: web.Request) -> web.Response:
        bodies.append(orjson.loads(await request.read()))
        return web.json_response({"events_received": len(bodies[-1]["data"])})

    app = web.Application()
    app.router.add_post("/v26.0/{event_set}/events", events)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        dest = DestinationSettings(name="main", access_token="tok", partner_agent=agent)
        client = GraphClient(session, FacebookSettings(graph_url=str(server.make_url(""))), dest)
        await client.post("123", None, [b'{"event_name": "Lead"}'])
    (body,) = bodies
    assert body.get("partner_agent") == agent
    assert ("partner_agent" in body) == (agent is not None)


def test_messages_never_show_values_that_may_come_from_a_reference() -> None:
    data = minimal(event_sets={"Purchase": ["${TOKEN}"]}, event_mapping={"A": "${TOKEN}"})
    data["sources"][0]["destination"] = "${TOKEN}"
    data["sources"].append({**data["sources"][0], "topic": "other"})
    found = problems(data, {"TOKEN": "s3cret-token"})
    assert [p for p, _ in found] == ["destinations[0].event_mapping", "destinations[0].event_sets"]
    assert "s3cret" not in repr(found)
    data["destinations"][0] = {"name": "main"}
    found = problems(data, {"TOKEN": "s3cret-token"})
    assert [p for p, _ in found] == ["sources[1].name", "sources[0].destination", "sources[1].destination"]
    assert "s3cret" not in repr(found)


def test_check_config_prints_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text('batching: {"a\\rb": 1, "c\\nd": 2}\n')
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "config error: batching.a\\rb: Extra inputs are not permitted\n" in err
    assert "config error: batching.c\\nd: Extra inputs are not permitted\n" in err


@pytest.mark.parametrize("value", [None, [1], {"a": 1}])
def test_a_kafka_option_must_be_a_scalar(value: Any) -> None:
    assert problems(with_options(**{"linger.ms": value})) == [
        ("kafka.options", "'linger.ms' must be a string, a number or a boolean")
    ]


def test_normalisation_and_custom_data_keys() -> None:
    dest = parse_settings(minimal(), {"TOKEN": "t"}).destinations[0]
    assert (dest.date_order, dest.external_id_normalization, dest.allowed_custom_properties) == (
        "mdy",
        "lowercase",
        frozenset(),
    )
    chosen = parse_settings(
        minimal(
            date_order="dmy", external_id_normalization="exact", allowed_custom_properties=["phone_model"]
        ),
        {"TOKEN": "t"},
    )
    assert chosen.destinations[0].allowed_custom_properties == frozenset({"phone_model"})
    alias = parse_settings(minimal(custom_data_allow=["mobile"]), {"TOKEN": "t"})
    assert alias.destinations[0].allowed_custom_properties == frozenset({"mobile"})
    found = problems(minimal(date_order="ymd", external_id_normalization="none"))
    assert [key for key, _ in found] == [
        "destinations[0].date_order",
        "destinations[0].external_id_normalization",
    ]
