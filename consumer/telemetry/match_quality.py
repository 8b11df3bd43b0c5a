"""Match quality, measured locally: which customer keys the events fboc sends carry.

Counted per destination and event set when events are batched (after normalisation, so a value
the normaliser dropped does not count), exported as two metric families:

- `fboc_match_key_events_total{destination,event_set_id,key}`: events that carried the key;
- `fboc_match_keys_per_event{destination,event_set_id}`: a histogram of keys per event (its
  `_count` is the number of events).

`key` takes only the values of MATCH_KEYS; a user_data key outside it is not counted. The hot path
does one dictionary update per event (keyed by the event's key set as a bit mask); the families
are built when /metrics is scraped. `fboc preview --summary` prints the same counts as a table.
This is not Meta's Event Match Quality score: see the README ("Match quality").
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class HasEvent(Protocol):
    """What is counted: core's `Output` (telemetry sits below core, so it does not import it)."""

    @property
    def event_set_id(self) -> str: ...

    @property
    def event(self) -> Mapping[str, Any]: ...


class _Line(NamedTuple):
    event_set_id: str
    event: Mapping[str, Any]


# normalize.HASHED_KEYS + PLAIN_KEYS (a unit test keeps them equal), written out so that importing
# this module (telemetry does) does not load the normaliser's phone and country tables.
MATCH_KEYS: tuple[str, ...] = (
    "em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id",
    "client_ip_address", "client_user_agent", "fbc", "fbp", "madid", "lead_id",
)  # fmt: skip
HASHED_KEYS = MATCH_KEYS[:11]
_BITS: dict[str, int] = {key: 1 << i for i, key in enumerate(MATCH_KEYS)}
# Key tuples seen (in the order the normaliser writes them) → their mask. Bounded: past this many
# distinct tuples the mask is computed each time instead of remembered.
MAX_REMEMBERED_KEY_SETS = 4096
KEY_EVENTS = "fboc_match_key_events_total"
KEYS_PER_EVENT = "fboc_match_keys_per_event"
# Why the normaliser drops a value (it reports the key only; these are its rules per key).
DROP_REASONS: dict[str, str] = {
    "em": "not an email address",
    "ph": "not a valid phone number (for its country or default_country)",
    "fn": "no letters left",
    "ln": "no letters left",
    "ct": "no letters left",
    "ge": "not m/f/male/female",
    "db": "not a date (YYYYMMDD, YYYY-MM-DD, MM/DD/YYYY) between 1900 and the event's year",
    "st": "nothing left after normalisation",
    "zp": "nothing left after normalisation",
    "country": "not a known country code or name",
    "external_id": "empty",
}
HASHING_OFF_REASON = "hashing is off for this destination: only pre-hashed values are sent"


def key_mask(keys: Iterable[str]) -> int:
    mask = 0
    for key in keys:
        mask |= _BITS.get(key, 0)
    return mask


