"""The pipeline loop: source → decode → dialect → route → batch → deliver → commit.

Every consumed record's fate is kept by the record ledger (consumer/runtime/ledger.py): tracked,
held, owned by its events, final (delivered, filtered, or dead-lettered and acknowledged), and
commits never pass a record that is not final (docs/design.md invariant 1). Closed batches go to
`dispatch.py`, which sends them; the loop hands their answers to the ledger each turn.

Revocation and shutdown end the same way (`join`): send what is batched, wait for the records to be
final or the deadline, commit what is. A condition that must stop fboc is an exception
(consumer/errors.py, `Fatal`): the service catches it, after `_shutdown` committed what is final.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaTopicPartition

from consumer.adapters.codec import Decoder
from consumer.adapters.graph import GraphClient
from consumer.adapters.kafka.deadletter import (
    TARGET_EVENT_SET,
    DeadLetter,
    DeadLetterWriter,
    SourceRecord,
    header,
)
from consumer.adapters.kafka.source import KafkaSource
from consumer.adapters.kafka.watch import BrokerWatch
from consumer.config.settings import DestinationSettings, Settings, SourceSettings
from consumer.core.batching import Batcher, BatchKey
from consumer.core.breaker import DeadLetterBreaker
from consumer.core.capi.event import Output, RecordContext
from consumer.core.dialects import Dialect
from consumer.core.encode import encode_event
from consumer.core.offsets import TopicPartition
from consumer.errors import Fatal, Filtered, FinalCommitFailed, InvalidMessage, Rejected, SchemaUnavailable
from consumer.runtime.backpressure import Backpressure
from consumer.runtime.dispatch import Dispatch
from consumer.runtime.ledger import Ledger, Owner, PendingRecord
from consumer.telemetry.metrics import METRICS

log = structlog.get_logger("fboc.pipeline")

POLL_BATCH = 500
POLL_TIMEOUT_S = 0.05
# While deliveries are saturated, poll one record this often: the consumer stays in its group
# (rebalance callbacks only run inside a poll) without growing the buffer.
SATURATED_POLL_INTERVAL_S = 1.0
GROUP_CLOCK_STEP_S = 0.25  # see Pipeline._group_clock


@dataclass(frozen=True, slots=True)
class Route:
    """How records of one topic are handled."""

    source: SourceSettings
    dialect: Dialect
    decoder: Decoder
    destination: DestinationSettings


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        routes: dict[str, Route],
        clients: dict[str, GraphClient],
        dead_letters: DeadLetterWriter,
        make_source: Callable[[Pipeline], KafkaSource],
        now: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.routes = routes
        self.clients = clients
        self.dead_letters = dead_letters
        self.now = now
        batching = settings.batching
        self.batcher: Batcher[Owner] = Batcher(
            batching.max_events, batching.max_bytes, batching.linger_ms / 1000
        )
        self.breaker = DeadLetterBreaker(settings.dead_letter.breaker)
        self._groupers = {
            topic: route.dialect.grouping.grouper(route.destination.group_window_ms)
            for topic, route in routes.items()
            if route.dialect.grouping
        }
        self.ledger = Ledger(self.breaker, dead_letters)
        self.dispatch = Dispatch(clients, batching.max_in_flight, self.ledger)
        self._last_poll = 0.0
        self._group_ms = 0.0  # the groupers' clock: see _group_clock
        self._group_tick = time.monotonic()
        self._closing = False
        self._last_commit = 0.0
        self.last_turn = time.monotonic()
        self.ready = False
        self.brokers = BrokerWatch(settings.kafka.unreachable_timeout_seconds)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.source = make_source(self)
        self.backpressure = Backpressure(batching.max_buffered_records, self.source)

    # -- rebalance callbacks: called from the poll thread inside consume() --------------------

    def on_assign(self, tps: list[TopicPartition]) -> None:
        self.ready = True
        self.backpressure.assigned(tps)
        log.info("partitions_assigned", partitions=[f"{t}[{p}]" for t, p in tps])

    def on_revoke(self, tps: list[TopicPartition]) -> None:
        if self._closing or self._loop is None or not tps:
            self.ledger.forget(tps)  # closing: _shutdown already committed what is final
            self._release_groups(tps)
            return
        deadline_s = self.settings.service.shutdown_deadline_seconds
        # the join ends a second before this thread stops waiting for it
        join = self.join(set(tps), time.monotonic() + deadline_s - 1)
        future = asyncio.run_coroutine_threadsafe(join, self._loop)
        try:
            offsets = future.result(deadline_s)
        except TimeoutError:
            log.warning("revoke_deadline_passed", partitions=len(tps))
            offsets = {}
        try:  # synchronous, here on the poll thread: the partitions go once this returns
            self.source.commit(offsets, asynchronous=False)
            log.info(
                "partitions_released",
                partitions=[f"{t}[{p}]" for t, p in tps],
                committed={f"{t}[{p}]": o for (t, p), o in offsets.items()},
            )
        except KafkaException as exc:
            log.warning("revoke_commit_failed", error=_kafka_error_name(exc))
        self.ledger.forget(tps)
        self._release_groups(tps)

    def on_commit(self, err: KafkaError | None, partitions: list[KafkaTopicPartition]) -> None:
        """Result of an asynchronous commit (poll thread): failed partitions are committed again."""
        failed = [(p.topic, p.partition) for p in partitions if err is not None or p.error]
        if failed and self._loop is not None:
            log.warning(
                "commit_failed", error=err.name() if err else "partition error", partitions=len(failed)
            )
            self._loop.call_soon_threadsafe(self.ledger.uncommitted, failed)

    def on_lost(self, tps: list[TopicPartition]) -> None:
        log.warning("partitions_lost", partitions=[f"{t}[{p}]" for t, p in tps])
        self.ledger.forget(tps)
        self._release_groups(tps)

    # -- the end of records: revocation and shutdown -------------------------------------------

    async def join(
        self, partitions: set[TopicPartition] | None, deadline: float
    ) -> dict[TopicPartition, int]:
        """Send what is batched, wait until the records of `partitions` (None: all) are final or
        the `deadline` (monotonic) passes, and return their offsets to commit. Held records and
        open groups are not waited for, nor records nothing is on its way for (a dead letter the
        breaker refused, a write that failed): the commit stops before them and whoever reads
        the partition next reads them again."""
        self._flush_all()
        while True:
            self._collect()
            if (
                not self._on_their_way(partitions)
                or not (self.dispatch.busy or self.dead_letters.pending)
                or time.monotonic() >= deadline
            ):
                return self.ledger.committable(partitions)
            if self.dispatch.busy:
                await self.dispatch.wait_any(0.02)
            else:  # only dead-letter acknowledgements to wait for
                await asyncio.sleep(0.01)

    def _on_their_way(self, partitions: set[TopicPartition] | None) -> int:
        """Records of `partitions` (None: all) not final, not held, not in an open group."""
        if partitions is None:
            return self.ledger.unsettled() - self._open_rows()
        return sum(self.ledger.unsettled([tp]) - self._open_rows(tp) for tp in partitions)

    def _collect(self) -> None:
        """Settle the answers that came in: deliveries, then dead-letter acknowledgements."""
        self.dispatch.settle()
        self.dead_letters.poll()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                self.last_turn = now = time.monotonic()
                messages = await self._next_messages()
                for msg in messages:  # a tripped breaker raises here: the rest stays uncommitted
                    self.process(msg, now)
                self._retry_held()
                await self.brokers.check(bool(messages), lambda: self.source.reachable(2.0))
                self._emit_groups()
                # Lingered batches go only into free request slots; the rest keep filling
                # (full ones were sent as they closed).
                for batch in self.batcher.due(time.monotonic(), room=self.dispatch.free_slots()):
                    self.dispatch.send(batch)
                self._collect()
                self.ledger.publish()
                self.backpressure.update(self.ledger.pending() - self._open_rows())
                if time.monotonic() - self._last_commit >= self.settings.service.commit_interval_ms / 1000:
                    self._commit()
        finally:
            await self._shutdown()

    async def _next_messages(self) -> list[Message]:
        """The records to process this turn. While a destination is saturated (every slot taken,
        batches waiting: Dispatch.saturated), reading more would only grow the buffer and the
        latency (the `MessageRejected` of stream processors): wait for a delivery instead, and
        let the records stay in Kafka. The buffer cap (Backpressure) still bounds the rest."""
        now = time.monotonic()
        if self.dispatch.saturated():
            if now - self._last_poll < SATURATED_POLL_INTERVAL_S:
                await self.dispatch.wait_any(POLL_TIMEOUT_S)
                return []
            room = 1
        else:
            room = self.settings.batching.max_buffered_records - self.ledger.pending() + self._open_rows()
        self._last_poll = now
        return await self.source.poll(min(POLL_BATCH, max(room, 1)), POLL_TIMEOUT_S)

    async def _shutdown(self) -> None:
        """Clean stop (docs/design.md invariant 6): join every partition, then flush the dead-letter
        producer, cancel the deliveries still out, commit and close. A fatal condition found on
        the way still lets what is final be committed, then goes up to the service."""
        deadline = time.monotonic() + self.settings.service.shutdown_deadline_seconds
        try:
            await self.join(None, deadline)
            self.dead_letters.flush(max(0.0, deadline - time.monotonic()))
        finally:
            self.dispatch.cancel()
            self._closing = True
            self.ledger.publish()
            offsets = self.ledger.committable()
            unfinished, held = self.ledger.pending(), self.ledger.held()  # close() forgets them
            if not await self.source.finish(offsets, max(2.0, deadline - time.monotonic())):
                raise FinalCommitFailed("the final commit or close did not complete (broker unreachable?)")
            log.info(
                "stopped",
                unfinished_records=unfinished,
                held_records=held,
                committed={f"{t}[{p}]": o for (t, p), o in offsets.items()},
            )

    # -- per record ----------------------------------------------------------------------------

    def process(self, msg: Message, now: float) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume_error", error=err.name())
            return
        self.accept(SourceRecord.of(msg), now)

    def accept(self, src: SourceRecord, now: float | None = None) -> None:
        """One consumed record (`now`: when its turn polled it): tracked, then settled or held.
        Raises only a `Fatal` (the breaker refused its dead letter)."""
        self._handle(self.ledger.track(src, time.monotonic() if now is None else now))

    def _handle(self, record: PendingRecord, retry: bool = False) -> bool:
        """Settle one record (delivered through a batch, filtered or dead-lettered), or hold it
        when the cause is outside it; nothing but a `Fatal` escapes. False when it was held."""
        if not retry and record.tp[0] in self._groupers and self.ledger.held(record.tp):
            # grouped rows are grouped in offset order (docs/dialects.md#amperity): wait behind
            self.ledger.hold(record, "behind a held record")
            return False
        try:
            self._settle(record)
        except SchemaUnavailable as exc:
            self.ledger.hold(record, exc.message, first=retry)
            return False
        except Fatal:
            raise
        except Exception as exc:  # a bug on the way: the record pays for it, not the loop
            tp = record.tp
            self.ledger.dead_letter(
                record,
                _unexpected(
                    exc,
                    "transform",
                    "internal_error",
                    "record_error",
                    topic=tp[0],
                    partition=tp[1],
                    offset=record.offset,
                ),
            )
        return True

    def _retry_held(self) -> None:
        """Held records in their order, until one is held again (the decoder backs off, so
        that costs no request while the registry is still down)."""
        while (record := self.ledger.release()) is not None:
            if not self._handle(record, retry=True):
                return

    def _settle(self, record: PendingRecord) -> None:
        src, tp, offset = record.src, record.tp, record.offset
        route = self.routes[tp[0]]
        grouper = self._groupers.get(tp[0])
        if grouper is not None:  # every record moves its partition's record time on
            grouper.seen(tp, offset, src.timestamp_ms, self._group_clock())
        value = src.value
        try:
            if not value:
                raise InvalidMessage("empty_value", "the record has no value")
            payload = route.decoder(value)
        except InvalidMessage as exc:
            self.ledger.dead_letter(record, DeadLetter("decode", exc.reason, exc.message))
            return
        except SchemaUnavailable:
            raise
        except Exception as exc:  # a decoder bug or an input it did not foresee
            self.ledger.dead_letter(
                record,
                _unexpected(
                    exc, "decode", "undecodable", "decode_error", topic=tp[0], partition=tp[1], offset=offset
                ),
            )
            return
        grouping = route.dialect.grouping
        try:
            ctx = RecordContext(src.timestamp_ms, payload)
            if grouping is not None:
                part = grouping.check(payload, ctx, route.destination, int(self.now()))
                key = (route.destination.name, grouping.key(part))
                self._groupers[tp[0]].add(tp, key, part, record, offset, src.timestamp_ms)
                return
            outputs = route.dialect.transform(payload, ctx, route.destination, int(self.now()))
            outputs = _only_target(outputs, header(src.headers, TARGET_EVENT_SET))
        except Filtered as exc:
            self.ledger.filtered(record, exc.reason)
            return
        except Rejected as exc:
            self.ledger.dead_letter(record, DeadLetter("transform", exc.reason, exc.message))
            return
        except Exception as exc:  # a dialect bug must not stop the partition
            self.ledger.dead_letter(record, _dialect_error(exc, topic=tp[0], partition=tp[1], offset=offset))
            return
        self._batch((record,), route.destination.name, outputs)

    def _emit_groups(self) -> None:
        """Closed groups become events owned by all their records; the ledger learns their
        span, so no commit lands inside it (a replay then regroups the same rows)."""
        now_ms = self._group_clock()
        for topic, grouper in self._groupers.items():
            route = self.routes[topic]
            assert route.dialect.grouping is not None
            for parts, records, tp, first, last in grouper.due(now_ms):
                self.ledger.span(tp, first, last)
                try:
                    outputs = route.dialect.grouping.emit(parts, route.destination, int(self.now()))
                    outputs = _only_target(outputs, header(records[0].src.headers, TARGET_EVENT_SET))
                except Rejected as exc:
                    for record in records:
                        self.ledger.dead_letter(record, DeadLetter("transform", exc.reason, exc.message))
                    continue
                except Exception as exc:  # as in process(): never stop the partition
                    dl = _dialect_error(exc, topic=topic, records=len(records))
                    for record in records:
                        self.ledger.dead_letter(record, dl)
                    continue
                try:
                    self._batch(tuple(records), route.destination.name, outputs)
                except Fatal:  # the breaker tripped on a dead letter of the batch: stop, as in _handle()
                    raise
                except Exception as exc:  # as in _handle()
                    dl = _unexpected(
                        exc, "transform", "internal_error", "record_error", topic=topic, records=len(records)
                    )
                    for record in records:
                        self.ledger.dead_letter(record, dl)

    def _group_clock(self) -> float:
        """The clock of the groupers' one rule that is not the records' own: a partition idle
        for window + grace closes its groups. It passes only while fboc reads normally (not
        saturated, not paused), and at most GROUP_CLOCK_STEP_S a call, so a stalled loop
        does not make a partition look idle while its records wait unread."""
        now = time.monotonic()
        if not self.dispatch.saturated() and not self.backpressure.paused:
            self._group_ms += min(now - self._group_tick, GROUP_CLOCK_STEP_S) * 1000
        self._group_tick = now
        return self._group_ms

    def _open_rows(self, tp: TopicPartition | None = None) -> int:
        """Rows waiting in open groups: they wait for records still unread, so the buffer cap
        does not count them (bounded by the groupers' span cap instead)."""
        rows = 0
        for grouper in self._groupers.values():
            rows += grouper.open_rows(tp)
        return rows

    def _release_groups(self, tps: list[TopicPartition]) -> None:
        """The partitions went: their groups are dropped unsent and uncommitted."""
        for grouper in self._groupers.values():
            grouper.release(tps)

    def _batch(self, records: tuple[PendingRecord, ...], destination: str, outputs: list[Output]) -> None:
        """Encode every event first (a value out of bounds dead-letters the records before any
        of their events joins a batch), then add them to their batches."""
        encoded: dict[int, bytes] = {}  # one encoding per event object, shared by its event sets
        names: list[str] = []
        try:
            if not outputs:
                raise Rejected("no_event_set", "the record gave no event")
            for out in outputs:
                name = out.event.get("event_name")
                if not isinstance(name, str):
                    raise Rejected("invalid_payload", "an event has no event_name")
                names.append(name)
                if id(out.event) not in encoded:
                    encoded[id(out.event)] = encode_event(out.event, self.batcher.max_bytes)
        except Rejected as exc:
            for record in records:
                self.ledger.dead_letter(record, DeadLetter("transform", exc.reason, exc.message))
            return
        self.ledger.owned(records, len(outputs))
        METRICS.match_quality.count(destination, outputs)
        now = time.monotonic()
        for out, name in zip(outputs, names, strict=True):
            key = BatchKey(destination, out.event_set_id, out.upload_tag)
            for batch in self.batcher.add(key, encoded[id(out.event)], (records, name), now):
                self.dispatch.send(batch)

    # -- delivery ------------------------------------------------------------------------------

    def _flush_all(self) -> None:
        """Send what is closed. Open groups are not sent early: their rows stay uncommitted and
        are read again, whole, by the next run or owner of their partition."""
        self._emit_groups()
        for batch in self.batcher.drain():
            self.dispatch.send(batch)

    # -- commits --------------------------------------------------------------

    def _commit(self) -> None:
        """Asynchronous: the loop never waits for the coordinator (it may be down)."""
        self._last_commit = time.monotonic()
        offsets = self.ledger.committable()
        if not offsets:
            return
        try:
            self.source.commit(offsets)
        except KafkaException as exc:
            log.warning("commit_failed", error=_kafka_error_name(exc))
            return
        self.ledger.committed(offsets)
        METRICS.commits.inc()
        log.info("committed", offsets={f"{t}[{p}]": o for (t, p), o in offsets.items()})


def _kafka_error_name(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.name() if isinstance(err, KafkaError) else type(exc).__name__


def _dialect_error(exc: Exception, **where: Any) -> DeadLetter:
    """A dialect raised something unexpected: logged by the exception's type and the line that
    raised it, dead-lettered by its type. Never its message or traceback: they can hold the
    customer values the dialect was working on (docs/design.md invariant 5)."""
    return _unexpected(exc, "transform", "transform_error", "dialect_error", **where)


def _unexpected(exc: Exception, stage: str, reason: str, event: str, **where: Any) -> DeadLetter:
    """An exception nobody foresaw, logged as `event` by its type and where it was raised."""
    last = traceback.extract_tb(exc.__traceback__)[-1:]
    at = f"{last[0].name} ({Path(last[0].filename).name}:{last[0].lineno})" if last else None
    log.error(event, error=type(exc).__name__, at=at, **where)
    return DeadLetter(stage, reason, f"unexpected {type(exc).__name__}")


def _only_target(outputs: list[Output], target: str | None) -> list[Output]:
    """A replayed dead letter goes to the event set it failed for, and only there."""
    if target is None:
        return outputs
    kept = [o for o in outputs if o.event_set_id == target]
    if not kept:
        raise Rejected("no_event_set", "the replay's event set is no longer configured")
    return kept
