"""Hostile configurations through `fboc check-config` (the cli's main, in-process).

Whatever the file, its references and the FBOC_ overrides hold, check-config exits 0 or 2,
prints only `config error:` / `config warning:` lines on stderr, and never prints a planted
secret. A table names the key path each known problem must be reported at.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.ops.cli import main
from tests.fuzz import DELETE, mutate, paths

ROOT = Path(__file__).resolve().parents[2]
LOCAL = yaml.safe_load((ROOT / "config" / "local.yaml").read_text())
SCHEMA = str(ROOT / "schemas" / "segment_track.avsc")
# Planted in tokens and secrets: neither half may ever be printed.
HALVES = ("EAAplantedSECRET", "value0123456789")
SECRET = "".join(HALVES)
ENV = {"KAFKA_BOOTSTRAP": "127.0.0.1:9092", "GRAPH_URL": "http://127.0.0.1:8090", "FB_ACCESS_TOKEN": SECRET}


def base() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(LOCAL))
    data["sources"][0]["schema"] = SCHEMA
    return data


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ with `env` and without any FBOC_ variable of the machine's own."""
    cleared = {k: "" for k in os.environ if k.startswith("FBOC_")}
    with mock.patch.dict(os.environ, {**cleared, **env}):
        for name in cleared.keys() - env.keys():
            del os.environ[name]
        yield


def check_config(text: str | bytes, env: dict[str, str], directory: Path) -> tuple[int, str, str]:
    path = directory / "fboc.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    out, err = io.StringIO(), io.StringIO()
    with environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check-config", "--config", str(path)])
    return code, out.getvalue(), err.getvalue()


def assert_well_behaved(code: int, out: str, err: str) -> None:
    assert code in (0, 2), (code, err)
    for half in HALVES:
        assert half not in out
        assert half not in err
    lines = err.splitlines()
    assert all(line.startswith(("config error: ", "config warning: ")) for line in lines), err
    if code == 0:
        assert out.startswith("ok: ")
    else:
        assert any(line.startswith("config error: ") for line in lines)


# --- the table: each known problem at its key path ----------------------------------------------


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, allow_unicode=True)


def change(path: tuple[Any, ...], value: Any) -> str:
    data = base()
    mutate(data, [(path, value)])
    return dump(data)


def second_source_on(topic: str) -> str:
    data = base()
    data["sources"].append({**data["sources"][0], "name": "other", "topic": topic})
    return dump(data)


def inline_token_syntax_error() -> str:
    data = base()
    data["destinations"][0]["access_token"] = "TOKEN-HERE"
    return dump(data).replace("TOKEN-HERE", f"{SECRET}: [oops")


