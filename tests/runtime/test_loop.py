"""The loop's behaviours under pressure, on in-memory ports (tests/runtime/memory.py): what a
saturated destination, a revocation mid-batch, a dead-letter flood, an unacknowledged dead
letter and a hung destination at shutdown do to reading and to commits (docs/design.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import orjson
import pytest
from structlog.testing import capture_logs

from consumer.config.settings import Settings
from consumer.core.capi.event import Output
from consumer.core.dialects import Dialect, Grouping
from consumer.core.dialects.amperity.grouper import OrderGrouper
from consumer.core.offsets import TopicPartition
from consumer.errors import DeadLetterBreakerTripped
from consumer.runtime.pipeline import Pipeline
from consumer.runtime.stages import Route
from tests.runtime.memory import (
    DIALECT,
    EVENT_SET,
    TOPIC,
    Answer,
    MemoryDestination,
    MemorySink,
    MemorySource,
    Running,
    pipeline,
    records,
    settings,
)

P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
LINGER_FOREVER = {"max_events": 1000, "linger_ms": 3_600_000}


def one_event_batches(**batching: int) -> dict[str, int]:
    return {"max_events": 1, "linger_ms": 0, **batching}


def ids(partition: int, offsets: Iterable[int]) -> list[str]:
    return [f"{partition}-{o}" for o in offsets]


async def test_saturated_destination_stops_reading_until_a_slot_frees() -> None:
    """Every request slot taken and batches waiting behind them: the loop stops polling, so
    the records stay in Kafka instead of the buffer; once answers come it reads on."""
    config = settings(batching=one_event_batches(max_in_flight=2), service={"commit_interval_ms": 10})
    source = MemorySource(records(0, range(40)), per_poll=1)
    destination = MemoryDestination({i: Answer.HANG for i in ids(0, range(40))})
    pipe = pipeline(config, source, MemorySink(), destination)
    async with Running(pipe) as loop:
        # 2 requests in flight, 1 batch waiting (half a round): saturated
        await loop.until("saturation", lambda: len(destination.requests) == 2 and source.read >= 3)
        polls = source.polls
        await asyncio.sleep(0.06)  # more than one turn's wait for a delivery
        assert source.read == 3, "read on while every slot was taken"
        assert source.polls == polls, "polled while saturated"
        assert destination.max_in_flight == 2
        destination.release()
        await loop.until("everything committed", lambda: source.committed(P0) == 40)
    assert sorted(destination.delivered) == sorted(ids(0, range(40)))


async def test_buffer_cap_pauses_the_partitions_and_bounds_what_is_read() -> None:
    """`batching.max_buffered_records` records not final: the partitions are paused and no
    more is read (polling goes on, for the group), until half of them are final."""
    config = settings(
        batching=one_event_batches(max_in_flight=100, max_buffered_records=5),
        service={"commit_interval_ms": 10},
    )
    source = MemorySource(records(0, range(40)))
    destination = MemoryDestination({i: Answer.HANG for i in ids(0, range(40))})
    peak = 0

    def probe() -> None:
        nonlocal peak
        peak = max(peak, source.read - len(destination.delivered))

    source.after_poll = probe
    pipe = pipeline(config, source, MemorySink(), destination)
    async with Running(pipe) as loop:
        await loop.until("the pause", lambda: source.paused == {P0})
        polls = source.polls
        await loop.until("a few more polls", lambda: source.polls >= polls + 5)
        assert source.read == 5
        destination.release()
        await loop.until("everything committed", lambda: source.committed(P0) == 40)
    assert peak <= 5
    assert not source.paused


async def test_revocation_mid_batch_flushes_waits_and_commits_only_what_is_final() -> None:
    """A revoked partition's lingering batch is sent at once and waited for; the synchronous
    commit for it stops at its first record that is not final (a dead letter not yet
    acknowledged), covers no other partition, and nothing of it is committed afterwards."""
    config = settings(
        batching=LINGER_FOREVER,
        # the release waits for the partition's records up to this minus one second
        service={"commit_interval_ms": 10, "shutdown_deadline_seconds": 1.05},
    )
    feed = [*records(0, range(3)), *records(0, [3], reject=True), *records(0, range(4, 6))]
    source = MemorySource([*feed, *records(1, range(6))])
    sink = MemorySink(auto_ack=False)
    # a slow answer for p0: the release must wait for it, not commit before it came
    destination = MemoryDestination({i: Answer.THROTTLE for i in ids(0, range(6))}, throttle_s=0.01)
    pipe = pipeline(config, source, sink, destination)
    async with Running(pipe) as loop:
        await loop.until("all read", lambda: source.read == 12 and len(sink.writes) == 1)
        assert destination.requests == [], "nothing is sent before the linger time"
        source.revoke([P0])
        await loop.until("the revocation's commit", lambda: any(sync for _, sync in source.commits))
        [released] = [offsets for offsets, sync in source.commits if sync]
        assert released == {P0: 3}
        assert set(ids(0, [0, 1, 2, 4, 5])) <= set(destination.delivered)
        sink.ack(3)  # too late: the partition is another consumer's now
        await loop.until("p1 committed", lambda: source.committed(P1) == 6)
    assert all(offsets.get(P0, 0) <= 3 for offsets, _ in source.commits)
    assert source.finished is not None
    assert P0 not in source.finished


async def test_lost_partition_is_not_committed_even_once_its_records_are_final() -> None:
    """A lost partition may be read by another consumer already: nothing of it is committed,
    neither at once nor when its records become final later."""
    config = settings(batching=one_event_batches(), service={"commit_interval_ms": 10})
    source = MemorySource([*records(0, [0], reject=True), *records(0, range(1, 3)), *records(1, range(3))])
    sink = MemorySink(auto_ack=False)
    pipe = pipeline(config, source, sink, MemoryDestination())
    async with Running(pipe) as loop:
        await loop.until("p1 committed", lambda: source.committed(P1) == 3 and len(sink.writes) == 1)
        source.lose([P0])
        await loop.until("the loss", lambda: P0 not in source.assignment())
        sink.ack(0)
        await asyncio.sleep(0.03)  # three commit intervals
    assert all(offsets.get(P0, 0) == 0 for offsets, _ in source.commits), source.commits
    assert source.finished is not None
    assert P0 not in source.finished


async def test_breaker_trip_stops_the_loop_and_commits_nothing_from_the_refused_record_on() -> None:
    """Three dead letters in a row (max_consecutive=3): the breaker refuses the third (not
    written, not final) and the loop stops there; the records after it in the same poll are
    not handled, and the last commit stops before the refused one."""
    config = settings(
        batching=one_event_batches(),
        dead_letter={"breaker": {"max_consecutive": 3}},
        service={"commit_interval_ms": 10},
    )
    feed = [*records(0, range(2)), *records(0, range(2, 5), reject=True), *records(0, range(5, 10))]
    source = MemorySource(feed)
    sink = MemorySink()
    destination = MemoryDestination()
    pipe = pipeline(config, source, sink, destination)
    with pytest.raises(DeadLetterBreakerTripped, match="3 consecutive dead letters"):
        await asyncio.wait_for(pipe.run(asyncio.Event()), 2)
    assert sink.offsets() == [2, 3]
    assert sorted(destination.delivered) == ids(0, range(2))
    assert source.finished == {P0: 4}
    assert all(offsets[P0] <= 4 for offsets, _ in source.commits)


async def test_dead_letter_is_committable_only_once_the_sink_acknowledged_it() -> None:
    """Records after a dead letter are delivered, yet the commit stays before the dead letter
    until the dead-letter topic acknowledged it; then it moves past all of them."""
    config = settings(batching=one_event_batches(), service={"commit_interval_ms": 10})
    source = MemorySource([*records(0, [0], reject=True), *records(0, range(1, 5))])
    sink = MemorySink(auto_ack=False)
    destination = MemoryDestination()
    pipe = pipeline(config, source, sink, destination)
    async with Running(pipe) as loop:
        await loop.until("the later records delivered", lambda: len(destination.delivered) == 4)
        await asyncio.sleep(0.03)  # three commit intervals
        assert all(offsets[P0] == 0 for offsets, _ in source.commits), source.commits
        sink.ack(0)
        await loop.until("the commit past them", lambda: source.committed(P0) == 5)


async def test_failed_events_are_dead_lettered_with_their_reason_then_committed() -> None:
    """An invalid event and one whose retries ran out cost only their own records: dead-
    lettered with the destination's reason, the rest delivered, everything committed."""
    config = settings(batching={"max_events": 5, "linger_ms": 0}, service={"commit_interval_ms": 10})
    source = MemorySource(records(0, range(5)))
    sink = MemorySink()
    destination = MemoryDestination({"0-1": Answer.INVALID, "0-3": Answer.SERVER_ERROR})
    pipe = pipeline(config, source, sink, destination)
    async with Running(pipe) as loop:
        await loop.until("everything committed", lambda: source.committed(P0) == 5)
    assert sorted(destination.delivered) == ids(0, range(0, 5, 2))
    assert [(w.src.offset, w.dl.stage, w.dl.reason) for w in sink.writes] == [
        (1, "deliver", "graph_invalid_event"),
        (3, "deliver", "graph_retries_exhausted"),
    ]