class MatchQuality(Collector):
    """Events per (destination, event set, key mask); a Prometheus collector of them."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        self._masks: dict[tuple[str, ...], int] = {}

    def count(self, destination: str, outputs: Sequence[HasEvent]) -> None:
        counts = self.counts
        event: Mapping[str, Any] | None = None
        mask = 0
        for out in outputs:
            if out.event is not event:  # the event sets of one event share its object
                event = out.event
                mask = self._mask(event.get("user_data"))
            slot = (destination, out.event_set_id, mask)
            counts[slot] = counts.get(slot, 0) + 1

    def _mask(self, user_data: Any) -> int:
        keys = tuple(user_data) if isinstance(user_data, dict) else ()
        mask = self._masks.get(keys)
        if mask is None:
            mask = key_mask(keys)
            if len(self._masks) < MAX_REMEMBERED_KEY_SETS:
                self._masks[keys] = mask
        return mask

    def event_sets(self) -> dict[tuple[str, str], dict[int, int]]:
        """{(destination, event set): {key mask: events}}, in the order first seen."""
        found: dict[tuple[str, str], dict[int, int]] = {}
        for (destination, event_set_id, mask), n in list(self.counts.items()):
            found.setdefault((destination, event_set_id), {})[mask] = n
        return found

    def describe(self) -> Iterable[Metric]:
        return [
            CounterMetricFamily(KEY_EVENTS, "", labels=()),
            HistogramMetricFamily(KEYS_PER_EVENT, "", labels=()),
        ]

    def collect(self) -> Iterable[Metric]:
        keys = CounterMetricFamily(
            KEY_EVENTS,
            "Events batched for sending that carried this customer key",
            labels=["destination", "event_set_id", "key"],
        )
        per_event = HistogramMetricFamily(
            KEYS_PER_EVENT,
            "Customer keys per event batched for sending",
            labels=["destination", "event_set_id"],
        )
        for (destination, event_set_id), masks in self.event_sets().items():
            stats = KeyStats.of(masks)
            for key in MATCH_KEYS:
                keys.add_metric([destination, event_set_id, key], stats.with_key[key])
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for n in range(len(MATCH_KEYS) + 1):
                cumulative += stats.by_size.get(n, 0)
                buckets.append((f"{n}.0", cumulative))
            buckets.append(("+Inf", stats.events))
            per_event.add_metric(
                [destination, event_set_id], buckets, sum(n * c for n, c in stats.by_size.items())
            )
        return [keys, per_event]


@dataclass(frozen=True)
class KeyStats:
    """One event set's counts: events, events with each key, events by number of keys."""

    events: int
    with_key: dict[str, int]
    by_size: dict[int, int]

    @classmethod
    def of(cls, masks: Mapping[int, int]) -> KeyStats:
        with_key = dict.fromkeys(MATCH_KEYS, 0)
        by_size: dict[int, int] = {}
        for mask, n in masks.items():
            size = 0
            for key, bit in _BITS.items():
                if mask & bit:
                    with_key[key] += n
                    size += 1
            by_size[size] = by_size.get(size, 0) + n
        return cls(sum(masks.values()), with_key, by_size)

    def median_keys(self) -> float:
        sizes: list[int] = []
        for size, n in sorted(self.by_size.items()):
            sizes.extend([size] * n)
        return float(statistics.median(sizes)) if sizes else 0.0


def dropped_counts(registry: CollectorRegistry) -> dict[str, int]:
    """fboc_normalization_dropped_total by key, as the process has counted it so far."""
    counts: dict[str, int] = {}
    for key in HASHED_KEYS:
        value = registry.get_sample_value("fboc_normalization_dropped_total", {"key": key})
        counts[key] = int(value or 0)
    return counts


def preview_summary(
    lines: Iterable[bytes], destination: str, dropped: Mapping[str, int], hashing: bool
) -> Iterator[str]:
    """`fboc preview --summary`, from `fboc preview`'s own output lines: one table per event set,
    the records without events by reason, then what normalisation dropped."""
    quality = MatchQuality()
    records: set[int] = set()
    with_events: set[int] = set()
    outcomes: dict[str, int] = {}
    for line in lines:
        item = orjson.loads(line)
        records.add(item["index"])
        if "event" in item:
            with_events.add(item["index"])
            quality.count(destination, [_Line(item["event_set_id"], item["event"])])
        else:
            outcome = "filtered" if "filtered" in item else "rejected"
            label = f"{outcome}: {item[outcome]['reason']}"
            outcomes[label] = outcomes.get(label, 0) + 1
    yield f"records: {len(records)}; with events: {len(with_events)}"
    for label, n in sorted(outcomes.items()):
        yield f"  {label}: {n}"
    event_sets = quality.event_sets()
    if not event_sets:
        yield "no events: nothing to measure"
    for (destination, event_set_id), masks in event_sets.items():
        stats = KeyStats.of(masks)
        yield ""
        yield f"event set {event_set_id} (destination {destination}): {stats.events} events"
        yield f"  {'key':<20}{'events':>8}{'share':>8}"
        for key in MATCH_KEYS:
            n = stats.with_key[key]
            yield f"  {key:<20}{n:>8}{_percent(n, stats.events):>8}"
        yield (
            f"  keys per event: median {stats.median_keys():g}, "
            f"min {min(stats.by_size)}, max {max(stats.by_size)}"
        )
    yield ""
    if not any(dropped.values()):
        yield "dropped by normalisation: none"
    else:
        yield "dropped by normalisation (records with a value that could not be normalised):"
        for key in MATCH_KEYS:
            if dropped.get(key):
                reason = DROP_REASONS.get(key, "") if hashing else HASHING_OFF_REASON
                yield f"  {key:<20}{dropped[key]:>8}  {reason}"
    yield ""
    yield "Meta's Event Match Quality weighs em, ph, external_id, fbp/fbc and"
    yield "client_ip_address + client_user_agent most; these are local counts, not Meta's score."


def _percent(n: int, total: int) -> str:
    return f"{100 * n / total:.0f}%" if total else "-"
