"""The least a Kafka → Conversions API consumer can do: a yardstick for fboc, not a product.

    .venv/bin/python bench/bare.py --bootstrap HOST:PORT --topic T --group G --schema FILE \
        --graph-url http://127.0.0.1:PORT [--work floor|transform]

`bench/e2e.py --bare` runs it after fboc, on the same records, broker and sandbox. For each
record it does one of two kinds of work:
- floor: the floor's (`floor_event`: decode, hash the customer fields, encode one event), with
  the record's Kafka time as event_time;
- transform: fboc's own decoding and Segment transform as its routes run it (docs/dialects.md
  rules, normalisation, the customer-data screen and checks), with e2e's destination, and encodes
  what it gives. Compiled when fboc is (FBOC_BENCH_WRAP).
Then only what delivery cannot do without: 1,000 events to a request, all to one event set,
through aiohttp with up to --max-in-flight requests at once, a request at the latest
--linger-ms after its first event, and commits of the offsets whose requests (and every request
before them) were acknowledged. No routing, no dead-letter topic, no retries, no metrics:
records it cannot use are skipped, and a failed request stops it with an error.

It logs the two lines bench/e2e.py times a run by, as JSON: `partitions_assigned` and
`committed`. SIGTERM stops it after the requests in flight and a last commit.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from confluent_kafka import Consumer, TopicPartition
from fastavro import schemaless_reader

from consumer.adapters.codec import AvroSchema
from consumer.adapters.kafka.source import consumer_config
from consumer.config.settings import BatchingSettings, DestinationSettings, FacebookSettings, KafkaSettings
from consumer.core.capi.event import RecordContext
from consumer.core.dialects import get_dialect
from consumer.runtime.pipeline import POLL_BATCH, POLL_TIMEOUT_S

EVENTS_PER_REQUEST = BatchingSettings().max_events  # fboc's default, Meta's limit
PREFETCH_KBYTES = 65536  # librdkafka's default queued.max.messages.kbytes
# fboc's destination in bench/e2e.py, and the transform's here
DESTINATION_CONFIG: dict[str, Any] = {
    "name": "main",
    "access_token": "sandbox-token",
    "max_event_age_days": 62,
    "event_mapping": {"Signed Up": ["Lead"]},
    "event_sets": {"Purchase": ["111"], "AddToCart": ["222"], "ViewContent": ["333"]},
    "default_event_sets": ["444"],
}
DESTINATION = DestinationSettings(**DESTINATION_CONFIG)
# fboc's Segment transform as its routes run it: the dialect, then the customer-data screen and
# the action_source and currency checks every dialect's events pass (dialects/screening.py)
TRANSFORM = get_dialect("segment").transform
Work = Callable[[bytes, int], list[bytes]]


# The customer fields of a sample track call: (user_data key, path from context.traits).
# userId is the tenth: external_id.
CUSTOMER_FIELDS = (
    ("em", ("email",)),
    ("ph", ("phone",)),
    ("fn", ("firstName",)),
    ("ln", ("lastName",)),
    ("ct", ("address", "city")),
    ("st", ("address", "state")),
    ("zp", ("address", "postalCode")),
    ("country", ("address", "country")),
)


def sha256_of(value: Any) -> list[str]:
    return [hashlib.sha256(str(value).strip().lower().encode()).hexdigest()]


def floor_event(value: bytes, schema: AvroSchema, event_time: int) -> bytes | None:
    """The least any consumer must do for one record: decode it, hash every customer field it
    carries (trimmed and lower-cased, nothing more), encode one event. None for a record
    without the parts an event needs."""
    record = schemaless_reader(io.BytesIO(value), schema.parsed, None)
    if not isinstance(record, dict) or record.get("context") is None or not record.get("event"):
        return None
    traits = orjson.loads(record["context"]).get("traits", {})
    user = {"external_id": sha256_of(record["userId"])}
    for key, path in CUSTOMER_FIELDS:
        found = traits.get(path[0]) if len(path) == 1 else traits.get(path[0], {}).get(path[1])
        if found is not None:
            user[key] = sha256_of(found)
    return orjson.dumps(
        {
            "event_name": record["event"],
            "event_time": event_time,
            "event_id": record["messageId"],
            "action_source": "physical_store",
            "user_data": user,
            "custom_data": orjson.loads(record["properties"]),
        }
    )


def transform_events(schema: AvroSchema, value: bytes, timestamp_ms: int) -> list[bytes]:
    """What fboc does between poll and batch for one record (its Pipeline.process, less the
    bookkeeping): decode, transform, encode each output event."""
    payload = schema.decode_body(value)
    outputs = TRANSFORM(payload, RecordContext(timestamp_ms, payload), DESTINATION, int(time.time()))
    return [orjson.dumps(o.event) for o in outputs]


def work_of(kind: str, schema: AvroSchema) -> Work:
    if kind == "transform":
        return lambda value, timestamp_ms: transform_events(schema, value, timestamp_ms)

    def floor_work(value: bytes, timestamp_ms: int) -> list[bytes]:
        data = floor_event(value, schema, timestamp_ms // 1000)
        return [data] if data is not None else []

    return floor_work


def say(event: str, **fields: Any) -> None:
    line = {"event": event, "timestamp": datetime.now(UTC).isoformat(), **fields}
    print(orjson.dumps(line).decode(), flush=True)


class Requests:
    """Requests in flight, oldest first, each with the offsets it completes."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str, max_in_flight: int) -> None:
        self.session, self.url = session, url
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.slots = asyncio.Semaphore(max_in_flight)
        self.queue: deque[tuple[asyncio.Future[None], dict[int, int]]] = deque()

    async def send(self, events: list[bytes], offsets: dict[int, int]) -> None:
        if not events:  # only skipped records: nothing to send, the offsets still move on
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            self.queue.append((done, offsets))
            return
        await self.slots.acquire()
        body = b'{"data":[' + b",".join(events) + b"]}"
        self.queue.append((asyncio.ensure_future(self._post(body, len(events))), offsets))

    async def _post(self, body: bytes, count: int) -> None:
        try:
            async with self.session.post(self.url, data=body, headers=self.headers) as resp:
                answer = orjson.loads(await resp.read())
            if resp.status != 200 or answer.get("events_received") != count:
                raise RuntimeError(f"request failed: HTTP {resp.status} {answer}")
        finally:
            self.slots.release()

    def acknowledged(self) -> dict[int, int]:
        """Next offsets per partition that every finished request before them allows."""
        offsets: dict[int, int] = {}
        while self.queue and self.queue[0][0].done():
            future, done = self.queue.popleft()
            future.result()  # a failed request: stop here, nothing after it is committed
            offsets.update(done)
        return offsets


