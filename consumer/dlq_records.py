"""What a dead letter says, and what `fboc dlq` does with it (docs/operations.md): pure functions, no I/O.

The rule for "too old" (a replay cannot decode the record, so it cannot know its event_time): the
original Kafka timestamp (`fboc.original.timestamp`, else the dead letter's own timestamp) is
compared with the window of the destination that would receive it again: min(max_event_age_days,
Meta's limit for its action_source: 7 days, 62 for physical_store). Producers write an event after
it happens, so a record whose Kafka timestamp is past the window holds an event that is past it too.
The converse does not hold: a recent record may carry an old event_time; fboc then dead-letters it
again as `event_too_old` (with its replay count one higher), so nothing is lost.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from consumer.capi.rules import DAY, META_DEFAULT_MAX_AGE_DAYS, META_MAX_AGE_DAYS
from consumer.config import DestinationSettings, Settings
from consumer.kafka.deadletter import (
    HEADER_PREFIX,
    REPLAY_COUNT,
    TARGET_EVENT_SET,
    HeaderPairs,
    Headers,
    header,
)

STAGE = "fboc.error.stage"
REASON = "fboc.error.reason"
DESTINATION = "fboc.destination"
EVENT_SET = "fboc.event_set_id"
ORIGINAL_TOPIC = "fboc.original.topic"
ORIGINAL_PARTITION = "fboc.original.partition"
ORIGINAL_TIMESTAMP = "fboc.original.timestamp"
FAILED_AT = "fboc.failed_at"
UNKNOWN = "unknown"
AGE_BUCKETS = ((3_600_000, "<1h"), (86_400_000, "<1d"), (7 * 86_400_000, "<7d"))
OLDER = "older"


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def iso_ms(text: str | None) -> int | None:
    """ISO 8601 (naive = UTC) → unix ms; None when absent or not a time."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """The `fboc.*` headers of one dead letter, plus its own Kafka timestamp."""

    reason: str
    stage: str
    destination: str | None
    event_set_id: str | None
    original_topic: str | None
    original_partition: int | None
    original_timestamp_ms: int | None
    failed_at_ms: int | None
    replay_count: int
    timestamp_ms: int  # the dead letter's own Kafka timestamp (when it was written)

    @classmethod
    def of(cls, headers: HeaderPairs, timestamp_ms: int) -> DeadLetterView:
        return cls(
            reason=header(headers, REASON) or UNKNOWN,
            stage=header(headers, STAGE) or UNKNOWN,
            destination=header(headers, DESTINATION),
            event_set_id=header(headers, EVENT_SET),
            original_topic=header(headers, ORIGINAL_TOPIC),
            original_partition=_int(header(headers, ORIGINAL_PARTITION)),
            original_timestamp_ms=_int(header(headers, ORIGINAL_TIMESTAMP)),
            failed_at_ms=iso_ms(header(headers, FAILED_AT)),
            replay_count=max(0, _int(header(headers, REPLAY_COUNT)) or 0),
            timestamp_ms=timestamp_ms,
        )

    @property
    def event_time_proxy_ms(self) -> int:
        """The original record's timestamp, the best stand-in for event_time without decoding."""
        return self.original_timestamp_ms if self.original_timestamp_ms is not None \
            else self.timestamp_ms

    @property
    def failed_ms(self) -> int:
        return self.failed_at_ms if self.failed_at_ms is not None else self.timestamp_ms


def age_bucket(age_ms: int) -> str:
    for limit, name in AGE_BUCKETS:
        if age_ms < limit:
            return name
    return OLDER


def replay_headers(headers: HeaderPairs) -> Headers:
    """The original headers (order and bytes kept), `fboc.replay_count` + 1 and, for a record
    dead-lettered for one event set, `fboc.target.event_set_id`; every other `fboc.*` removed."""
    count = max(0, _int(header(headers, REPLAY_COUNT)) or 0)
    target = header(headers, EVENT_SET) if header(headers, STAGE) == "deliver" else None
    target = target or header(headers, TARGET_EVENT_SET)
    out: Headers = [(k, v) for k, v in headers if not k.startswith(HEADER_PREFIX)]
    out.append((REPLAY_COUNT, str(count + 1).encode()))
    if target:
        out.append((TARGET_EVENT_SET, target.encode()))
    return out


