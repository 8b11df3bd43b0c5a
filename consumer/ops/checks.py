"""What `fboc run` needs beyond a valid file (schemas, librdkafka settings), and
`fboc check-config --connect`: can fboc reach what the file names?"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import orjson

from consumer.adapters.codec import JSON_FIELDS_KEY, AvroSchema
from consumer.adapters.kafka.source import consumer_config
from consumer.config.graph_versions import version_warning
from consumer.config.input import MAX_CONFIG_BYTES, read_text
from consumer.config.settings import KafkaSettings, Settings

# set by fboc itself: its delivery guarantees depend on them (docs/design.md)
OWNED_OPTIONS = {
    "bootstrap.servers": "use kafka.bootstrap_servers",
    "group.id": "use kafka.group_id",
    "enable.auto.commit": "fboc commits only what it delivered",
    "enable.auto.offset.store": "fboc commits only what it delivered",
    "partition.assignment.strategy": "fboc relies on cooperative-sticky rebalances",
    "enable.idempotence": "the dead-letter producer must be idempotent",
}
# what DeadLetterWriter sets before kafka.options
_DEAD_LETTER_PRODUCER: dict[str, Any] = {"enable.idempotence": True, "acks": "all", "linger.ms": 5}
_QUIET = logging.getLogger("fboc.checks.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def config_warnings(settings: Settings, today: date) -> list[tuple[str, str]]:
    """What `fboc check-config` accepts but warns about (`fboc run` logs the same at start-up)."""
    warnings: list[tuple[str, str]] = []
    api_version = settings.facebook.api_version
    version = version_warning(api_version, today)
    if version:
        warnings.append(("facebook.api_version", f"{api_version} is {version}"))
    for i, dest in enumerate(settings.destinations):
        if dest.test_event_code:
            warnings.append(
                (
                    f"destinations[{i}].test_event_code",
                    "test events are NOT discarded by Meta: they count for ads",
                )
            )
    return warnings


def runtime_problems(settings: Settings) -> list[tuple[str, str]]:
    """What `fboc run` needs beyond what `fboc preview` needs."""
    problems: list[tuple[str, str]] = []
    for i, dest in enumerate(settings.destinations):
        if dest.access_token is None or not dest.access_token.get_secret_value():
            problems.append((f"destinations[{i}].access_token", "required to send events"))
    for i, src in enumerate(settings.sources):
        problem = schema_problem(src.schema_) if src.schema_ else None
        if problem:
            problems.append((f"sources[{i}].schema", problem))
    return problems + kafka_option_problems(settings.kafka)


def schema_problem(path: str) -> str | None:
    """Why the Avro schema file at `path` cannot decode records, or None."""
    try:
        raw = orjson.loads(read_text(path, MAX_CONFIG_BYTES))
    except OSError as exc:
        return f"cannot read the file ({exc.strerror or type(exc).__name__})"
    except ValueError as exc:  # orjson.JSONDecodeError is one
        return "the file is not JSON" if isinstance(exc, orjson.JSONDecodeError) else f"the file is {exc}"
    if not isinstance(raw, dict) or raw.get("type") != "record":
        return 'the file must hold an Avro record schema (a JSON object with "type": "record")'
    fields = raw.get(JSON_FIELDS_KEY, [])
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        return f"the schema's {JSON_FIELDS_KEY} must be a list of field names"
    try:
        AvroSchema(raw)
    except Exception as exc:  # fastavro raises many types for a bad schema
        return f"not a valid Avro schema ({type(exc).__name__}: {str(exc)[:200]})"
    return None


def kafka_option_problems(kafka: KafkaSettings) -> list[tuple[str, str]]:
    """Let librdkafka judge kafka.options the way `fboc run` merges them (it connects nowhere)."""
    owned = [
        (f"kafka.options.{k}", f"set by fboc: {why}")
        for k, why in OWNED_OPTIONS.items()
        if k in kafka.options
    ]
    if owned:
        return owned
    bare = kafka.model_copy(update={"options": {}})
    plain_producer = {"bootstrap.servers": kafka.bootstrap_servers, **_DEAD_LETTER_PRODUCER}
    problems: list[tuple[str, str]] = []
    for key, value in kafka.options.items():
        error = _client_error("consumer", {**consumer_config(bare), key: value}, kafka) or (
            None
            if key.startswith("group.")
            else _client_error("producer", {**plain_producer, key: value}, kafka)
        )
        if error:
            problems.append((f"kafka.options.{key}", error))
    if problems or not kafka.options:
        return problems
    producer = {**plain_producer, **{k: v for k, v in kafka.options.items() if not k.startswith("group.")}}
    error = _client_error("consumer", consumer_config(kafka), kafka) or _client_error(
        "producer", producer, kafka
    )
    return [("kafka.options", error)] if error else []


def _client_error(kind: str, config: dict[str, Any], kafka: KafkaSettings) -> str | None:
    """librdkafka's objection to `config`, with every option value blanked out."""
    from confluent_kafka import Consumer, KafkaException, Producer

    try:
        if kind == "consumer":
            Consumer({**config, "logger": _QUIET}).close()
        else:
            Producer({**config, "logger": _QUIET}).flush(0)
    except KafkaException as exc:
        message = exc.args[0].str() if exc.args else str(exc)
    except (TypeError, ValueError) as exc:
        message = str(exc)
    else:
        return None
    for value in sorted(
        (v for v in kafka.options.values() if isinstance(v, str) and len(v) > 2), key=len, reverse=True
    ):
        message = message.replace(value, "<value>")
    return f"librdkafka {kind}: {message.strip()[:300]}"


def connection_problems(settings: Settings, timeout: float = 5.0) -> list[tuple[str, str]]:
    from confluent_kafka.admin import AdminClient

    problems: list[tuple[str, str]] = []
    admin = AdminClient(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "log_level": 0, **settings.kafka.options}
    )
    try:
        topics = admin.list_topics(timeout=timeout).topics
    except Exception as exc:
        return [("kafka.bootstrap_servers", f"Kafka not reachable ({type(exc).__name__})")]
    for i, source in enumerate(settings.sources):
        if source.topic not in topics:
            problems.append((f"sources[{i}].topic", f"topic {source.topic!r} does not exist"))
    if settings.kafka.dead_letter_topic not in topics:
        problems.append(
            ("kafka.dead_letter_topic", f"topic {settings.kafka.dead_letter_topic!r} does not exist")
        )
    if settings.kafka.schema_registry_url:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        try:
            SchemaRegistryClient({"url": settings.kafka.schema_registry_url}).get_subjects()
        except Exception as exc:
            problems.append(("kafka.schema_registry_url", f"registry not reachable ({type(exc).__name__})"))
    return problems