TOKEN = ("destinations", 0, "access_token")
CASES: list[tuple[str, Any, dict[str, str], dict[str, bytes], str]] = [
    # id, YAML text (or a callable of the temp dir), extra env, files to write, key path
    (
        "unknown kafka option",
        change(("kafka", "options"), {"no.such.property": 1}),
        {},
        {},
        "kafka.options.no.such.property",
    ),
    (
        "ill-typed kafka option",
        change(("kafka", "options"), {"session.timeout.ms": "soon"}),
        {},
        {},
        "kafka.options.session.timeout.ms",
    ),
    (
        "kafka option fboc owns",
        change(("kafka", "options"), {"enable.auto.commit": True}),
        {},
        {},
        "kafka.options.enable.auto.commit",
    ),
    ("absurd api_version", change(("facebook", "api_version"), "v30000.0"), {}, {}, "facebook.api_version"),
    ("api_version not vNN.0", change(("facebook", "api_version"), "v26.1"), {}, {}, "facebook.api_version"),
    (
        "schema not JSON",
        change(("sources", 0, "schema"), "{dir}/bad.avsc"),
        {},
        {"bad.avsc": b"not json"},
        "sources[0].schema",
    ),
    (
        "schema not Avro",
        change(("sources", 0, "schema"), "{dir}/bad.avsc"),
        {},
        {"bad.avsc": b'{"type": "record", "name": "T", "fields": [{"name": "a", "type": "nope"}]}'},
        "sources[0].schema",
    ),
    ("two sources on one topic", second_source_on("events.track"), {}, {}, "sources[1].topic"),
    ("source on the dead-letter topic", second_source_on("fboc.dead-letter"), {}, {}, "sources[1].topic"),
    ("graph_url not a url", base(), {"GRAPH_URL": "not a url"}, {}, "facebook.graph_url"),
    ("graph_url without host", base(), {"GRAPH_URL": "https://"}, {}, "facebook.graph_url"),
    (
        "token file not UTF-8",
        change(TOKEN, "${file:{dir}/token}"),
        {},
        {"token": b"EAAplantedSECRET\xffvalue0123456789"},
        "destinations[0].access_token",
    ),
    ("token file is a binary", change(TOKEN, "${file:/bin/true}"), {}, {}, "destinations[0].access_token"),
    ("token file is a device", change(TOKEN, "${file:/dev/zero}"), {}, {}, "destinations[0].access_token"),
    ("token file is a directory", change(TOKEN, "${file:{dir}}"), {}, {}, "destinations[0].access_token"),
    (
        "token file with two lines",
        change(TOKEN, "${file:{dir}/token}"),
        {},
        {"token": f"{HALVES[0]}\n{HALVES[1]}\n".encode()},
        "destinations[0].access_token",
    ),
    ("token with a space", base(), {"FB_ACCESS_TOKEN": " ".join(HALVES)}, {}, "destinations[0].access_token"),
    (
        "token with a control character",
        base(),
        {"FB_ACCESS_TOKEN": "\x1b".join(HALVES)},
        {},
        "destinations[0].access_token",
    ),
    (
        "app secret with a tab",
        change(("destinations", 0, "app_secret"), "\t".join(HALVES)),
        {},
        {},
        "destinations[0].app_secret",
    ),
    ("port override not YAML", base(), {"FBOC_SERVICE__PORT": "{"}, {}, "service.port"),
    (
        "token override not YAML",
        base(),
        {"FBOC_DESTINATIONS__0__ACCESS_TOKEN": "{" + SECRET},
        {},
        "destinations[0].access_token",
    ),
    (
        "override past the list",
        base(),
        {"FBOC_DESTINATIONS__1__ACCESS_TOKEN": SECRET},
        {},
        "destinations[1].access_token",
    ),
    ("override into a scalar", base(), {"FBOC_SERVICE__PORT__X": "1"}, {}, "service.port"),
    ("YAML error on the token's line", inline_token_syntax_error(), {}, {}, "<file>"),
    ("config file not UTF-8", b"kafka: {group_id: \xff}\n", {}, {}, "<file>"),
    (
        "repeated event set ID",
        change(("destinations", 0, "event_sets", "Purchase"), ["1", "1"]),
        {},
        {},
        "destinations[0].event_sets",
    ),
    (
        "superscript event set ID",
        change(("destinations", 0, "event_sets", "Purchase"), ["\u00b2"]),
        {},
        {},
        "destinations[0].event_sets",
    ),
    (
        "Arabic-Indic event set ID",
        change(("destinations", 0, "default_event_sets"), ["\u0661\u0662\u0663"]),
        {},
        {},
        "destinations[0].default_event_sets",
    ),
    (
        "partner_agent with a newline",
        change(("destinations", 0, "partner_agent"), "a\nb"),
        {},
        {},
        "destinations[0].partner_agent",
    ),
    (
        "infinite timeout",
        change(("facebook", "timeout_seconds"), float("inf")),
        {},
        {},
        "facebook.timeout_seconds",
    ),
]


