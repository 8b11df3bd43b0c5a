"""Amperity order grouping decided by the records alone (docs/dialects.md#amperity): the rules one
by one, then the property that makes an order count once at Meta: a replay from any offset the
tracker can commit forms exactly the groups of the first run that start there or later."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.dialects.amperity import Group, OrderGrouper, item_number
from consumer.core.offsets import PartitionOffsets
from tests.core.test_dialect_amperity import MINIMAL, row_of

TP = ("rows", 0)
ROW = row_of(MINIMAL)
FOREVER = 1e18  # a clock reading that makes every partition idle


def key(order: str) -> tuple[str, str]:
    return ("main", order)


def feed(
    grouper: OrderGrouper[int], records: list[tuple[str | None, int | None]], start: int = 0, now: float = 0.0
) -> None:
    """(order or None for a record that is not a row, record time) at offsets start, start+1, ..."""
    for offset in range(start, len(records)):
        order, time_ms = records[offset]
        grouper.seen(TP, offset, time_ms, now)
        if order is not None:
            grouper.add(TP, key(order), ROW, offset, offset, time_ms)


def tokens(groups: list[Group[int]]) -> list[list[int]]:
    return [group.tokens for group in groups]


def test_rows_within_the_window_of_the_first_row_form_one_group() -> None:
    grouper: OrderGrouper[int] = OrderGrouper(window_ms=300, grace_ms=100)
    feed(grouper, [("X", 1000), ("Y", 1100), ("X", 1300), ("Y", 1350)])
    assert grouper.due(0.0) == []
    assert grouper.open_rows(TP) == 4
    assert len(grouper) == 4
    # a record of the partition (any record) past X's first + window + grace closes X only
    grouper.seen(TP, 4, 1401, 0.0)
    assert grouper.due(0.0) == [Group([ROW, ROW], [0, 2], TP, 0, 2)]
    grouper.seen(TP, 5, 1501, 0.0)
    assert tokens(grouper.due(0.0)) == [[1, 3]]
    assert len(grouper) == 0


def test_a_row_outside_the_window_starts_the_next_group_of_its_order() -> None:
    grouper: OrderGrouper[int] = OrderGrouper(window_ms=300, grace_ms=1000)
    feed(grouper, [("X", 1000), ("X", 1301), ("X", 1400), ("X", 999), ("X", 1100)])
    # 1301 is 301 ms after the first row: a new group; 999 is 302 ms before 1301: another one
    assert tokens(grouper.due(0.0)) == [[0], [1, 2]]
    assert tokens(grouper.due(FOREVER)) == [[3, 4]]


def test_row_cap_and_span_cap_split_deterministically() -> None:
    grouper: OrderGrouper[int] = OrderGrouper(window_ms=10_000, max_rows=2, max_span=4)
    feed(grouper, [("X", 0), ("X", 0), ("X", 0), ("Y", 0), (None, 0), (None, 0), ("Y", 0), (None, 0)])
    # X: two rows, then a new group; X's second group (offset 2) is closed by offset 6 (span 4),
    # Y's first (offset 3) by offset 7
    assert tokens(grouper.due(0.0)) == [[0, 1], [2], [3, 6]]


def test_idle_partition_closes_after_window_and_grace_of_the_clock() -> None:
    grouper: OrderGrouper[int] = OrderGrouper(window_ms=300, grace_ms=200)
    feed(grouper, [("X", 5000)], now=1000.0)
    assert grouper.due(1499.0) == []
    assert tokens(grouper.due(1500.0)) == [[0]]
    # reading anything of the partition restarts its idle time
    grouper.seen(TP, 1, 5000, 2000.0)
    grouper.add(TP, key("X"), ROW, 1, 1, 5000)
    grouper.seen(TP, 2, None, 2400.0)
    assert grouper.due(2800.0) == []
    assert tokens(grouper.due(2900.0)) == [[1]]


def test_partitions_and_destinations_group_apart() -> None:
    grouper: OrderGrouper[int] = OrderGrouper(window_ms=300)
    other = ("rows", 1)
    grouper.seen(TP, 0, 0, 0.0)
    grouper.add(TP, key("X"), ROW, 0, 0, 0)
    grouper.seen(other, 0, 0, 0.0)
    grouper.add(other, key("X"), ROW, 100, 0, 0)  # the same order id keyed to another partition
    grouper.add(TP, ("backup", "X"), ROW, 1, 1, 0)
    assert grouper.open_rows() == 3
    assert grouper.open_rows(other) == 1
    grouper.seen(other, 1, 5000, 0.0)
    assert grouper.due(0.0) == [Group([ROW], [100], other, 0, 0)]
    assert sorted(tokens(grouper.due(FOREVER))) == [[0], [1]]


def test_no_timestamp_joins_and_never_closes_by_time() -> None:
    grouper: OrderGrouper[int] = OrderGrouper(window_ms=300)
    feed(grouper, [("X", -1), ("X", 99_999), ("X", None), (None, 10**15)])
    assert grouper.due(0.0) == []  # X's first row had no time: only the caps or idleness close it
    assert tokens(grouper.due(FOREVER)) == [[0, 1, 2]]


def test_window_zero_sends_every_row_alone() -> None:
    grouper: OrderGrouper[int] = OrderGrouper(window_ms=0)
    feed(grouper, [("X", 0), ("X", 0)])
    assert tokens(grouper.due(0.0)) == [[0], [1]]


def test_release_drops_open_and_closed_groups_of_the_partitions() -> None:
    grouper: OrderGrouper[int] = OrderGrouper(window_ms=300, grace_ms=0)
    other = ("rows", 1)
    feed(grouper, [("X", 0), ("Y", 0), (None, 301), ("Y", 301)])
    grouper.seen(other, 0, 0, 0.0)
    grouper.add(other, key("Z"), ROW, 100, 0, 0)
    assert grouper.release([TP]) == 3  # X and Y's first group closed, Y's second open
    assert grouper.open_rows(TP) == 0
    assert len(grouper) == 1
    assert tokens(grouper.due(FOREVER)) == [[100]]


def test_deadlines_of_closed_groups_do_not_pile_up() -> None:
    # a producer that stamps every record with the same time: groups close by the row cap only
    grouper: OrderGrouper[int] = OrderGrouper(window_ms=300, max_rows=1)
    records: list[tuple[str | None, int | None]] = [("X", 7)] * 5000
    feed(grouper, records)
    assert len(grouper.due(0.0)) == 4999
    assert len(grouper._parts[TP].deadlines) <= 2 * 1 + 64 + 1


def test_interleaved_orders_replayed_from_the_commit_count_once() -> None:
    """X at offsets 1, 3, 5 and Y at 2, 4, 6: X delivered, Y not, then a crash. The commit
    stops at X's first row, so the replay groups X's rows as before: the same item_number."""
    records: list[tuple[str | None, int | None]] = [
        (None, 0), ("X", 10), ("Y", 11), ("X", 12), ("Y", 13), ("X", 14), ("Y", 15), (None, 5000)
    ]  # fmt: skip
    first: OrderGrouper[int] = OrderGrouper(window_ms=300)
    feed(first, records)
    x, y = first.due(0.0)
    offsets = PartitionOffsets()
    for offset in range(len(records)):
        offsets.track(offset)
    offsets.done(0)
    offsets.done(7)
    offsets.span(x.first, x.last)
    offsets.span(y.first, y.last)
    for offset in x.tokens:
        offsets.done(offset)
    start = offsets.watermark()
    assert start == 1  # not 2, the first row not done: that is inside X
    replay: OrderGrouper[int] = OrderGrouper(window_ms=300)
    feed(replay, records, start=start or 0)
    again = replay.due(0.0)
    assert again == [x, y]
    assert item_number(again[0].rows) == item_number(x.rows)


# -- the property ------------------------------------------------------------------------------

ORDERS = st.sampled_from(["A", "B", "C", "D", None])
RECORDS = st.lists(st.tuples(ORDERS, st.one_of(st.integers(-150, 400), st.just(-1))), min_size=1, max_size=60)


def times(steps: list[tuple[str | None, int]]) -> list[tuple[str | None, int | None]]:
    """Record times: mostly rising, sometimes back (other producers' clocks), sometimes none."""
    now = 1_000_000
    out: list[tuple[str | None, int | None]] = []
    for order, step in steps:
        if step == -1:
            out.append((order, None if len(out) % 2 else -1))
            continue
        now += step
        out.append((order, now))
    return out


def run(
    records: list[tuple[str | None, int | None]], params: tuple[int, int, int, int], start: int = 0
) -> list[Group[int]]:
    window, max_rows, max_span, grace = params
    grouper: OrderGrouper[int] = OrderGrouper(window, max_rows, max_span, grace)
    feed(grouper, records, start)
    return grouper.due(0.0) + grouper.due(FOREVER)


PARAMS = st.tuples(
    st.sampled_from([0, 100, 300, 1000]), st.integers(1, 5), st.integers(1, 40), st.integers(0, 500)
)


@settings(max_examples=400, deadline=None)
@given(RECORDS, PARAMS, st.data())
def test_a_replay_from_any_commit_forms_the_same_groups(
    steps: list[tuple[str | None, int]], params: tuple[int, int, int, int], data: st.DataObject
) -> None:
    records = times(steps)
    whole = run(records, params)
    # every row in exactly one group, of its own order, and no other record
    rows = [offset for offset, (order, _) in enumerate(records) if order is not None]
    assert sorted(t for g in whole for t in g.tokens) == rows
    for group in whole:
        assert len({records[t][0] for t in group.tokens}) == 1
        assert (group.first, group.last) == (group.tokens[0], group.tokens[-1])
    # a crash after `read` records: the groups closed by then were emitted (their spans known)
    # and any of them settled, with any records that are not rows; the rest is pending
    read = data.draw(st.integers(1, len(records)), label="read")
    window, max_rows, max_span, grace = params
    crashed: OrderGrouper[int] = OrderGrouper(window, max_rows, max_span, grace)
    feed(crashed, records[:read])
    closed = crashed.due(0.0)
    offsets = PartitionOffsets()
    for offset in range(read):
        offsets.track(offset)
    settled = data.draw(st.lists(st.booleans(), min_size=len(closed), max_size=len(closed)), label="settled")
    for group, done in zip(closed, settled, strict=True):
        offsets.span(group.first, group.last)
        if done:
            for offset in group.tokens:
                offsets.done(offset)
    for offset in range(read):
        if records[offset][0] is None and data.draw(st.booleans(), label=f"done {offset}"):
            offsets.done(offset)
    start = offsets.watermark() or 0
    replay = run(records, params, start)
    expected = [g for g in whole if g.first >= start]
    assert sorted(replay) == sorted(expected)
    assert all(g.last < start for g in whole if g.first < start)  # no group straddles the commit


def test_tokens_are_handed_out_once_whatever_the_clock() -> None:
    grouper: OrderGrouper[int] = OrderGrouper(window_ms=300, max_rows=3, max_span=7)
    out: list[Group[int]] = []
    for offset in range(200):
        grouper.seen(TP, offset, offset * 37 % 1000, float(offset * 90))
        if offset % 3:
            grouper.add(TP, key(f"O-{offset % 5}"), ROW, offset, offset, offset * 37 % 1000)
        out += grouper.due(float(offset * 90 + offset % 11 * 50))
    out += grouper.due(FOREVER)
    assert Counter(t for g in out for t in g.tokens) == Counter(o for o in range(200) if o % 3)


def test_a_row_retried_out_of_order_widens_its_groups_span() -> None:
    # a row held while the schema registry was down comes back after later rows were grouped
    grouper: OrderGrouper[int] = OrderGrouper(window_ms=300)
    grouper.seen(TP, 5, 100, 0.0)
    grouper.add(TP, key("X"), ROW, 5, 5, 100)
    grouper.seen(TP, 3, 90, 0.0)
    grouper.add(TP, key("X"), ROW, 3, 3, 90)
    [group] = grouper.due(FOREVER)
    assert (group.first, group.last) == (3, 5)
