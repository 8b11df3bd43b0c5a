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
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from consumer.adapters.kafka.deadletter import (
    HEADER_PREFIX,
    REPLAY_COUNT,
    TARGET_EVENT_SET,
    HeaderPairs,
    Headers,
    header,
)
from consumer.config.settings import DestinationSettings, Settings
from consumer.core.capi.rules import DAY, META_DEFAULT_MAX_AGE_DAYS, META_MAX_AGE_DAYS

STAGE = "fboc.error.stage"
REASON = "fboc.error.reason"
DESTINATION = "fboc.destination"
EVENT_SET = "fboc.event_set_id"
ORIGINAL_TOPIC = "fboc.original.topic"
ORIGINAL_PARTITION = "fboc.original.partition"
ORIGINAL_TIMESTAMP = "fboc.original.timestamp"
FAILED_AT = "fboc.failed_at"
UNKNOWN = "unknown"
MAX_TIME_MS = 4_102_444_800_000  # 2100-01-01 UTC: times on a dead letter or in a flag lie before
MAX_PARTITION = 2**31 - 1
# The end offset of the replay run a commit belongs to, in the commit's metadata (see `resume_ends`)
END_METADATA = "fboc.replay.end="
AGE_BUCKETS = ((3_600_000, "<1h"), (86_400_000, "<1d"), (7 * 86_400_000, "<7d"))
OLDER = "older"


def _int(text: str | None, high: int | None = None) -> int | None:
    """ASCII digits (a sign allowed) within [0, high] (when given) → int; None otherwise."""
    if text is None or not text.isascii() or len(text) > 24:
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if high is None or 0 <= value <= high else None


def iso_ms(text: str | None) -> int | None:
    """ISO 8601 (naive = UTC) → unix ms; None when absent, not a time or beyond 1970..2100."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ms = int(parsed.timestamp() * 1000)
    except (ValueError, OverflowError):
        return None
    return ms if 0 <= ms < MAX_TIME_MS else None


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
            original_partition=_int(header(headers, ORIGINAL_PARTITION), MAX_PARTITION),
            original_timestamp_ms=_int(header(headers, ORIGINAL_TIMESTAMP), MAX_TIME_MS),
            failed_at_ms=iso_ms(header(headers, FAILED_AT)),
            replay_count=max(0, _int(header(headers, REPLAY_COUNT)) or 0),
            timestamp_ms=timestamp_ms,
        )

    @property
    def event_time_proxy_ms(self) -> int:
        """The original record's timestamp, the best stand-in for event_time without decoding."""
        return self.original_timestamp_ms if self.original_timestamp_ms is not None else self.timestamp_ms

    @property
    def failed_ms(self) -> int:
        return self.failed_at_ms if self.failed_at_ms is not None else self.timestamp_ms