def parse_time_arg(text: str) -> int:
    """`--since` / `--until`: unix milliseconds (digits) or ISO 8601 (naive = UTC)."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    ms = iso_ms(value)
    if ms is None:
        raise ValueError(f"not unix milliseconds or an ISO 8601 time: {text!r}")
    return ms


def parse_rate(text: str) -> float:
    """`--rate`: records per second, `200` or `200/s`."""
    value = text.strip().removesuffix("/s")
    try:
        rate = float(value)
    except ValueError:
        raise ValueError(f"not a rate (records per second): {text!r}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"the rate must be a positive number: {text!r}")
    return rate


@dataclass(frozen=True, slots=True)
class Filters:
    """`--reason` (any of), `--event-set`, and `--since` ≤ dead letter's timestamp < `--until`."""

    reasons: frozenset[str] = frozenset()
    event_set_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, view: DeadLetterView) -> bool:
        if self.reasons and view.reason not in self.reasons:
            return False
        if self.event_set_id is not None and view.event_set_id != self.event_set_id:
            return False
        if self.since_ms is not None and view.timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or view.timestamp_ms < self.until_ms


def age_limit_days(dest: DestinationSettings | None) -> int:
    """The destination's window: its max_event_age_days within Meta's limit for its
    action_source; Meta's default (7 days) when the destination is unknown."""
    if dest is None:
        return META_DEFAULT_MAX_AGE_DAYS
    meta = META_MAX_AGE_DAYS.get(dest.action_source, META_DEFAULT_MAX_AGE_DAYS)
    return min(dest.max_event_age_days, meta)


def destination_for(settings: Settings, view: DeadLetterView,
                    to_topic: str | None) -> DestinationSettings | None:
    """Where a re-published record would go: the destination it failed for, else the one of the
    source that reads the topic it is re-published to."""
    names = {d.name for d in settings.destinations}
    if view.destination in names:
        return settings.destination(view.destination)
    topic = to_topic or view.original_topic
    source = next((s for s in settings.sources if s.topic == topic), None)
    return settings.destination(source.destination) if source is not None else None


def too_old(view: DeadLetterView, limit_days: int, now_ms: int) -> bool:
    return view.event_time_proxy_ms < now_ms - limit_days * DAY * 1000


class Verdict(Enum):
    REPLAY = "replayed"
    PARKED = "parked"
    TOO_OLD = "too_old"
    SKIPPED = "skipped"


def classify(view: DeadLetterView, filters: Filters, max_replays: int, limit_days: int,
             now_ms: int) -> Verdict:
    """Filters first (skipped), then the replay budget (parked), then Meta's window (too old)."""
    if not filters.matches(view):
        return Verdict.SKIPPED
    if view.replay_count >= max_replays:
        return Verdict.PARKED
    if too_old(view, limit_days, now_ms):
        return Verdict.TOO_OLD
    return Verdict.REPLAY


def target_partition(view: DeadLetterView, to_topic: str, partitions: Collection[int]) -> int | None:
    """Back to the original partition when re-published to the original topic (per-key order and
    grouping stay as they were); otherwise the producer's partitioner decides."""
    if to_topic != view.original_topic or view.original_partition not in partitions:
        return None
    return view.original_partition


class Pacer:
    """`--rate`: how long to wait before the next re-publish, given a monotonic clock reading."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next: float | None = None

    def delay(self, now: float) -> float:
        return 0.0 if self._next is None else max(0.0, self._next - now)

    def sent(self, now: float) -> None:
        if self.interval:
            start = now if self._next is None else max(self._next, now)
            self._next = start + self.interval


@dataclass
class ReplaySummary:
    """What a replay did (a dry run: what it would do), for the summary and its JSON."""

    topic: str
    group: str
    dry_run: bool
    to_topic: str | None
    counts: Counter[str] = field(default_factory=Counter)  # by Verdict value
    by_reason: defaultdict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter))
    interrupted: bool = False
    limit_reached: bool = False
    error: str | None = None

    def count(self, verdict: Verdict, reason: str) -> None:
        self.counts[verdict.value] += 1
        if verdict is not Verdict.SKIPPED:
            self.by_reason[reason][verdict.value] += 1

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "group": self.group, "dry_run": self.dry_run,
                "to": self.to_topic,
                **{v.value: self.counts[v.value] for v in Verdict},
                "by_reason": {r: dict(c) for r, c in sorted(self.by_reason.items())},
                "interrupted": self.interrupted, "limit_reached": self.limit_reached,
                "error": self.error}
