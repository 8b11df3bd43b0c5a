"""One-shot producer of sample events for `docker compose up` (the `producer` service).

Reads fboc's configuration for the broker, the Schema Registry and the source's topic, creates the
source and dead-letter topics if they are missing, registers the dialect's Avro schema under
`<topic>-value`, and produces each JSON line of the events file in the Confluent wire format, with
its `timestamp` set to a few minutes ago so Meta's event-age window accepts it. Runs inside the fboc
image (it uses fboc's own Avro encoder); exits 0 once the broker has acknowledged every record.

    python produce_samples.py --config /etc/fboc/fboc.yaml --source web \
        --events sample-events.jsonl --schema /app/schemas/segment_track.avsc
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from consumer.adapters.codec import AvroSchema, wire_format

TIMESTAMP_STEP_SECONDS = 60


def load_events(path: Path) -> list[dict[str, Any]]:
    events = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        event = json.loads(line)
        if not isinstance(event, dict):
            raise SystemExit(f"{path}:{number}: not a JSON object")
        events.append(event)
    return events


def with_timestamps(events: Iterable[Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
    """Copies of the events, the last one `now`, each earlier one a minute before the next."""
    events = list(events)
    out = []
    for index, event in enumerate(events):
        at = now - (len(events) - 1 - index) * TIMESTAMP_STEP_SECONDS
        stamped = dict(event)
        stamped["timestamp"] = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
        out.append(stamped)
    return out


def encode(events: Iterable[Mapping[str, Any]], schema: AvroSchema, schema_id: int) -> list[bytes]:
    return [wire_format(schema_id, schema.encode(event)) for event in events]


def source_settings(config: Mapping[str, Any], source_name: str) -> tuple[dict[str, Any], str]:
    """(kafka section, topic of the named source) from fboc's raw configuration."""
    kafka = dict(config.get("kafka") or {})
    for source in config.get("sources") or []:
        if source.get("name") == source_name:
            return kafka, str(source["topic"])
    raise SystemExit(f"no source named {source_name!r} in the configuration")


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    for topic, future in futures.items():
        try:
            future.result(30)
            print(f"created topic {topic}")
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            print(f"topic {topic} exists")


def register(client: Any, subject: str, schema: AvroSchema) -> int:
    """Register the schema under `subject` with a Schema Registry client; returns its id."""
    from confluent_kafka.schema_registry import Schema

    schema_id: int = client.register_schema(subject, Schema(json.dumps(schema.raw), "AVRO"))
    return schema_id


def produce(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes | None]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value in zip(keys, values, strict=True):
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
    if producer.flush(30) or failures:
        raise SystemExit(f"not every record was acknowledged: {failures or 'flush timed out'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Produce fboc's sample events once.")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--source", required=True)
    parser.add_argument("--events", required=True, type=Path)
    parser.add_argument("--schema", required=True, type=Path)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args(argv)

    config = yaml.safe_load(args.config.read_text())
    kafka, topic = source_settings(config, args.source)
    bootstrap = str(kafka.get("bootstrap_servers", "localhost:9092"))
    registry_url = kafka.get("schema_registry_url")
    if not registry_url:
        raise SystemExit("kafka.schema_registry_url is not set in the configuration")
    schema = AvroSchema.from_file(args.schema)
    events = with_timestamps(load_events(args.events), time.time())

    ensure_topics(
        bootstrap, [topic, str(kafka.get("dead_letter_topic", "fboc.dead-letter"))], args.partitions
    )
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient({"url": str(registry_url)})
    schema_id = register(client, f"{topic}-value", schema)
    keys = [str(e.get("userId") or e.get("anonymousId") or "").encode() or None for e in events]
    produce(bootstrap, topic, encode(events, schema, schema_id), keys)
    print(f"produced {len(events)} sample events to {topic} (schema id {schema_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