@pytest.mark.parametrize(
    ("text", "env", "files", "key"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_each_known_problem_is_reported_at_its_key(
    tmp_path: Path, text: Any, env: dict[str, str], files: dict[str, bytes], key: str
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    if isinstance(text, dict):
        text = dump(text)
    if isinstance(text, str):
        text = text.replace("{dir}", str(tmp_path))
    code, out, err = check_config(text, {**ENV, **env}, tmp_path)
    assert_well_behaved(code, out, err)
    assert code == 2
    assert f"config error: {key}: " in err, err


def test_the_local_config_passes(tmp_path: Path) -> None:
    code, out, err = check_config(dump(base()), ENV, tmp_path)
    assert code == 0
    assert "config error" not in err
    assert out == "ok: 1 source(s), 1 destination(s)\n"


def test_an_override_into_the_list_keeps_the_rest(tmp_path: Path) -> None:
    from consumer.config.settings import load_settings

    data = base()
    data["destinations"].append({"name": "backup", "access_token": "b-token"})
    path = tmp_path / "fboc.yaml"
    path.write_text(dump(data))
    env = {**ENV, "FBOC_DESTINATIONS__0__ACCESS_TOKEN": "other-token"}
    with environment(env):
        settings = load_settings(path)
    main_dest, backup = settings.destinations
    assert main_dest.access_token is not None
    assert main_dest.access_token.get_secret_value() == "other-token"
    assert main_dest.event_sets == {
        "Purchase": ("1111111111",),
        "AddToCart": ("2222222222",),
        "ViewContent": ("1111111111", "2222222222"),
    }
    assert backup.name == "backup"
    assert check_config(dump(data), env, tmp_path)[0] == 0


# --- the fuzz --------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
KEYS = sorted(
    {str(p[-1]) for p in paths(LOCAL) if isinstance(p[-1], str)}
    | {"options", "app_secret", "partner_agent", "schema_registry_url", "breaker"}
)

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
REFERENCES = st.sampled_from(
    [
        "${FB_ACCESS_TOKEN}",
        "${NOT_SET}",
        "${file:/bin/true}",
        "${file:/dev/zero}",
        "${file:/}",
        "${file:/nonexistent}",
        "${file:{dir}/token}",
        "${file:{dir}/binary}",
        "${",
        "${}",
        "$${x}",
        "${file:}",
        "pre-${FB_ACCESS_TOKEN}-post",
        "${ FB_ACCESS_TOKEN }",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**18, max_value=10**40),
    st.floats(),
    TEXT,
    REFERENCES,
    st.sampled_from(
        [
            "v30000.0",
            "v26.1",
            "v28.0",
            "v1.0",
            "not a url",
            "https://",
            "²",
            "١٢٣",
            "^.*",
            "",
            "fboc.dead-letter",
            "events.track",
            SECRET,
            "1111111111",
        ]
    ),
)


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"k": [value]}
    return value


VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(KEYS), TEXT), SCALARS, max_size=4),
    st.integers(min_value=1, max_value=200).map(nested),
    st.just(DELETE),
)
ENV_NAMES = st.lists(
    st.one_of(
        st.sampled_from(KEYS), st.sampled_from(["0", "1", "9", "", "X"]), st.text("ABCZ_09", max_size=5)
    ),
    min_size=1,
    max_size=5,
).map(lambda parts: "FBOC_" + "__".join(parts).upper())
ENV_VALUES = st.one_of(
    st.sampled_from(
        [
            "{",
            "[",
            "}",
            ": :",
            "&a [*a]",
            "!!python/object:os.system",
            "*x",
            SECRET,
            "{" + SECRET,
            "[1, 2",
            "- a\n- b",
            "~",
            "yes",
            "1e400",
            "-1",
        ]
    ),
    TEXT.filter(lambda t: "\x00" not in t),
)


