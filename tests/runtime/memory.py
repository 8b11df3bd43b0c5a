"""In-memory implementations of the loop's ports (consumer/runtime/ports.py), and a pipeline
built on them: the loop's behaviours tested in milliseconds, without a broker or an API.

Each is as faithful to its Kafka or Graph counterpart as the loop can tell: the source runs the
rebalance callbacks inside `poll` on a worker thread (librdkafka's poll thread: the loop's
`on_revoke` blocks there until the loop released the partitions) and honours pause/resume; the
sink runs a write's acknowledgement only from `poll` or `flush`, once the test acknowledged it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from consumer.adapters.codec import Decoder
from consumer.adapters.graph import Failure
from consumer.adapters.kafka.deadletter import DeadLetter
from consumer.adapters.kafka.source import SourceRecord
from consumer.config.settings import DestinationSettings, Settings
from consumer.core.capi.event import Output, RecordContext
from consumer.core.dialects import Dialect
from consumer.core.offsets import TopicPartition
from consumer.errors import Rejected
from consumer.runtime.pipeline import Pipeline
from consumer.runtime.ports import SourceEvents
from consumer.runtime.stages import Route
from tests.helpers import settings_for

TOPIC = "orders"
EVENT_SET = "111"


def record(partition: int, offset: int, *, reject: bool = False, topic: str = TOPIC) -> SourceRecord:
    """A record of `partition` at `offset`: its event's id is `<partition>-<offset>`; `reject`:
    the dialect refuses it (a dead letter)."""
    value = orjson.dumps({"id": f"{partition}-{offset}", "reject": reject})
    return SourceRecord(topic, partition, offset, 0, None, value, [])


def records(partition: int, offsets: Iterable[int], **kw: Any) -> list[SourceRecord]:
    return [record(partition, o, **kw) for o in offsets]


class Rebalance(enum.Enum):
    ASSIGN = "assign"
    REVOKE = "revoke"
    LOST = "lost"


class MemorySource:
    """A `Source` of the given records, in partition order; all of their partitions are
    assigned at the first poll. `per_poll` caps the records one poll returns (a slow fetch)."""

    def __init__(self, feed: Iterable[SourceRecord], per_poll: int = 500) -> None:
        self._queues: dict[TopicPartition, deque[SourceRecord]] = {}
        for src in feed:
            self._queues.setdefault(TopicPartition(src.topic, src.partition), deque()).append(src)
        self._per_poll = per_poll
        self._events: SourceEvents | None = None
        self._rebalances: deque[tuple[Rebalance, list[TopicPartition]]] = deque(
            [(Rebalance.ASSIGN, list(self._queues))]
        )
        self._assigned: list[TopicPartition] = []
        self._paused: set[TopicPartition] = set()
        self._lock = threading.Lock()  # commits come from the loop and from the poll thread
        self.commits: list[tuple[dict[TopicPartition, int], bool]] = []  # (offsets, synchronous)
        self.finished: dict[TopicPartition, int] | None = None  # the final commit
        self.read = 0  # records returned by poll
        self.polls = 0
        self.after_poll: Callable[[], None] = lambda: None  # a test's probe, once per poll

    # -- what a test does -------------------------------------------------------------------

    def revoke(self, tps: list[TopicPartition]) -> None:
        """At the next poll the partitions are revoked (their unread records are another's)."""
        self._rebalances.append((Rebalance.REVOKE, tps))

    def lose(self, tps: list[TopicPartition]) -> None:
        """At the next poll the partitions are lost (the group moved on without us)."""
        self._rebalances.append((Rebalance.LOST, tps))

    def committed(self, tp: TopicPartition) -> int | None:
        """The last offset committed for the partition, final commit included."""
        with self._lock:
            done = [offsets[tp] for offsets, _sync in self.commits if tp in offsets]
        if self.finished is not None and tp in self.finished:
            done.append(self.finished[tp])
        return done[-1] if done else None

    # -- the port ---------------------------------------------------------------------------

    def subscribe(self, events: SourceEvents) -> None:
        self._events = events

    async def poll(self, max_records: int, wait_s: float) -> list[SourceRecord]:
        self.polls += 1
        while self._rebalances:
            kind, tps = self._rebalances.popleft()
            await self._rebalance(kind, tps)
        out: list[SourceRecord] = []
        room = min(max(1, max_records), self._per_poll)
        for tp in self._assigned:
            queue = self._queues.get(tp)
            while queue and tp not in self._paused and len(out) < room:
                out.append(queue.popleft())
        self.read += len(out)
        self.after_poll()
        if not out:
            await asyncio.sleep(min(wait_s, 0.001))  # Kafka waits for a record: not 50 ms here
        return out

    async def _rebalance(self, kind: Rebalance, tps: list[TopicPartition]) -> None:
        events = self._events
        assert events is not None, "poll before subscribe"
        if kind is Rebalance.ASSIGN:
            self._assigned += tps
            await asyncio.to_thread(events.on_assign, tps)
            return
        await asyncio.to_thread(events.on_revoke if kind is Rebalance.REVOKE else events.on_lost, tps)
        self._assigned = [tp for tp in self._assigned if tp not in tps]
        for tp in tps:
            self._queues.pop(tp, None)

    async def reachable(self, wait_s: float) -> bool:
        return True

    def commit(self, offsets: dict[TopicPartition, int], *, asynchronous: bool = True) -> None:
        with self._lock:
            self.commits.append((dict(offsets), not asynchronous))

    async def finish(self, offsets: dict[TopicPartition, int], wait_s: float) -> bool:
        self.finished = dict(offsets)
        return True

    def assignment(self) -> list[TopicPartition]:
        return list(self._assigned)

    def pause(self, tps: list[TopicPartition]) -> None:
        self._paused.update(tps)

    def resume(self, tps: list[TopicPartition]) -> None:
        self._paused.difference_update(tps)

    @property
    def paused(self) -> set[TopicPartition]:
        return set(self._paused)


@dataclass(eq=False)
class _Write:
    src: SourceRecord
    dl: DeadLetter
    on_done: Callable[[], None]
    acked: bool  # by the broker
    final: bool = False  # on_done ran


class MemorySink:
    """A `DeadLetterSink` that keeps its writes; with `auto_ack` each is acknowledged at once,
    otherwise when the test calls `ack`. Acknowledgements run from `poll`/`flush`, as Kafka's."""

    def __init__(self, auto_ack: bool = True) -> None:
        self.auto_ack = auto_ack
        self.writes: list[_Write] = []

    @property
    def pending(self) -> int:
        return sum(1 for w in self.writes if not w.final)

    def write(self, src: SourceRecord, dl: DeadLetter, on_done: Callable[[], None]) -> None:
        self.writes.append(_Write(src, dl, on_done, acked=self.auto_ack))

    def ack(self, offset: int | None = None) -> None:
        """The broker acknowledged the writes of the record at `offset` (None: all)."""
        for w in self.writes:
            if offset is None or w.src.offset == offset:
                w.acked = True

    def poll(self) -> None:
        for w in self.writes:
            if w.acked and not w.final:
                w.final = True
                w.on_done()

    def flush(self, timeout: float) -> int:
        self.poll()
        return self.pending

    def offsets(self) -> list[int]:
        return [w.src.offset for w in self.writes]


class Answer(enum.Enum):
    """What the destination answers for an event."""

    OK = "ok"
    THROTTLE = "throttle"  # throttled first, delivered after the wait
    INVALID = "invalid"  # an invalid event (code 100 with a subcode): its own failure
    SERVER_ERROR = "5xx"  # retried until the retries ran out
    HANG = "hang"  # no answer until the test calls `release`


@dataclass
class MemoryDestination:
    """A `Destination` answering each event by its id from `script` (OK when not in it)."""

    script: Mapping[str, Answer] = field(default_factory=dict)
    throttle_s: float = 0.005
    halted: bool = False
    requests: list[list[str]] = field(default_factory=list)  # the event ids of each request
    delivered: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0  # the most requests it saw at once
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Hung requests answer now (OK)."""
        self._released.set()

    async def deliver(
        self, event_set_id: str, upload_tag: str | None, events: Sequence[bytes]
    ) -> list[Failure | None]:
        ids = [str(orjson.loads(e)["event_id"]) for e in events]
        self.requests.append(ids)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            answers = [self.script.get(i, Answer.OK) for i in ids]
            if Answer.HANG in answers:
                await self._released.wait()
            if Answer.THROTTLE in answers:
                await asyncio.sleep(self.throttle_s)
        finally:
            self.in_flight -= 1
        results: list[Failure | None] = []
        for event_id, answer in zip(ids, answers, strict=True):
            if answer is Answer.INVALID:
                results.append(Failure("graph_invalid_event", "invalid error (http 400)", 1, 100, 2804019))
            elif answer is Answer.SERVER_ERROR:
                results.append(Failure("graph_retries_exhausted", "transient error (http 500)", 8))
            else:
                results.append(None)
                self.delivered.append(event_id)
        return results

    def halt_for(self, exc: BaseException) -> None:
        self.halted = True


def _transform(
    payload: Mapping[str, Any], ctx: RecordContext, dest: DestinationSettings, now: int
) -> list[Output]:
    """One Purchase event per record, its id the record's."""
    if payload["reject"]:
        raise Rejected("test_rejected", "the test asked for a dead letter")
    return [Output(EVENT_SET, {"event_name": "Purchase", "event_id": payload["id"], "event_time": now})]


DIALECT = Dialect("memory", _transform)
_decode: Decoder = orjson.loads


def settings(**sections: Any) -> Settings:
    """A configuration for one topic, with section overrides (batching, service, dead_letter)."""
    return settings_for("memory:9092", TOPIC, "memory-group", "http://127.0.0.1:9", **sections)


def pipeline(
    config: Settings, source: MemorySource, sink: MemorySink, destination: MemoryDestination
) -> Pipeline:
    """A pipeline on the in-memory ports; its one route uses the test dialect above."""
    route = Route(config.sources[0], DIALECT, _decode, config.destination("main"))
    return Pipeline(config, {TOPIC: route}, {"main": destination}, sink, source)


async def until(
    what: str, done: Callable[[], bool], task: asyncio.Task[None], timeout_s: float = 2.0
) -> None:
    """Wait until `done()` holds while the loop runs as `task`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not done():
        if task.done():
            task.result()  # what ended the loop
            raise AssertionError(f"the loop stopped while waiting for {what}")
        assert asyncio.get_running_loop().time() < deadline, f"waited {timeout_s}s for {what}"
        await asyncio.sleep(0.001)


class Running:
    """`async with Running(pipe) as loop:` the loop runs as `loop.task` inside; on the way out it
    is stopped and its end awaited (bounded), whatever happened inside."""

    def __init__(self, pipe: Pipeline, stop_within_s: float = 2.0) -> None:
        self.pipe, self.stop, self._within = pipe, asyncio.Event(), stop_within_s
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.pipe.run(self.stop))
        return self

    async def until(self, what: str, done: Callable[[], bool], timeout_s: float = 2.0) -> None:
        assert self.task is not None
        await until(what, done, self.task, timeout_s)

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        assert self.task is not None
        if exc_type is not None:  # the test failed already: no clean stop to wait for
            while not self.task.done():  # run() shuts down in a finally: cancel that too
                self.task.cancel()
                await asyncio.wait([self.task], timeout=0.01)
            with contextlib.suppress(BaseException):
                self.task.result()
            return
        self.stop.set()
        await asyncio.wait_for(self.task, self._within)
