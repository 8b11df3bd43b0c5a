"""The pipeline loop: source → decode → dialect → route → batch → deliver → commit.

Each turn polls records and hands each to the stages (consumer/runtime/stages.py: decode,
dialect, route, batch), sends the batches that are due, settles the answers and commits.

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
from collections.abc import Callable

import structlog
from confluent_kafka import KafkaError, KafkaException

from consumer.adapters.kafka.source import SourceRecord
from consumer.adapters.kafka.watch import BrokerWatch
from consumer.config.settings import Settings
from consumer.core.batching import Batcher
from consumer.core.breaker import DeadLetterBreaker
from consumer.core.offsets import TopicPartition
from consumer.errors import FinalCommitFailed
from consumer.runtime.backpressure import Backpressure
from consumer.runtime.dispatch import Dispatch
from consumer.runtime.ledger import Ledger, Owner
from consumer.runtime.ports import DeadLetterSink, Destination, Source
from consumer.runtime.stages import Route, Stages
from consumer.telemetry.metrics import METRICS

log = structlog.get_logger("fboc.pipeline")

POLL_BATCH = 500
POLL_TIMEOUT_S = 0.05
# While deliveries are saturated, poll one record this often: the consumer stays in its group
# (rebalance callbacks only run inside a poll) without growing the buffer.
SATURATED_POLL_INTERVAL_S = 1.0
GROUP_CLOCK_STEP_S = 0.25  # see Pipeline._group_clock


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        routes: dict[str, Route],
        clients: dict[str, Destination],
        dead_letters: DeadLetterSink,
        source: Source,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.routes = routes
        self.clients = clients
        self.dead_letters = dead_letters
        self.now = now
        batching = settings.batching
        self.breaker = DeadLetterBreaker(settings.dead_letter.breaker)
        self.ledger = Ledger(self.breaker, dead_letters)
        self.dispatch = Dispatch(clients, batching.max_in_flight, self.ledger)
        batcher: Batcher[Owner] = Batcher(batching.max_events, batching.max_bytes, batching.linger_ms / 1000)
        self.stages = Stages(routes, self.ledger, batcher, self.dispatch, self._group_clock, now)
        self._last_poll = 0.0
        self._group_ms = 0.0  # the groupers' clock: see _group_clock
        self._group_tick = time.monotonic()
        self._closing = False
        self._last_commit = 0.0
        self.last_turn = time.monotonic()
        self.ready = False
        self.brokers = BrokerWatch(settings.kafka.unreachable_timeout_seconds)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.source = source
        self.backpressure = Backpressure(batching.max_buffered_records, source)
        source.subscribe(self)

    # -- rebalance callbacks: called from the poll thread inside consume() --------------------

    def on_assign(self, tps: list[TopicPartition]) -> None:
        self.ready = True
        self.backpressure.assigned(tps)
        log.info("partitions_assigned", partitions=[f"{t}[{p}]" for t, p in tps])

    def on_revoke(self, tps: list[TopicPartition]) -> None:
        if self._closing or self._loop is None or not tps:
            self.ledger.forget(tps)  # closing: _shutdown already committed what is final
            self.stages.release_groups(tps)
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
        self.stages.release_groups(tps)

    def on_commit_failed(self, tps: list[TopicPartition], error: str) -> None:
        """An asynchronous commit failed (poll thread): these partitions are committed again."""
        if self._loop is not None:
            log.warning("commit_failed", error=error, partitions=len(tps))
            self._loop.call_soon_threadsafe(self.ledger.uncommitted, tps)

    def on_error(self, err: KafkaError) -> None:
        self.brokers.on_error(err)

    def on_stats(self, raw: str) -> None:
        self.brokers.on_stats(raw)

    def on_lost(self, tps: list[TopicPartition]) -> None:
        log.warning("partitions_lost", partitions=[f"{t}[{p}]" for t, p in tps])
        self.ledger.forget(tps)
        self.stages.release_groups(tps)

    # -- the end of records: revocation and shutdown -------------------------------------------

    async def join(
        self, partitions: set[TopicPartition] | None, deadline: float
    ) -> dict[TopicPartition, int]:
        """Send what is batched, wait until the records of `partitions` (None: all) are final or
        the `deadline` (monotonic) passes, and return their offsets to commit. Held records and
        open groups are not waited for, nor records nothing is on its way for (a dead letter the
        breaker refused, a write that failed): the commit stops before them and whoever reads
        the partition next reads them again."""
        self.stages.flush()
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
            return self.ledger.unsettled() - self.stages.open_rows()
        return sum(self.ledger.unsettled([tp]) - self.stages.open_rows(tp) for tp in partitions)

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
                records = await self._next_records()
                for src in records:  # a tripped breaker raises here: the rest stays uncommitted
                    self.accept(src, now)
                self.stages.retry_held()
                await self.brokers.check(bool(records), lambda: self.source.reachable(2.0))
                self.stages.emit_groups()
                # Lingered batches go only into free request slots; the rest keep filling
                # (full ones were sent as they closed).
                for batch in self.stages.batcher.due(time.monotonic(), room=self.dispatch.free_slots()):
                    self.dispatch.send(batch)
                self._collect()
                self.ledger.publish()
                self.backpressure.update(self.ledger.pending() - self.stages.open_rows())
                if time.monotonic() - self._last_commit >= self.settings.service.commit_interval_ms / 1000:
                    self._commit()
        finally:
            await self._shutdown()

    async def _next_records(self) -> list[SourceRecord]:
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
            buffered = self.ledger.pending() - self.stages.open_rows()
            room = self.settings.batching.max_buffered_records - buffered
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

    def accept(self, src: SourceRecord, now: float | None = None) -> None:
        """One consumed record (`now`: when its turn polled it): tracked, then settled or held.
        Raises only a `Fatal` (the breaker refused its dead letter)."""
        self.stages.handle(self.ledger.track(src, time.monotonic() if now is None else now))

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
