"""`fboc dlq replay` (docs/operations.md#replay): re-publish dead letters to the topic they came from.

A one-off job. It reads the dead-letter topic with assigned partitions in its own consumer group
(`<kafka.group_id>.replay`, or `--group`), from the group's committed position (else the start)
to the end offsets seen at start (narrowed by `--since` / `--until` through offsets_for_times).
Those ends go into the metadata of every commit; a run that finds an unfinished one resumes it
up to its ends (`resume_ends`), so it never re-publishes what was dead-lettered meanwhile (fboc's
own dead letters of the records the first run re-published). Without `--to`, only source topics
are written to.
Each record is, in this order: skipped (does not match the filters), parked (its replay count
reached `dead_letter.max_replays`), too old for Meta's window (see `consumer.ops.dlq.records`), or
re-published by an idempotent acks=all producer. The group's offset passes a record only once
it is final: re-published and acknowledged, or skipped/parked/too old, which stay on the
dead-letter topic. So an interrupted replay resumes without repeating or skipping, and a replay
with other filters needs another `--group` (or a reset of this one). `--dry-run` writes nothing
and commits nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from consumer.adapters.kafka.deadletter import TRUNCATED, header, headers_of
from consumer.adapters.kafka.source import position
from consumer.config.settings import Settings
from consumer.core.offsets import OffsetTracker
from consumer.ops.dlq.records import (
    FILTERS,
    NO_ORIGINAL_TOPIC,
    NOT_A_SOURCE_TOPIC,
    TRUNCATED_VALUE,
    DeadLetterView,
    Filters,
    Pacer,
    ReplaySummary,
    Verdict,
    age_limit_days,
    classify,
    destination_for,
    end_metadata,
    loggable,
    replay_headers,
    resume_ends,
    stored_end,
    target_partition,
)
from consumer.ops.dlq.stats import (
    DlqError,
    Ranges,
    client_config,
    kafka_error_name,
    read_range,
    topic_partitions,
    watermarks,
)
from consumer.telemetry.metrics import KAFKA_LOGGER

log = structlog.get_logger("fboc.replay")

COMMIT_INTERVAL_S = 0.2
FLUSH_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    filters: Filters = field(default_factory=Filters)
    limit: int | None = None  # re-publishes (or, dry, would-be re-publishes) in this run
    rate: float | None = None  # re-publishes per second
    dry_run: bool = False
    to_topic: str | None = None
    group: str | None = None


class Replayer:
    def __init__(
        self,
        settings: Settings,
        options: ReplayOptions,
        stop: threading.Event | None = None,
        now_ms: Callable[[], int] | None = None,
        on_start: Callable[[int], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.topic = settings.kafka.dead_letter_topic
        self.group = options.group or f"{settings.kafka.group_id}.replay"
        self.stop = stop or threading.Event()
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.on_start = on_start or (lambda _total: None)
        self.on_progress = on_progress or (lambda _n: None)
        self.summary = ReplaySummary(self.topic, self.group, options.dry_run, options.to_topic)
        self.tracker = OffsetTracker()
        self.pacer = Pacer(options.rate)
        self.attempts = 0  # re-publishes started (dry: would-be)
        self._partitions: dict[str, frozenset[int]] = {}
        self._sources = frozenset(s.topic for s in settings.sources)
        self._stops: dict[int, int] = {}  # this run's end offsets, stored with every commit
        self.resumed = False  # this run finishes an interrupted one (up to that one's ends)
        self._last_commit = 0.0
        self._consumer = Consumer(client_config(settings.kafka, self.group))
        self._producer: Producer | None = None
        if not options.dry_run:
            options_ = {k: v for k, v in settings.kafka.options.items() if not k.startswith("group.")}
            self._producer = Producer(
                {
                    **options_,
                    "bootstrap.servers": settings.kafka.bootstrap_servers,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "logger": KAFKA_LOGGER,
                }
            )

    # -- where to start and stop -----------------------------------------------------------------

    def _committed(self, partitions: list[int]) -> dict[int, tuple[int, int | None]]:
        """Per partition: the group's committed offset, and the end its run stored with it."""
        tps = [TopicPartition(self.topic, p) for p in partitions]
        for attempt in range(40):  # the group coordinator may still be loading
            try:
                return {
                    tp.partition: (tp.offset, stored_end(tp.metadata))
                    for tp in self._consumer.committed(tps, timeout=10)
                }
            except KafkaException as exc:
                if attempt == 39:
                    raise DlqError(
                        f"cannot read the offsets of group {self.group!r}: {kafka_error_name(exc)}"
                    ) from None
                time.sleep(0.25)
        raise AssertionError("unreachable")

    def _offsets_at(self, partitions: list[int], ms: int, ends: dict[int, int]) -> dict[int, int]:
        """The first offset whose timestamp is >= ms, per partition (the end when none)."""
        try:
            found = self._consumer.offsets_for_times(
                [TopicPartition(self.topic, p, ms) for p in partitions], timeout=10
            )
        except KafkaException as exc:
            raise DlqError(f"offsets_for_times failed: {kafka_error_name(exc)}") from None
        return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found}

    def ranges(self) -> Ranges:
        partitions = topic_partitions(self._consumer, self.topic)
        marks = watermarks(self._consumer, self.topic, partitions)
        ends = {p: high for p, (_low, high) in marks.items()}
        committed = self._committed(partitions)
        starts = {p: max(low, committed.get(p, (-1, None))[0]) for p, (low, _high) in marks.items()}
        resumed = resume_ends(committed)
        self.resumed = self.summary.resumed = resumed is not None
        stops = (
            dict(ends)
            if resumed is None
            else {p: max(starts[p], min(ends[p], resumed.get(p, starts[p]))) for p in partitions}
        )
        f = self.options.filters
        if f.since_ms is not None:
            since = self._offsets_at(partitions, f.since_ms, ends)
            starts = {p: max(starts[p], since[p]) for p in partitions}
        if f.until_ms is not None:
            until = self._offsets_at(partitions, f.until_ms, ends)
            stops = {p: min(stops[p], until[p]) for p in partitions}
        stops = {p: max(starts[p], stops[p]) for p in partitions}
        return {p: (starts[p], stops[p]) for p in partitions}

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> ReplaySummary:
        try:
            ranges = self.ranges()
            total = sum(max(0, b - a) for a, b in ranges.values())
            log.info(
                "replay_started",
                topic=self.topic,
                group=self.group,
                records=total,
                dry_run=self.options.dry_run,
                to=self.options.to_topic,
                resumed=self.resumed,
                ranges={str(p): list(r) for p, r in ranges.items()},
            )
            self.on_start(total)
            try:
                self._store_ends(ranges)
                self._loop(ranges)
            except DlqError as exc:  # Kafka stopped answering, or no topic to re-publish to
                self.summary.error = str(exc)
            self._finish()  # in every case: what was acknowledged gets committed
        finally:
            self._consumer.close()
        self.summary.interrupted = self.stop.is_set()
        s = self.summary
        log.info(
            "replay_finished",
            topic=self.topic,
            group=self.group,
            dry_run=s.dry_run,
            interrupted=s.interrupted,
            limit_reached=s.limit_reached,
            error=s.error,
            **{v.value: s.counts[v.value] for v in Verdict},
        )
        return s

    def _loop(self, ranges: Ranges) -> None:
        for msg in read_range(self._consumer, self.topic, ranges):
            if self.stop.is_set() or self.summary.error or not self._handle(msg):
                return
            self.on_progress(1)
            self._poll()
            if self.options.limit is not None and self.attempts >= self.options.limit:
                self.summary.limit_reached = True
                return

    def _handle(self, msg: Message) -> bool:
        """Decide one dead letter; False when the run must stop before it (interrupted)."""
        tp, offset = position(msg)
        partition = tp[1]
        view = DeadLetterView.of(headers_of(msg), msg.timestamp()[1])
        to_topic = self.options.to_topic or view.original_topic
        dest = destination_for(self.settings, view, to_topic)
        limit_days = age_limit_days(dest)
        verdict = classify(
            view, self.options.filters, self.settings.dead_letter.max_replays, limit_days, self.now_ms()
        )
        where = {"partition": partition, "offset": offset, **loggable(view)}
        skipped_because = FILTERS
        if verdict is Verdict.REPLAY:
            if to_topic is None:  # no fboc.original.topic and no --to
                log.warning("replay_no_topic", **where)
                verdict, skipped_because = Verdict.SKIPPED, NO_ORIGINAL_TOPIC
            elif self.options.to_topic is None and to_topic not in self._sources:
                # the header names a topic fboc does not consume: never write there unasked
                # (the name itself is not logged: a header may hold anything)
                log.warning("replay_not_a_source_topic", **where)
                verdict, skipped_because = Verdict.SKIPPED, NOT_A_SOURCE_TOPIC
            elif header(headers_of(msg), TRUNCATED) is not None:  # not the record any more
                log.warning("replay_truncated", **where)
                verdict, skipped_because = Verdict.SKIPPED, TRUNCATED_VALUE
            else:
                self._partitions_of(to_topic)  # DlqError when it does not exist
        if verdict is Verdict.PARKED:
            log.info("replay_parked", replay_count=view.replay_count, **where)
        elif verdict is Verdict.TOO_OLD:
            log.info(
                "replay_too_old",
                limit_days=limit_days,
                age_days=round((self.now_ms() - view.event_time_proxy_ms) / 86_400_000, 1),
                **where,
            )
        if verdict is not Verdict.REPLAY or self._producer is None:
            self.tracker.track(tp, offset)
            self.tracker.done(tp, offset)
            self.summary.count(verdict, view.reason, skipped_because)
            self.attempts += verdict is Verdict.REPLAY
            return True
        assert to_topic is not None
        if not self._wait_for_rate():
            return False
        self.tracker.track(tp, offset)
        self._publish(msg, view, to_topic, tp, offset)
        return True

    def _wait_for_rate(self) -> bool:
        while (delay := self.pacer.delay(time.monotonic())) > 0:
            if self.stop.is_set():
                return False
            self._poll(min(delay, 0.1))
        return not self.stop.is_set()

    def _publish(
        self, msg: Message, view: DeadLetterView, to_topic: str, tp: tuple[str, int], offset: int
    ) -> None:
        producer = self._producer
        assert producer is not None

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self.summary.error = f"re-publish to {to_topic!r} failed: {err.name()}"
                log.error("replay_publish_failed", partition=tp[1], offset=offset, error=err.name())
                return
            self.tracker.done(tp, offset)
            self.summary.count(Verdict.REPLAY, view.reason)

        kwargs: dict[str, Any] = {
            "key": msg.key(),
            "value": msg.value(),
            "headers": replay_headers(headers_of(msg)),
            "on_delivery": delivered,
        }
        # the original timestamp: a dialect falling back on it gives the same event_time again
        if view.original_timestamp_ms is not None and view.original_timestamp_ms > 0:
            kwargs["timestamp"] = view.original_timestamp_ms
        partition = target_partition(view, to_topic, self._partitions[to_topic])
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(to_topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        self.attempts += 1
        self.pacer.sent(time.monotonic())

    def _partitions_of(self, topic: str) -> frozenset[int]:
        """The partitions of a topic re-published to; DlqError when it does not exist."""
        if topic not in self._partitions:
            self._partitions[topic] = frozenset(topic_partitions(self._consumer, topic))
        return self._partitions[topic]

    # -- acknowledgements and commits -----------------------------------------------------------

    def _poll(self, wait_s: float = 0.0) -> None:
        if self._producer is not None:
            self._producer.poll(wait_s)
        elif wait_s:
            time.sleep(wait_s)
        if time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S:
            self._commit()

    def _store_ends(self, ranges: Ranges) -> None:
        """Commit each partition's start with this run's end offsets, before anything is read: a
        run interrupted at any point is resumed up to these ends (`resume_ends`)."""
        self._stops = {p: stop for p, (_start, stop) in ranges.items()}
        if self.options.dry_run:
            return
        try:
            self._consumer.commit(
                offsets=[
                    TopicPartition(self.topic, p, start, metadata=end_metadata(stop))
                    for p, (start, stop) in ranges.items()
                ],
                asynchronous=False,
            )
        except KafkaException as exc:
            raise DlqError(f"cannot commit to group {self.group!r}: {kafka_error_name(exc)}") from None

    def _commit(self) -> None:
        """Synchronous: everything below the watermark is final (re-published and acknowledged,
        or left on the dead-letter topic as skipped, parked or too old)."""
        self._last_commit = time.monotonic()
        if self.options.dry_run:
            return
        offsets = self.tracker.to_commit()
        if not offsets:
            return
        try:
            self._consumer.commit(
                offsets=[
                    TopicPartition(t, p, o, metadata=end_metadata(self._stops.get(p, o)))
                    for (t, p), o in offsets.items()
                ],
                asynchronous=False,
            )
        except KafkaException as exc:
            log.warning("replay_commit_failed", error=kafka_error_name(exc))
            return
        self.tracker.committed(offsets)

    def _finish(self) -> None:
        if self._producer is not None:
            remaining = self._producer.flush(FLUSH_TIMEOUT_S)
            if remaining and not self.summary.error:
                self.summary.error = f"{remaining} re-publish(es) not acknowledged in time"
        self._commit()
        if not self.options.dry_run and self.tracker.to_commit():
            self.summary.error = self.summary.error or "the final commit failed"