async def run(args: argparse.Namespace) -> None:
    schema = AvroSchema.from_file(args.schema)
    work = work_of(args.work, schema)
    # fboc's own consumer settings (manual commits, cooperative-sticky), but librdkafka's default
    # prefetch: fboc's 16 MB bound (for bounded memory) held this loop to ~33k records/s here, at
    # 0.64 of a core, where the floor's work needs more
    kafka = KafkaSettings(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        options={"queued.max.messages.kbytes": PREFETCH_KBYTES},
    )
    consumer = Consumer(consumer_config(kafka))
    consumer.subscribe(
        [args.topic],
        on_assign=lambda _c, parts: say("partitions_assigned", partitions=[p.partition for p in parts]),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    poller = ThreadPoolExecutor(1)

    def commit(offsets: dict[int, int], wait: bool = False) -> None:
        parts = [TopicPartition(args.topic, p, o) for p, o in offsets.items()]
        if not parts:
            return
        if wait:
            consumer.commit(offsets=parts, asynchronous=False)
        else:
            consumer.commit(offsets=parts, asynchronous=True)
        say("committed", offsets={str(p): o for p, o in offsets.items()})

    async with aiohttp.ClientSession() as session:
        url = f"{args.graph_url}/{FacebookSettings().api_version}/{DESTINATION.default_event_sets[0]}/events"
        token = DESTINATION.access_token.get_secret_value() if DESTINATION.access_token else ""
        requests = Requests(session, url, token, args.max_in_flight)
        events: list[bytes] = []
        offsets: dict[int, int] = {}
        first_at = last_commit = time.monotonic()
        while not stop.is_set():
            for msg in await loop.run_in_executor(poller, consumer.consume, POLL_BATCH, POLL_TIMEOUT_S):
                value, partition, offset = msg.value(), msg.partition(), msg.offset()
                if msg.error() is not None or partition is None or offset is None:
                    continue
                try:
                    data = work(value or b"", msg.timestamp()[1])
                except Exception:  # not Avro, or rejected by the transform: skipped
                    data = []
                if len(events) + len(data) > EVENTS_PER_REQUEST:
                    await requests.send(events, offsets)
                    events, offsets = [], {}
                if data and not events:
                    first_at = time.monotonic()
                events.extend(data)
                offsets[partition] = offset + 1
            now = time.monotonic()
            if offsets and (not events or now - first_at >= args.linger_ms / 1000):
                await requests.send(events, offsets)
                events, offsets = [], {}
            if now - last_commit >= args.commit_interval_ms / 1000:
                commit(requests.acknowledged())
                last_commit = now
        await requests.send(events, offsets)
        await asyncio.gather(*(future for future, _ in requests.queue))
        final = requests.acknowledged()
    await loop.run_in_executor(poller, commit, final, True)
    consumer.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--graph-url", required=True)
    ap.add_argument("--max-in-flight", type=int, default=8)
    ap.add_argument("--linger-ms", type=int, default=200)
    ap.add_argument("--commit-interval-ms", type=int, default=500)
    ap.add_argument("--work", choices=("floor", "transform"), default="floor")
    asyncio.run(run(ap.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