# real librdkafka properties with values of every kind: librdkafka itself must judge them
OPTIONS = st.dictionaries(
    st.sampled_from(
        [
            "linger.ms",
            "session.timeout.ms",
            "auto.offset.reset",
            "security.protocol",
            "sasl.mechanism",
            "sasl.username",
            "sasl.password",
            "client.id",
            "acks",
            "compression.type",
            "queued.max.messages.kbytes",
            "fetch.max.bytes",
            "ssl.ca.location",
            "debug",
            "enable.auto.commit",
            "group.instance.id",
            "no.such.property",
            "error_cb",
        ]
    ),
    st.one_of(SCALARS, st.sampled_from(["all", "latest", "PLAIN", "SASL_SSL", "gzip", 1000, True])),
    max_size=4,
)
SCHEMAS = st.sampled_from(
    [
        SCHEMA,
        "/dev/null",
        "/bin/true",
        "/",
        "{dir}/token",
        "{dir}/schema",
        "{dir}/missing.avsc",
        str(ROOT / "schemas" / "mparticle_batch.avsc"),
    ]
)
OVERRIDES = st.dictionaries(
    st.one_of(
        ENV_NAMES,
        st.sampled_from(
            [
                "FBOC_KAFKA__GROUP_ID",
                "FBOC_SERVICE__PORT",
                "FBOC_DESTINATIONS__0__ACCESS_TOKEN",
                "FBOC_DESTINATIONS__0__EVENT_SETS__PURCHASE",
                "FBOC_BATCHING__LINGER_MS",
                "FBOC_KAFKA__OPTIONS__LINGER.MS",
                "FBOC_FACEBOOK__API_VERSION",
                "FBOC_SOURCES__0__TOPIC",
                "FBOC_DESTINATIONS__0__DEFAULT_EVENT_SETS",
                "FBOC_DESTINATIONS__0__APP_SECRET",
            ]
        ),
    ),
    st.one_of(
        ENV_VALUES,
        st.sampled_from(
            ["1", "20", "v27.0", "['123']", "other", "${FB_ACCESS_TOKEN}", "${file:{dir}/token}"]
        ),
    ),
    max_size=3,
)
CORRUPTIONS = st.sampled_from([":", "{", "[", "\t", "'", '"', "&", "*", "!", "\n  ", "\x01", "\ufeff", "%"])


def sometimes(strategy: st.SearchStrategy[Any], empty: Any) -> st.SearchStrategy[Any]:
    """Half of the documents keep this part as it was, so the later checks are reached too."""
    return st.one_of(st.just(empty), strategy)


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    data = base()
    where = draw(st.sampled_from(["env", "inline", "file", "override"]))
    env = dict(ENV)
    if where == "inline":
        data["destinations"][0]["access_token"] = SECRET
    elif where == "file":
        data["destinations"][0]["access_token"] = "${file:{dir}/token}"
    elif where == "override":
        env["FBOC_DESTINATIONS__0__ACCESS_TOKEN"] = SECRET
    if draw(st.booleans()):
        data["destinations"][0]["app_secret"] = SECRET[::-1]
    options = draw(sometimes(OPTIONS, None))
    if options is not None:
        data["kafka"]["options"] = options
    data["sources"][0]["schema"] = draw(sometimes(SCHEMAS, SCHEMA))
    all_paths = paths(data)
    mutations = draw(
        sometimes(st.lists(st.tuples(st.sampled_from(all_paths), VALUES), min_size=1, max_size=4), [])
    )
    mutate(
        data,
        [(p, v) for p, v in mutations if p[-3:] != ("destinations", 0, "access_token") or where != "inline"],
    )
    extra = draw(
        sometimes(
            st.lists(
                st.tuples(st.sampled_from(all_paths), st.sampled_from(KEYS), VALUES), min_size=1, max_size=2
            ),
            [],
        )
    )
    for path, key, value in extra:  # a new key next to an existing one
        mutate(data, [((*path[:-1], key), value)])
    env.update(draw(sometimes(OVERRIDES, {})))
    text = yaml.safe_dump(data, allow_unicode=True)
    corruptions = draw(
        sometimes(st.lists(st.tuples(st.integers(0, len(text)), CORRUPTIONS), min_size=1, max_size=3), [])
    )
    for position, chars in sorted(corruptions, reverse=True):
        text = text[:position] + chars + text[position:]
    return text, env


@FUZZ
@given(documents())
def test_check_config_never_raises_and_never_prints_a_secret(document: tuple[str, dict[str, str]]) -> None:
    text, env = document
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "token").write_text(SECRET + "\n")
        (Path(directory) / "binary").write_bytes(b"\x00" + SECRET.encode())
        (Path(directory) / "schema").write_text('{"type": "record", "name": "' + SECRET + '"}')
        text = text.replace("{dir}", directory)
        env = {k: v.replace("{dir}", directory) for k, v in env.items()}
        code, out, err = check_config(text, env, Path(directory))
    assert_well_behaved(code, out, err)