_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ID = re.compile(r"[0-9]{1,32}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's topic names; destination names fit too
MALFORMED = "(malformed)"
OTHER = "(other)"
MAX_SHOWN_VALUES = 1_000  # distinct values counted per column of `dlq stats` / a replay summary


def _shaped(value: str, kind: str, otherwise: str) -> str:
    """`value` when it has its field's shape (`kind`: "code", "id" or "name"), else `otherwise`."""
    shape = _CODE if kind == "code" else _ID if kind == "id" else _NAME
    return value if shape.fullmatch(value) else otherwise


def shown(value: str, kind: str) -> str:
    """A header value as `dlq stats` and the replay summary count and print it. Anyone who can
    write to the topic writes the headers, so a value that does not have its field's shape
    (`kind`: "code", "id" or "name") is counted as "(malformed)": terminal escapes, markup or
    customer data in a forged header never reach the operator's screen."""
    return _shaped(value, kind, MALFORMED)


def bounded(counts: Mapping[str, object], value: str) -> str:
    """`value`, or "(other)" once `counts` holds MAX_SHOWN_VALUES others: memory stays bounded
    however many distinct (well-shaped) values a topic holds."""
    return value if value in counts or len(counts) < MAX_SHOWN_VALUES else OTHER


def loggable(view: DeadLetterView) -> dict[str, str | None]:
    """A dead letter's reason and event set, as log fields: headers may hold anything (anyone who
    can write to the topic writes them), so only a reason code and a numeric ID are logged."""
    event_set = view.event_set_id
    return {
        "reason": _shaped(view.reason, "code", UNKNOWN),
        "event_set_id": None if event_set is None else _shaped(event_set, "id", UNKNOWN),
    }


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
    """`--since` / `--until`: unix milliseconds (ASCII digits) or ISO 8601 (naive = UTC), from
    1970 to 2100."""
    value = text.strip()
    ms = _int(value, MAX_TIME_MS - 1) if value.isascii() and value.isdigit() else iso_ms(value)
    if ms is None:
        raise ValueError(f"not unix milliseconds or an ISO 8601 time between 1970 and 2100: {text[:40]!r}")
    return ms


def end_metadata(end: int) -> str:
    return f"{END_METADATA}{end}"


def stored_end(metadata: str | None) -> int | None:
    """The end offset a replay run stored with its commit; None for any other metadata."""
    if not metadata or not metadata.startswith(END_METADATA):
        return None
    return _int(metadata.removeprefix(END_METADATA), 2**63 - 1)


def resume_ends(committed: dict[int, tuple[int, int | None]]) -> dict[int, int] | None:
    """Where a replay stops, from its group's committed (offset, stored end) per partition.

    Each run stores its end offsets with its commits. While some partition's committed offset is
    below the end its run stored, that run is unfinished: this run resumes it and stops at those
    ends (a partition without one: at its committed offset), so the dead letters written since,
    such as fboc's own from the records the first run re-published, wait for the next run. None:
    no run is unfinished, read to the current end offsets."""
    if not any(end is not None and offset < end for offset, end in committed.values()):
        return None
    return {p: end if end is not None else max(0, offset) for p, (offset, end) in committed.items()}


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


def destination_for(
    settings: Settings, view: DeadLetterView, to_topic: str | None
) -> DestinationSettings | None:
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


# why a dead letter was skipped
FILTERS = "filters"  # --reason / --event-set / --since / --until
NO_ORIGINAL_TOPIC = "no_original_topic"  # no fboc.original.topic header, and no --to
NOT_A_SOURCE_TOPIC = "not_a_source_topic"  # its original topic is no source's, and no --to
TRUNCATED_VALUE = "truncated"  # written cut to fit the topic (fboc.truncated): not the record


class Verdict(Enum):
    REPLAY = "replayed"
    PARKED = "parked"
    TOO_OLD = "too_old"
    SKIPPED = "skipped"


def classify(
    view: DeadLetterView, filters: Filters, max_replays: int, limit_days: int, now_ms: int
) -> Verdict:
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
    skipped_by: Counter[str] = field(default_factory=Counter)  # why, for Verdict.SKIPPED
    by_reason: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    interrupted: bool = False
    limit_reached: bool = False
    resumed: bool = False
    error: str | None = None

    def count(self, verdict: Verdict, reason: str, skipped_because: str = FILTERS) -> None:
        self.counts[verdict.value] += 1
        if verdict is Verdict.SKIPPED:
            self.skipped_by[skipped_because] += 1
        else:
            shown_reason = bounded(self.by_reason, shown(reason, "code"))
            self.by_reason[shown_reason][verdict.value] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "group": self.group,
            "dry_run": self.dry_run,
            "to": self.to_topic,
            **{v.value: self.counts[v.value] for v in Verdict},
            "skipped_by": dict(sorted(self.skipped_by.items())),
            "by_reason": {r: dict(c) for r, c in sorted(self.by_reason.items())},
            "interrupted": self.interrupted,
            "limit_reached": self.limit_reached,
            "resumed": self.resumed,
            "error": self.error,
        }
