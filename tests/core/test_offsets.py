from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.offsets import OffsetTracker, PartitionOffsets

TP = ("t", 0)


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
    tracker.track(("t", 1), 7)
    assert tracker.to_commit() == {TP: 0, ("t", 1): 7}
    tracker.committed({TP: 0, ("t", 1): 7})
    assert tracker.to_commit() == {}
    tracker.done(TP, 0)
    assert tracker.to_commit() == {TP: 1}
    assert tracker.to_commit(only={("t", 1)}) == {}
    tracker.forget([("t", 1)])
    tracker.done(("t", 1), 7)  # completion after revocation is ignored
    assert tracker.pending() == 0


# -- group spans: no commit inside a group (docs/dialects.md#amperity) -------------------------


def test_commit_never_lands_inside_interleaved_groups_and_spans_are_pruned() -> None:
    part = PartitionOffsets()
    for offset in range(1, 7):
        part.track(offset)
    part.span(1, 5)  # X: 1, 3, 5
    part.span(2, 6)  # Y: 2, 4, 6
    for offset in (1, 3, 5):
        part.done(offset)
    assert part.watermark() == 1  # 2 is the first not done, but X's 3 and 5 lie past it
    for offset in (2, 4):
        part.done(offset)
    assert part.watermark() == 1  # 6 is inside Y, Y's first (2) inside X
    part.done(6)
    assert part.watermark() == 7
    assert part.spans() == 0


def test_a_chain_of_spans_lowers_the_commit_to_its_first_group() -> None:
    part = PartitionOffsets()
    for offset in range(20):
        part.track(offset)
    for first, last in ((2, 5), (4, 9), (8, 12), (14, 15)):
        part.span(first, last)
    for offset in range(11):
        part.done(offset)
    assert part.watermark() == 2  # 11 in (8, 12] → 8 in (4, 9] → 4 in (2, 5] → 2
    assert part.spans() == 4
    part.span(7, 7)  # a group of one row has no inside
    assert part.spans() == 4


def reference(done: set[int], end: int, spans: list[tuple[int, int]]) -> int:
    """The highest offset with every offset below it done that no span holds inside."""
    first_open = min(set(range(end)) - done, default=end)
    return max(m for m in range(first_open + 1) if not any(f < m <= last for f, last in spans))


@st.composite
def groups_and_order(draw: st.DrawFn) -> tuple[list[list[int]], list[tuple[str, int]]]:
    """Offsets 0..n-1 split into groups (interleaved at will), and an order of events: each
    group is emitted (its span learnt) before its offsets are done, in any order after."""
    n = draw(st.integers(1, 30))
    owner = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    ids = sorted(set(owner))
    owner = [ids.index(g) for g in owner]
    groups = [[o for o in range(n) if owner[o] == g] for g in range(len(ids))]
    events = [("emit", g) for g in range(len(groups))]
    events += [("done", o) for o in range(n)]
    events = draw(st.permutations(events))
    emitted: set[int] = set()
    ordered: list[tuple[str, int]] = []
    waiting: list[int] = []
    for kind, value in events:
        if kind == "emit":
            emitted.add(value)
            ordered.append((kind, value))
            for o in [o for o in waiting if owner[o] == value]:
                waiting.remove(o)
                ordered.append(("done", o))
        elif owner[value] in emitted:
            ordered.append((kind, value))
        else:
            waiting.append(value)
    return groups, ordered


@given(groups_and_order())
def test_commit_is_the_highest_safe_offset_and_never_goes_down(
    case: tuple[list[list[int]], list[tuple[str, int]]],
) -> None:
    groups, events = case
    end = sum(len(g) for g in groups)
    part = PartitionOffsets()
    for offset in range(end):
        part.track(offset)
    done: set[int] = set()
    spans: list[tuple[int, int]] = []
    last = 0
    for kind, value in events:
        if kind == "emit":
            spans.append((groups[value][0], groups[value][-1]))
            part.span(*spans[-1])
        else:
            done.add(value)
            part.done(value)
        mark = part.watermark()
        assert mark is not None
        assert mark == reference(done, end, spans)
        assert mark >= last
        last = mark
        # pruned: only spans that could still hold a later commit are kept
        assert part.spans() == sum(1 for f, e in spans if e >= mark and e > f)
    assert last == end


def test_tracker_learns_spans_per_partition() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.track(TP, offset)
    tracker.span(TP, 10, 12)
    tracker.span(("t", 9), 0, 5)  # revoked meanwhile: ignored
    tracker.done(TP, 10)
    tracker.done(TP, 12)
    assert tracker.to_commit() == {TP: 10}
    tracker.done(TP, 11)
    assert tracker.to_commit() == {TP: 13}


def test_pending_counts_only_records_not_final() -> None:
    tracker = OffsetTracker()
    for offset in range(100):
        tracker.track(TP, offset)
    for offset in range(1, 100):
        tracker.done(TP, offset)
    # offset 0 (an open order's first row) holds the commit, not the buffer
    assert tracker.pending(TP) == 1
    assert tracker.to_commit() == {TP: 0}
