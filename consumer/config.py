"""Typed settings (docs/operations.md): one YAML file, `${ENV}` / `${file:/path}` references, env overrides.

`load_settings` returns validated `Settings` or raises `ConfigError` listing every problem with
its key path, so a bad file stops start-up naming the key and never half-starts.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from consumer.errors import ConfigError

STANDARD_EVENTS = frozenset({
    "AddPaymentInfo", "AddToCart", "AddToWishlist", "CompleteRegistration", "Contact",
    "CustomizeProduct", "Donate", "FindLocation", "InitiateCheckout", "Lead", "PageView",
    "Purchase", "Schedule", "Search", "StartTrial", "SubmitApplication", "Subscribe",
    "ViewContent", "Other",
})
ACTION_SOURCES = frozenset({
    "email", "website", "app", "phone_call", "chat", "physical_store", "system_generated",
    "business_messaging", "other",
})
Dialect = Literal["segment", "rudderstack", "mparticle", "commandersact", "amperity"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Model):
    bootstrap_servers: str = "localhost:9092"
    group_id: str = "fboc"
    dead_letter_topic: str = "fboc.dead-letter"
    schema_registry_url: str | None = None
    unreachable_timeout_seconds: float = Field(60.0, gt=0)
    options: dict[str, str | int | float | bool] = {}


class FacebookSettings(_Model):
    graph_url: str = "https://graph.facebook.com"
    api_version: str = Field("v26.0", pattern=r"^v\d+\.\d+$")
    timeout_seconds: float = Field(1.5, gt=0)
    max_attempts: int = Field(8, ge=1)
    max_retry_seconds: float = Field(120.0, gt=0)
    auth_retry_seconds: float = Field(60.0, gt=0)


class BatchingSettings(_Model):
    max_events: int = Field(1000, ge=1, le=1000)
    max_bytes: int = Field(2_000_000, ge=10_000)
    linger_ms: int = Field(1000, ge=0)
    max_in_flight: int = Field(8, ge=1)
    max_buffered_records: int = Field(50_000, ge=1)


class BreakerSettings(_Model):
    window_records: int = Field(1000, ge=1)
    max_ratio: float = Field(0.5, gt=0, le=1)
    max_consecutive: int = Field(1000, ge=1)


class DeadLetterSettings(_Model):
    max_replays: int = Field(3, ge=0)
    breaker: BreakerSettings = BreakerSettings()


class ServiceSettings(_Model):
    port: int = Field(8080, ge=0, le=65535)
    shutdown_deadline_seconds: float = Field(25, gt=0)
    log_format: Literal["json", "console"] = "json"
    commit_interval_ms: int = Field(1000, ge=10)
    # the health/metrics port: loopback unless set (the Helm chart sets 0.0.0.0 for probes)
    bind_address: str = "127.0.0.1"

    @field_validator("bind_address")
    @classmethod
    def _an_ip_address(cls, value: str) -> str:
        ipaddress.ip_address(value)  # a ValueError names the key
        return value


class SourceSettings(_Model):
    name: str
    topic: str
    dialect: Dialect
    destination: str
    schema_: str | None = Field(None, alias="schema")


class DestinationSettings(_Model):
    name: str
    access_token: SecretStr | None = None
    app_secret: SecretStr | None = None
    event_mapping: dict[str, tuple[str, ...]] = {}
    event_sets: dict[str, tuple[str, ...]] = {}
    default_event_sets: tuple[str, ...] = ()
    unmapped_events: Literal["other", "passthrough", "reject"] | None = None
    category_content_types: dict[str, str] = {}
    value_field: str = "value"
    action_source: str = "physical_store"
    max_event_age_days: int = Field(7, ge=1, le=62)
    hashing: bool = True
    hash_external_id: bool = True
    default_country: str = Field("US", pattern=r"^[A-Za-z]{2}$")
    limited_data_use: bool | Literal["never", "always", "when_location_known"] = False
    consent_category: str | None = None
    match_policy: Literal["meta_baseline", "commandersact"] | None = None
    email_identity_type: str = "email"
    group_window_ms: int = Field(5000, ge=0)
    upload_tag: str | None = None
    test_event_code: str | None = None

    @field_validator("event_mapping", "event_sets", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: [v] if isinstance(v, str | int) else v for k, v in value.items()}
        return value

    @field_validator("event_sets", mode="after")
    @classmethod
    def _numeric_sets(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for name, ids in value.items():
            _check_ids(ids, f"event set IDs of {name!r}")
        return value

    @field_validator("default_event_sets", mode="after")
    @classmethod
    def _numeric_defaults(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_ids(value, "event set IDs")
        return value

    @field_validator("event_mapping", mode="after")
    @classmethod
    def _standard_targets(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for name, targets in value.items():
            bad = [t for t in targets if t not in STANDARD_EVENTS]
            if bad:
                raise ValueError(f"{name!r} maps to {bad}, not standard events")
        return value

    @field_validator("action_source")
    @classmethod
    def _action_source(cls, value: str) -> str:
        if value not in ACTION_SOURCES:
            raise ValueError(f"must be one of {sorted(ACTION_SOURCES)}")
        return value


def _check_ids(ids: tuple[str, ...], what: str) -> None:
    bad = [i for i in ids if not str(i).isdigit()]
    if bad:
        raise ValueError(f"{what} must be numeric, got {bad}")


class Settings(_Model):
    kafka: KafkaSettings = KafkaSettings()
    facebook: FacebookSettings = FacebookSettings()
    batching: BatchingSettings = BatchingSettings()
    dead_letter: DeadLetterSettings = DeadLetterSettings()
    service: ServiceSettings = ServiceSettings()
    sources: tuple[SourceSettings, ...] = Field(min_length=1)
    destinations: tuple[DestinationSettings, ...] = Field(min_length=1)

    def destination(self, name: str) -> DestinationSettings:
        return next(d for d in self.destinations if d.name == name)

    def source(self, name: str) -> SourceSettings:
        for s in self.sources:
            if s.name == name:
                return s
        raise ConfigError([("sources", f"no source named {name!r}")])


_REF = re.compile(r"\$\{([^}]+)\}")


def _resolve(value: Any, path: str, env: Mapping[str, str], problems: list[tuple[str, str]]) -> Any:
    """Replace ${VAR} and ${file:/path} references inside strings, recursively."""
    if isinstance(value, dict):
        return {k: _resolve(v, f"{path}.{k}" if path else str(k), env, problems)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, f"{path}[{i}]", env, problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        ref = match.group(1)
        if ref.startswith("file:"):
            try:
                return Path(ref[5:]).read_text().strip()
            except OSError as exc:
                problems.append((path, f"cannot read referenced file ({exc.strerror})"))
                return ""
        if ref not in env:
            problems.append((path, f"environment variable {ref} is not set"))
            return ""
        return env[ref]

    return _REF.sub(substitute, value)


def _apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """FBOC_<SECTION>__<KEY>[__<KEY>...]=value overrides nested keys (values parsed as YAML)."""
    for name, raw in env.items():
        if not name.startswith("FBOC_") or "__" not in name:
            continue
        keys = [k.lower() for k in name[5:].split("__")]
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[keys[-1]] = yaml.safe_load(raw) if raw else raw


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError([("<file>", f"cannot read {path}: {exc.strerror}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([("<file>", f"not valid YAML: {exc}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([("<file>", "the top level must be a mapping")])
    return parse_settings(data, env)


def parse_settings(data: dict[str, Any], env: Mapping[str, str]) -> Settings:
    _apply_env_overrides(data, env)
    problems: list[tuple[str, str]] = []
    data = _resolve(data, "", env, problems)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # pydantic also calls a list "too short" when one of its items failed: report the item
        inner = {err["loc"][:1] for err in errors if len(err["loc"]) > 1}
        problems += [(_key_path(err["loc"]), err["msg"]) for err in errors
                     if not (err["type"] == "too_short" and err["loc"] in inner)]
        raise ConfigError(problems) from None
    problems += _cross_checks(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def _key_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as `sources[0].dialect`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<file>"


def _cross_checks(settings: Settings) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    dest_names = [d.name for d in settings.destinations]
    for label, names in (("sources", [s.name for s in settings.sources]),
                         ("destinations", dest_names)):
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append((label, f"names must be unique, repeated: {dupes}"))
    for i, src in enumerate(settings.sources):
        if src.destination not in dest_names:
            problems.append((f"sources[{i}].destination", f"no destination named {src.destination!r}"))
        if settings.kafka.schema_registry_url is None and not src.schema_:
            problems.append((f"sources[{i}].schema",
                             "required when kafka.schema_registry_url is not set"))
    return problems


def runtime_problems(settings: Settings) -> list[tuple[str, str]]:
    """What `fboc run` needs beyond what `fboc preview` needs."""
    problems: list[tuple[str, str]] = []
    for i, dest in enumerate(settings.destinations):
        if dest.access_token is None or not dest.access_token.get_secret_value():
            problems.append((f"destinations[{i}].access_token", "required to send events"))
    for i, src in enumerate(settings.sources):
        if src.schema_ and not Path(src.schema_).is_file():
            problems.append((f"sources[{i}].schema", f"file not found: {src.schema_}"))
    return problems
