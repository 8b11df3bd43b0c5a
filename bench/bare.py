"""The least a Kafka → Conversions API consumer can do: a yardstick for fboc, not a product.

    .venv/bin/python bench/bare.py --bootstrap HOST:PORT --topic T --group G --schema FILE \
        --graph-url http://127.0.0.1:PORT

`bench/e2e.py --bare` runs it after fboc, on the same records, broker and sandbox. It does the
floor's work for each record (`e2e.floor_event`: decode, hash the customer fields, encode one
event, with the record's Kafka time as event_time) and then only what delivery cannot do without:
1,000 events to a request, all to one event set, through aiohttp with up to --max-in-flight
requests at once, a request at the latest --linger-ms after its first event, and commits of the
offsets whose requests (and every request before them) were acknowledged. No dialect rules, no
event set routing, no dead-letter topic, no retries, no metrics: records it cannot use are
skipped, and a failed request stops it with an error.

It logs the two lines bench/e2e.py times a run by, as JSON: `partitions_assigned` and
`committed`. SIGTERM stops it after the requests in flight and a last commit.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from confluent_kafka import Consumer, TopicPartition

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from e2e import floor_event  # noqa: E402

from consumer.codec import AvroSchema  # noqa: E402

EVENTS_PER_REQUEST = 1000
POLL_BATCH = 500


def say(event: str, **fields: Any) -> None:
    line = {"event": event, "timestamp": datetime.now(UTC).isoformat(), **fields}
    print(orjson.dumps(line).decode(), flush=True)


class Requests:
    """Requests in flight, oldest first, each with the offsets it completes."""

    def __init__(self, session: aiohttp.ClientSession, url: str, max_in_flight: int) -> None:
        self.session, self.url = session, url
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
            async with self.session.post(self.url, data=body, headers={
                    "Authorization": "Bearer sandbox-token", "Content-Type": "application/json"}) as resp:
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
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "partition.assignment.strategy": "cooperative-sticky"})
    consumer.subscribe([args.topic], on_assign=lambda _c, parts: say(
        "partitions_assigned", partitions=[p.partition for p in parts]))
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
        requests = Requests(session, f"{args.graph_url}/v26.0/444/events", args.max_in_flight)
        events: list[bytes] = []
        offsets: dict[int, int] = {}
        first_at = last_commit = time.monotonic()
        while not stop.is_set():
            for msg in await loop.run_in_executor(poller, consumer.consume, POLL_BATCH, 0.05):
                value, partition, offset = msg.value(), msg.partition(), msg.offset()
                if msg.error() is not None or partition is None or offset is None:
                    continue
                try:
                    data = floor_event(value or b"", schema, msg.timestamp()[1] // 1000)
                except Exception:  # not Avro: skipped
                    data = None
                if data is not None:
                    if not events:
                        first_at = time.monotonic()
                    events.append(data)
                offsets[partition] = offset + 1
                if len(events) == EVENTS_PER_REQUEST:
                    await requests.send(events, offsets)
                    events, offsets = [], {}
            now = time.monotonic()
            if offsets and (not events or now - first_at >= args.linger_ms / 1000):
                await requests.send(events, offsets)
                events, offsets = [], {}
            if now - last_commit >= 0.5:
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
    asyncio.run(run(ap.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