async def test_shutdown_with_a_hung_destination_stops_within_the_deadline() -> None:
    """A request that never answers: stopping takes the shutdown deadline, not longer, and the
    final commit stops before the record it carries (the others are committed)."""
    deadline = 0.1
    config = settings(
        batching=one_event_batches(),
        service={"commit_interval_ms": 10, "shutdown_deadline_seconds": deadline},
    )
    source = MemorySource(records(0, range(5)))
    destination = MemoryDestination({"0-2": Answer.HANG})
    pipe = pipeline(config, source, MemorySink(), destination)
    loop = Running(pipe, stop_within_s=deadline + 1)
    async with loop:
        await loop.until("the others delivered", lambda: len(destination.delivered) == 4)
        assert destination.in_flight == 1
        started = time.monotonic()
    took = time.monotonic() - started
    assert deadline <= took < deadline + 0.5
    assert source.finished == {P0: 2}
    assert all(offsets[P0] <= 2 for offsets, _ in source.commits)
    assert destination.in_flight == 0, "the hung request was not cancelled"


def _grouped_pipeline(config: Settings, source: MemorySource, sink: MemorySink) -> Pipeline:
    """The memory dialect with a grouping stage (the real OrderGrouper, window 0: every record a
    group of its own) whose events have no event name, so each group is dead-lettered as it is
    batched."""
    grouping = Grouping(
        check=lambda payload, ctx, dest, now: payload,
        key=lambda part: str(part["id"]),
        emit=lambda parts, dest, now: [Output(EVENT_SET, {"event_id": parts[0]["id"]})],
        preview=lambda payloads, dest, now: [],
        grouper=OrderGrouper,
    )
    dialect = Dialect("memory-grouped", DIALECT.transform, grouping=grouping)
    source_settings = config.sources[0].model_copy(update={"dialect": "amperity"})
    destination = config.destination("main").model_copy(update={"group_window_ms": 0})
    route = Route(source_settings, dialect, orjson.loads, destination)
    return Pipeline(config, {TOPIC: route}, {"main": MemoryDestination()}, sink, source)


async def test_a_breaker_trip_while_batching_a_group_stops_the_loop_as_itself() -> None:
    config = settings(
        batching=one_event_batches(),
        dead_letter={"breaker": {"max_consecutive": 2}},
        service={"commit_interval_ms": 10},
    )
    sink = MemorySink()
    pipe = _grouped_pipeline(config, MemorySource(records(0, range(5))), sink)
    with capture_logs() as logs, pytest.raises(DeadLetterBreakerTripped):
        await asyncio.wait_for(pipe.run(asyncio.Event()), 2)
    assert sink.offsets() == [0]
    assert [line for line in logs if line["event"] == "record_error"] == []
