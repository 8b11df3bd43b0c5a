from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.offsets import OffsetTracker, PartitionOffsets, TopicPartition

TP = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)


def test_watermark_waits_for_the_earliest_open_record() -> None:
    part = PartitionOffsets()
    for offset in (10, 11, 12):
        part.track(offset)
    part.done(12)
    part.done(11)
    assert part.watermark() == 10
    part.done(10)
    assert part.watermark() == 13
    assert len(part) == 0


def test_offsets_must_be_tracked_in_order() -> None:
    part = PartitionOffsets()
    part.track(5)
    with pytest.raises(ValueError, match="increasing"):
        part.track(5)


@given(st.permutations(list(range(40))), st.integers(0, 40))
def test_watermark_is_first_open_offset_whatever_the_completion_order(
    order: list[int], finished: int
) -> None:
    part = PartitionOffsets()
    for offset in range(40):
        part.track(100 + offset)
    done = set(order[:finished])
    for offset in order[:finished]:
        part.done(100 + offset)
    first_open = next((o for o in range(40) if o not in done), 40)
    assert part.watermark() == 100 + first_open


def test_tracker_reports_only_moved_watermarks_and_forgets_revoked() -> None:
    tracker = OffsetTracker()
    tracker.track(TP, 0)
    tracker.track(T1, 7)
    assert tracker.to_commit() == {TP: 0, T1: 7}
    tracker.committed({TP: 0, T1: 7})
    assert tracker.to_commit() == {}
    tracker.done(TP, 0)
    assert tracker.to_commit() == {TP: 1}
    assert tracker.to_commit(only={T1}) == {}
    tracker.forget([T1])
    tracker.done(T1, 7)  # completion after revocation is ignored
    assert tracker.pending() == 0


def test_open_counts_records_not_final_and_pending_the_span_from_the_first_open_one() -> None:
    tracker = OffsetTracker()
    for offset in range(5):
        tracker.track(TP, offset)
    tracker.track(T1, 0)
    for offset in (1, 2, 4):
        tracker.done(TP, offset)
    assert (tracker.pending(TP), tracker.open(TP), tracker.open()) == (5, 2, 3)
    tracker.done(TP, 0)  # 0, 1 and 2 leave the span
    assert (tracker.pending(TP), tracker.open(TP), tracker.open(TopicPartition("nope", 0))) == (2, 1, 0)
