"""Test helpers that talk to the real broker and the sandbox (no mocks)."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.adapters.codec import AvroSchema
from consumer.adapters.kafka.admin import committed_offsets
from consumer.config.settings import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[1]
SEGMENT_SCHEMA = AvroSchema.from_file(ROOT / "schemas" / "segment_track.avsc")
TOKEN = "sandbox-token"


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1)])
    for future in futures.values():
        future.result(30)


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes, int | None]],
    headers: list[tuple[str, bytes]] | None = None,
) -> int:
    """Produce (key, value, partition|None) records; returns how many were acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    acked = 0

    def on_delivery(err: Any, _msg: Message) -> None:
        nonlocal acked
        assert err is None, err
        acked += 1

    for key, value, partition in records:
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    return acked


def produce_at(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes, int]], partition: int = 0
) -> None:
    """(key, value, record timestamp in ms) records to one partition, in order (amperity groups
    rows by their record time)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    for key, value, at_ms in records:
        producer.produce(topic, value=value, key=key, partition=partition, timestamp=at_ms)
        producer.poll(0)
    assert producer.flush(60) == 0


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[Message]:
    """Read a topic from the start until `expected` records arrived (or the timeout)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error() is None:
                    out.append(msg)
        # a short grace period catches anything beyond what was expected
        out.extend(m for m in consumer.consume(500, 1.0) if m.error() is None)
    finally:
        consumer.close()
    return out


def key_of(msg: Message) -> bytes:
    """A consumed record's key; every record these tests produce has one."""
    key = msg.key()
    assert key is not None, f"a record without a key: {msg.topic()} {msg.partition()} {msg.offset()}"
    return key


def partition_of(msg: Message) -> int:
    """A consumed record's partition (only a produced, not yet delivered, message has none)."""
    partition = msg.partition()
    assert partition is not None
    return partition


def offset_of(msg: Message) -> int:
    """A consumed record's offset (only a produced, not yet delivered, message has none)."""
    offset = msg.offset()
    assert offset is not None
    return offset


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    return committed_offsets(bootstrap, group, topic, partitions)


def config_for(bootstrap: str, topic: str, group: str, graph_url: str, **overrides: Any) -> dict[str, Any]:
    """A full configuration (as data) for one segment source, with section overrides merged in."""
    data: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group, "dead_letter_topic": f"{topic}.dlq"},
        "facebook": {"graph_url": graph_url, "timeout_seconds": 5},
        "batching": {"linger_ms": 50},
        "service": {"port": 0, "shutdown_deadline_seconds": 10, "commit_interval_ms": 100},
        "sources": [
            {
                "name": "web",
                "topic": topic,
                "dialect": "segment",
                "destination": "main",
                "schema": str(ROOT / "schemas" / "segment_track.avsc"),
            }
        ],
        "destinations": [
            {
                "name": "main",
                "access_token": TOKEN,
                "event_sets": {"Purchase": ["111"], "AddToCart": ["222"], "ViewContent": ["111", "222"]},
            }
        ],
    }
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values
    return data


def settings_for(bootstrap: str, topic: str, group: str, graph_url: str, **overrides: Any) -> Settings:
    return parse_settings(config_for(bootstrap, topic, group, graph_url, **overrides), {})


def amperity_config(
    bootstrap: str, topic: str, group: str, graph_url: str, window_ms: int, **overrides: Any
) -> dict[str, Any]:
    """`config_for` with one amperity source `rows` instead: rows grouped `window_ms` apart, and
    Purchase sent to the event set 111 only."""
    data = config_for(bootstrap, topic, group, graph_url, **overrides)
    data["sources"] = [
        {
            "name": "rows",
            "topic": topic,
            "dialect": "amperity",
            "destination": "main",
            "schema": str(ROOT / "schemas" / "amperity_row.avsc"),
        }
    ]
    data["destinations"][0].update({"group_window_ms": window_ms, "event_sets": {"Purchase": ["111"]}})
    return data


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def track(i: int, event: str = "Order Completed", when: float | None = None, **props: Any) -> dict[str, Any]:
    """A Segment track call with a unique messageId `m-<i>`."""
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when or time.time() - 60))
    return {
        "type": "track",
        "event": event,
        "messageId": f"m-{i}",
        "userId": f"user-{i % 97}",
        "timestamp": iso,
        "properties": {"revenue": 10.5 + i % 7, "currency": "usd", "order_id": f"o-{i}", **props},
        "context": {"traits": {"email": f"Person{i % 97}@Example.com", "phone": "+1 202 555 0146"}},
    }


def avro(record: dict[str, Any]) -> bytes:
    return SEGMENT_SCHEMA.encode(record)


def sandbox_events(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/_sandbox/events", timeout=10) as resp:
        events: list[dict[str, Any]] = orjson.loads(resp.read())["events"]
    return events


def sandbox_requests(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/_sandbox/requests", timeout=10) as resp:
        requests: list[dict[str, Any]] = orjson.loads(resp.read())["requests"]
    return requests


def sandbox_post(url: str, path: str, body: Any, method: str = "POST") -> Any:
    req = urllib.request.Request(
        f"{url}{path}", data=orjson.dumps(body), method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return orjson.loads(resp.read() or b"null")


async def raw_request(port: int, data: bytes) -> bytes:
    """Send ``data`` as is to a loopback port (malformed HTTP included) and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a blocking predicate off the loop until true; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def sandbox_stats(url: str) -> dict[str, Any]:
    """The sandbox's totals; `deduplicated_distinct` counts conversions Meta would have lost."""
    with urllib.request.urlopen(f"{url}/_sandbox/stats", timeout=10) as resp:
        stats: dict[str, Any] = orjson.loads(resp.read())
    return stats
