"""decode → dialect → route → batch: what happens to one record between the poll and the
request, and the grouping stage that only amperity uses (docs/dialects.md#amperity).

Every outcome goes to the record ledger (consumer/runtime/ledger.py); closed batches go to
dispatch. Nothing here raises but a `Fatal` (the breaker refusing a dead letter): a record whose
processing fails for a reason nobody foresaw is dead-lettered, never allowed to stop the loop
(docs/design.md invariant 4).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from consumer.adapters.codec import Decoder
from consumer.adapters.kafka.deadletter import TARGET_EVENT_SET, DeadLetter, header
from consumer.config.settings import DestinationSettings, SourceSettings
from consumer.core.batching import Batcher, BatchKey
from consumer.core.capi.event import Output, RecordContext
from consumer.core.dialects import Dialect
from consumer.core.encode import encode_event
from consumer.core.offsets import TopicPartition
from consumer.errors import Fatal, Filtered, InvalidMessage, Rejected, SchemaUnavailable
from consumer.runtime.dispatch import Dispatch
from consumer.runtime.ledger import Ledger, Owner, PendingRecord
from consumer.telemetry.metrics import METRICS

log = structlog.get_logger("fboc.pipeline")


@dataclass(frozen=True, slots=True)
class Route:
    """How records of one topic are handled."""

    source: SourceSettings
    dialect: Dialect
    decoder: Decoder
    destination: DestinationSettings


class Stages:
    """The per-record stages of the pipeline. `group_clock` is the loop's clock for the
    groupers' idle rule (Pipeline._group_clock); `now` the wall clock events are judged by."""

    def __init__(
        self,
        routes: dict[str, Route],
        ledger: Ledger,
        batcher: Batcher[Owner],
        dispatch: Dispatch,
        group_clock: Callable[[], float],
        now: Callable[[], float],
    ) -> None:
        self.routes = routes
        self.ledger = ledger
        self.batcher = batcher
        self.dispatch = dispatch
        self.group_clock = group_clock
        self.now = now
        self.groupers = {
            topic: route.dialect.grouping.grouper(route.destination.group_window_ms)
            for topic, route in routes.items()
            if route.dialect.grouping
        }

    def handle(self, record: PendingRecord, retry: bool = False) -> bool:
        """Settle one record (delivered through a batch, filtered or dead-lettered), or hold it
        when the cause is outside it; nothing but a `Fatal` escapes. False when it was held."""
        if not retry and record.tp[0] in self.groupers and self.ledger.held(record.tp):
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

    def retry_held(self) -> None:
        """Held records in their order, until one is held again (the decoder backs off, so
        that costs no request while the registry is still down)."""
        while (record := self.ledger.release()) is not None:
            if not self.handle(record, retry=True):
                return

    def _settle(self, record: PendingRecord) -> None:
        src, tp, offset = record.src, record.tp, record.offset
        route = self.routes[tp[0]]
        grouper = self.groupers.get(tp[0])
        if grouper is not None:  # every record moves its partition's record time on
            grouper.seen(tp, offset, src.timestamp_ms, self.group_clock())
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
                self.groupers[tp[0]].add(tp, key, part, record, offset, src.timestamp_ms)
                return
            outputs = route.dialect.transform(payload, ctx, route.destination, int(self.now()))
            if src.headers:  # a replayed dead letter's header names its event set
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

    def emit_groups(self) -> None:
        """Closed groups become events owned by all their records; the ledger learns their
        span, so no commit lands inside it (a replay then regroups the same rows)."""
        now_ms = self.group_clock()
        for topic, grouper in self.groupers.items():
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
                except Exception as exc:  # as in _settle(): never stop the partition
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

    def open_rows(self, tp: TopicPartition | None = None) -> int:
        """Rows waiting in open groups: they wait for records still unread, so the buffer cap
        does not count them (bounded by the groupers' span cap instead)."""
        rows = 0
        for grouper in self.groupers.values():
            rows += grouper.open_rows(tp)
        return rows

    def release_groups(self, tps: list[TopicPartition]) -> None:
        """The partitions went: their groups are dropped unsent and uncommitted."""
        for grouper in self.groupers.values():
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

    def flush(self) -> None:
        """Send what is closed. Open groups are not sent early: their rows stay uncommitted and
        are read again, whole, by the next run or owner of their partition."""
        self.emit_groups()
        for batch in self.batcher.drain():
            self.dispatch.send(batch)


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
