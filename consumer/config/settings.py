"""Typed settings (docs/operations.md): a YAML file, `${ENV}` / `${file:/path}` references, overrides.

`load_settings` returns validated `Settings` or raises `ConfigError` listing every problem with
its key path, so a bad file stops start-up naming the key and never half-starts. Reading the
file, references and overrides live in consumer/config/input.py.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from consumer.config.graph_versions import LATEST, MAX_MAJOR, major_of
from consumer.config.input import apply_env_overrides, key_path, load_document, resolve
from consumer.errors import ConfigError

STANDARD_EVENTS = frozenset(
    {
        "AddPaymentInfo",
        "AddToCart",
        "AddToWishlist",
        "CompleteRegistration",
        "Contact",
        "CustomizeProduct",
        "Donate",
        "FindLocation",
        "InitiateCheckout",
        "Lead",
        "PageView",
        "Purchase",
        "Schedule",
        "Search",
        "StartTrial",
        "SubmitApplication",
        "Subscribe",
        "ViewContent",
        "Other",
    }
)
ACTION_SOURCES = frozenset(
    {
        "email",
        "website",
        "app",
        "phone_call",
        "chat",
        "physical_store",
        "system_generated",
        "business_messaging",
        "other",
    }
)
Dialect = Literal["segment", "rudderstack", "mparticle", "commandersact", "amperity"]
# Kafka's legal topic names; a librdkafka subscription starting with ^ would be a regex
TOPIC = r"^[A-Za-z0-9._-]{1,249}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class KafkaSettings(_Model):
    bootstrap_servers: str = "localhost:9092"
    group_id: str = "fboc"
    dead_letter_topic: str = Field("fboc.dead-letter", pattern=TOPIC)
    schema_registry_url: str | None = None
    unreachable_timeout_seconds: float = Field(60.0, gt=0)
    options: dict[str, str | int | float | bool] = {}

    @field_validator("options", mode="before")
    @classmethod
    def _scalars(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            for key, option in value.items():
                if not isinstance(option, str | int | float | bool):  # one error, not one per type
                    raise ValueError(f"{str(key)[:100]!r} must be a string, a number or a boolean")
        return value


class FacebookSettings(_Model):
    graph_url: str = "https://graph.facebook.com"
    api_version: str = "v26.0"
    timeout_seconds: float = Field(1.5, gt=0)
    max_attempts: int = Field(8, ge=1)
    max_retry_seconds: float = Field(120.0, gt=0)
    auth_retry_seconds: float = Field(60.0, gt=0)

    @field_validator("graph_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.isascii() or not value.isprintable() or " " in value:
            raise ValueError("must be a URL of visible ASCII characters")
        try:
            parts = urlsplit(value)
            _ = parts.port
        except ValueError:
            raise ValueError("is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not hold credentials")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        return value

    @field_validator("api_version")
    @classmethod
    def _known_shape(cls, value: str) -> str:
        if major_of(value) is None:
            raise ValueError(f"must be a Graph API version like v{LATEST}.0 (v1.0 to v{MAX_MAJOR}.0)")
        return value


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
    topic: str = Field(pattern=TOPIC)
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
    # only a string agreed with Meta (docs/meta-api.md); sent only when set
    partner_agent: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[ -~]+$")
    date_order: Literal["mdy", "dmy"] = "mdy"  # ambiguous dates of birth: 03/04/1990
    external_id_normalization: Literal["lowercase", "exact"] = "lowercase"
    # custom properties sent even though they look like customer data (README, "What is never sent")
    allowed_custom_properties: frozenset[str] = Field(
        frozenset(), validation_alias=AliasChoices("allowed_custom_properties", "custom_data_allow")
    )

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

    @field_validator("access_token", "app_secret", mode="after")
    @classmethod
    def _header_safe(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = _secret_problem(value.get_secret_value())
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("event_mapping", mode="after")
    @classmethod
    def _standard_targets(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for name, targets in value.items():
            bad = [i for i, t in enumerate(targets) if t not in STANDARD_EVENTS]
            if bad:
                raise ValueError(f"{name!r}: item(s) {bad} are not standard events")
        return value

    @field_validator("action_source")
    @classmethod
    def _action_source(cls, value: str) -> str:
        if value not in ACTION_SOURCES:
            raise ValueError(f"must be one of {sorted(ACTION_SOURCES)}")
        return value


_EVENT_SET_ID = re.compile(r"[0-9]+", re.ASCII)


def _check_ids(ids: tuple[str, ...], what: str) -> None:
    """Problems by position: a value may have come from a ${...} reference, so it is not shown."""
    bad = [i for i, set_id in enumerate(ids) if not _EVENT_SET_ID.fullmatch(set_id)]
    if bad:
        raise ValueError(f"{what} must be numeric (digits 0-9): item(s) {bad} are not")
    repeated = [i for i, set_id in enumerate(ids) if set_id in ids[:i]]
    if repeated:
        raise ValueError(f"{what} must not repeat: item(s) {repeated} repeat an earlier one")


def _secret_problem(secret: str) -> str | None:
    """What would break the HTTP header (or the proof) about a token or secret; never its value."""
    for position, char in enumerate(secret, 1):
        if char in "\r\n":
            kind = "a line break (a file reference drops only one trailing newline)"
        elif char.isspace():
            kind = "whitespace"
        elif not char.isprintable():
            kind = "a control character"
        elif not char.isascii():
            kind = "a non-ASCII character"
        else:
            continue
        return f"holds {kind} at character {position}"
    return None


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


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    return parse_settings(load_document(path), env)


def parse_settings(data: dict[str, Any], env: Mapping[str, str]) -> Settings:
    problems: list[tuple[str, str]] = []
    apply_env_overrides(data, env, problems)
    data = resolve(data, env, problems)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # pydantic also calls a list "too short" when one of its items failed: report the item
        inner = {err["loc"][:1] for err in errors if len(err["loc"]) > 1}
        problems += [
            (key_path(err["loc"]), err["msg"].removeprefix("Value error, "))
            for err in errors
            if not (err["type"] == "too_short" and err["loc"] in inner)
        ]
        raise ConfigError(problems) from None
    problems += _cross_checks(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def _cross_checks(settings: Settings) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    dest_names = [d.name for d in settings.destinations]
    for label, names in (("sources", [s.name for s in settings.sources]), ("destinations", dest_names)):
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append(
                    (
                        f"{label}[{i}].name",
                        f"{label}[{names.index(name)}].name has the same name: names must be unique",
                    )
                )
    first_reader: dict[str, int] = {}
    for i, src in enumerate(settings.sources):
        if src.destination not in dest_names:
            problems.append((f"sources[{i}].destination", "no destination has this name"))
        if settings.kafka.schema_registry_url is None and not src.schema_:
            problems.append((f"sources[{i}].schema", "required when kafka.schema_registry_url is not set"))
        if src.topic == settings.kafka.dead_letter_topic:
            problems.append(
                (f"sources[{i}].topic", "is kafka.dead_letter_topic: fboc would read its own dead letters")
            )
        elif src.topic in first_reader:
            problems.append(
                (
                    f"sources[{i}].topic",
                    f"sources[{first_reader[src.topic]}].topic names the same topic: one source per topic",
                )
            )
        else:
            first_reader[src.topic] = i
    return problems
