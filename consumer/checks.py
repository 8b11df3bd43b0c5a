"""`fboc check-config --connect`: can fboc reach what the file names?"""

from __future__ import annotations

from consumer.config import Settings


def connection_problems(settings: Settings, timeout: float = 5.0) -> list[tuple[str, str]]:
    from confluent_kafka.admin import AdminClient

    problems: list[tuple[str, str]] = []
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers, "log_level": 0,
                         **settings.kafka.options})
    try:
        topics = admin.list_topics(timeout=timeout).topics
    except Exception as exc:
        return [("kafka.bootstrap_servers", f"Kafka not reachable ({type(exc).__name__})")]
    for i, source in enumerate(settings.sources):
        if source.topic not in topics:
            problems.append((f"sources[{i}].topic", f"topic {source.topic!r} does not exist"))
    if settings.kafka.dead_letter_topic not in topics:
        problems.append(("kafka.dead_letter_topic",
                         f"topic {settings.kafka.dead_letter_topic!r} does not exist"))
    if settings.kafka.schema_registry_url:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        try:
            SchemaRegistryClient({"url": settings.kafka.schema_registry_url}).get_subjects()
        except Exception as exc:
            problems.append(("kafka.schema_registry_url",
                             f"registry not reachable ({type(exc).__name__})"))
    return problems
