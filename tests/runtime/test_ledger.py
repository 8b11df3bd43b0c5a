"""The record ledger, alone: tracks, parts, answers and dead-letter acknowledgements in, the
offsets it lets be committed out. No Kafka, no clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.adapters.graph import Failure
from consumer.adapters.kafka.deadletter import DeadLetter, SourceRecord
from consumer.config.settings import BreakerSettings
from consumer.core.breaker import DeadLetterBreaker
from consumer.core.offsets import TopicPartition
from consumer.errors import DeadLetterBreakerTripped
from consumer.runtime.ledger import Ledger, PendingRecord
from consumer.telemetry.metrics import METRICS

TP = TopicPartition("orders", 0)
TP1 = TopicPartition("orders", 1)
FAILED = Failure("rejected_by_meta", "invalid parameter", 1, 100, 2804003, "trace")


@dataclass
class Sink:
    """The dead-letter topic: keeps each write and acknowledges it when told."""

    writes: list[tuple[SourceRecord, DeadLetter]] = field(default_factory=list)
    unacked: list[Callable[[], None]] = field(default_factory=list)

    def write(self, src: SourceRecord, dl: DeadLetter, on_done: Callable[[], None]) -> None:
        self.writes.append((src, dl))
        self.unacked.append(on_done)

    def ack_all(self) -> None:
        acks, self.unacked = self.unacked, []
        for ack in acks:
            ack()


def ledger(sink: Sink, max_consecutive: int = 1000, max_ratio: float = 1.0) -> Ledger:
    breaker = DeadLetterBreaker(
        BreakerSettings(window_records=1000, max_ratio=max_ratio, max_consecutive=max_consecutive)
    )
    return Ledger(breaker, sink)


def src(offset: int, tp: TopicPartition = TP) -> SourceRecord:
    return SourceRecord(tp[0], tp[1], offset, 0, b"k", b"v", [])


def track(book: Ledger, *offsets: int, tp: TopicPartition = TP) -> list[PendingRecord]:
    return [book.track(src(o, tp), 0.0) for o in offsets]


def answer(book: Ledger, record: PendingRecord, failure: Failure | None = None, event_set: str = "1") -> None:
    book.answered("main", event_set, [((record,), "Purchase")], [failure])


def test_the_commit_stops_at_the_first_record_that_is_not_final() -> None:
    book = ledger(Sink())
    a, b, c = track(book, 5, 6, 7)
    book.owned([a], 1)
    book.owned([b], 1)
    book.filtered(c, "consent")
    assert book.committable() == {TP: 5}
    answer(book, b)
    assert book.committable() == {TP: 5}  # 5 is still out
    answer(book, a)
    assert book.committable() == {TP: 8}
    assert (book.pending(), book.unsettled()) == (0, 0)


def test_a_record_of_several_parts_is_final_after_its_last_answer() -> None:
    book = ledger(Sink())
    (record,) = track(book, 0)
    book.owned([record], 3)
    for _ in range(2):
        answer(book, record)
        assert book.committable() == {TP: 0}
    answer(book, record)
    assert book.committable() == {TP: 1}


def test_a_failed_part_dead_letters_the_record_after_its_last_answer_final_once_acknowledged() -> None:
    sink = Sink()
    book = ledger(sink)
    (record,) = track(book, 0)
    book.owned([record], 2)
    answer(book, record, FAILED, "222")
    assert sink.writes == []  # not before every part has its answer
    answer(book, record)
    ((written, dl),) = sink.writes
    assert written is record.src
    assert (dl.stage, dl.reason, dl.destination, dl.event_set_id, dl.graph_subcode) == (
        "deliver",
        "rejected_by_meta",
        "main",
        "222",
        2804003,
    )
    assert book.committable() == {TP: 0}  # written, not acknowledged yet
    sink.ack_all()
    assert book.committable() == {TP: 1}


def test_failures_in_two_event_sets_are_two_dead_letters_of_one_record_for_the_breaker() -> None:
    sink = Sink()
    book = ledger(sink, max_consecutive=2)
    (record,) = track(book, 0)
    book.owned([record], 2)
    answer(book, record, FAILED, "111")
    answer(book, record, FAILED, "222")  # a second dead letter, the same record: no trip
    assert [dl.event_set_id for _, dl in sink.writes] == ["111", "222"]
    sink.unacked.pop()()
    assert book.committable() == {TP: 0}  # one of its two writes is still out
    sink.ack_all()
    assert book.committable() == {TP: 1}


def test_an_event_owned_by_a_group_settles_every_record_of_it() -> None:
    book = ledger(Sink())
    records = tuple(track(book, 0, 1, 2))
    book.owned(records, 1)
    book.answered("main", "111", [(records, "Purchase")], [None])
    assert book.committable() == {TP: 3}


def test_held_records_are_not_waited_for_and_the_commit_stops_before_them() -> None:
    book = ledger(Sink())
    a, b, c = track(book, 0, 1, 2)
    other = track(book, 0, tp=TP1)[0]
    book.hold(a, "registry down")
    book.hold(b, "registry down")
    book.filtered(c, "consent")
    assert (book.pending(), book.held(), book.held(TP), book.unsettled([TP])) == (3, 2, 2, 0)
    assert book.unsettled() == 1  # the other partition's record is on its way
    assert book.committable({TP}) == {TP: 0}
    first = book.release()
    assert first is a
    book.hold(first, "registry down", first=True)  # failed again: back at the head
    assert book.release() is a
    book.filtered(a, "consent")
    assert book.committable({TP}) == {TP: 1}
    book.forget([TP])  # revoked: b is the next owner's
    assert (book.held(), book.release(), book.committable()) == (0, None, {TP1: 0})
    book.filtered(other, "consent")
    assert book.committable() == {TP1: 1}


def test_what_was_committed_is_not_offered_again_until_the_commit_fails() -> None:
    book = ledger(Sink())
    (record,) = track(book, 0)
    book.filtered(record, "consent")
    book.committed(book.committable())
    assert book.committable() == {}
    book.uncommitted([TP])
    assert book.committable() == {TP: 1}


def test_a_dead_letter_the_breaker_refuses_is_not_written_and_the_record_stays_open() -> None:
    sink = Sink()
    book = ledger(sink, max_consecutive=2)
    a, b = track(book, 0, 1)
    book.dead_letter(a, DeadLetter("decode", "undecodable", "not Avro"))
    with pytest.raises(DeadLetterBreakerTripped):
        book.dead_letter(b, DeadLetter("decode", "undecodable", "not Avro"))
    assert len(sink.writes) == 1
    sink.ack_all()
    assert book.committable() == {TP: 1}  # b is never committed past


def test_a_delivered_record_that_trips_the_ratio_is_final_before_the_breaker_raises() -> None:
    sink = Sink()
    breaker = DeadLetterBreaker(BreakerSettings(window_records=2, max_ratio=0.4, max_consecutive=1000))
    book = Ledger(breaker, sink)
    a, b = track(book, 0, 1)
    book.dead_letter(a, DeadLetter("decode", "undecodable", "not Avro"))
    sink.ack_all()
    book.owned([b], 1)
    with pytest.raises(DeadLetterBreakerTripped, match="max_ratio"):
        answer(book, b)  # 1 of 2 dead: over 0.4
    assert book.committable() == {TP: 2}


def sample(name: str, labels: dict[str, str]) -> float:
    return METRICS.registry.get_sample_value(name, labels) or 0.0


def test_counts_are_published_once_per_turn_and_count_every_record() -> None:
    sink = Sink()
    book = ledger(sink)
    topic = "ledger-counts"
    labels = {"outcome": "filtered", "reason": "ledger_test"}
    dead = {"stage": "decode", "reason": "ledger_test"}
    before = (
        sample("fboc_records_consumed_total", {"topic": topic}),
        sample("fboc_record_outcomes_total", labels),
        sample("fboc_dead_letter_writes_total", dead),
    )
    records = track(book, 0, 1, 2, 3, tp=TopicPartition(topic, 0))
    for record in records[:3]:
        book.filtered(record, "ledger_test")
    book.dead_letter(records[3], DeadLetter("decode", "ledger_test", "x"))
    assert sample("fboc_records_consumed_total", {"topic": topic}) == before[0]  # not yet
    book.publish()
    book.publish()  # nothing new: adds nothing
    after = (
        sample("fboc_records_consumed_total", {"topic": topic}),
        sample("fboc_record_outcomes_total", labels),
        sample("fboc_dead_letter_writes_total", dead),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [4, 3, 1]


# -- hypothesis: whatever the fates and the order their answers come in, the offset offered for
# commit is exactly the first record not final (never past one that is open) --------------------

Fate = tuple[str, int, int]  # kind, parts, bitmask of failed parts


fates = st.one_of(
    st.just(("filtered", 0, 0)),
    st.just(("rejected", 0, 0)),
    st.just(("held", 0, 0)),
    st.tuples(st.just("events"), st.integers(1, 3), st.integers(0, 7)),
)


@settings(max_examples=300, deadline=None)
@given(plan=st.lists(fates, min_size=1, max_size=12), data=st.data())
def test_commit_never_passes_a_record_that_is_not_done(plan: list[Fate], data: st.DataObject) -> None:
    sink = Sink()
    book = ledger(sink)
    first = data.draw(st.integers(0, 1000), label="first offset")
    records = track(book, *range(first, first + len(plan)))
    steps: list[tuple[str, int]] = []  # what may happen next, per record
    for i, (kind, parts, _failed) in enumerate(plan):
        if kind == "events":
            book.owned([records[i]], parts)
            steps += [("part", i)] * parts
        elif kind == "held":
            book.hold(records[i], "registry down")
            steps.append(("release", i))
        else:
            steps.append((kind, i))
    answered = [0] * len(plan)
    done = [False] * len(plan)
    acks: dict[int, list[Callable[[], None]]] = {}

    def check() -> None:
        open_ = [first + i for i, d in enumerate(done) if not d]
        expected = open_[0] if open_ else first + len(plan)
        assert book.committable() == {TP: expected}
        assert book.pending() == book.unsettled() + book.held() == len(open_)

    check()
    while steps:
        step, i = steps.pop(data.draw(st.integers(0, len(steps) - 1)))
        record = records[i]
        _kind, parts, failed = plan[i]
        writes = len(sink.writes)
        if step == "filtered":
            book.filtered(record, "consent")
            done[i] = True
        elif step == "rejected":
            book.dead_letter(record, DeadLetter("transform", "invalid_payload", "x"))
        elif step == "release":  # the oldest held record comes out, whichever step this was
            released = book.release()
            assert released is not None
            steps.append(("filtered", released.offset - first))
        elif step == "part":
            failure = FAILED if failed >> answered[i] & 1 else None
            answer(book, record, failure, event_set=str(answered[i]))
            answered[i] += 1
            if answered[i] == parts and not record.failures:
                done[i] = True
        elif step == "ack":
            acks[i].pop()()
            done[i] = not acks[i]
        new = sink.unacked[writes:]  # this test acknowledges through `acks` only
        acks.setdefault(i, []).extend(new)
        steps += [("ack", i)] * len(new)
        check()
    assert all(done)


def test_one_answer_for_records_of_two_polls_observes_each_record_and_keeps_the_breakers_order() -> None:
    sink = Sink()
    book = ledger(sink, max_consecutive=2)
    labels = {"outcome": "delivered", "reason": "ok"}
    before = (
        sample("fboc_record_ack_seconds_count", {}),
        sample("fboc_record_ack_seconds_sum", {}),
        sample("fboc_record_outcomes_total", labels),
    )
    first = [book.track(src(o), 10.0) for o in (0, 1, 2)]
    second = [book.track(src(o), 20.0) for o in (3, 4)]
    records = first + second
    book.owned(records, 1)
    failed = Failure("graph_invalid_event", "invalid", 1)
    # failed, delivered, failed, delivered, delivered: the delivered record between the two
    # failed ones ends their run, so the breaker (2 consecutive) does not trip
    book.answered("main", "1", [((r,), "Purchase") for r in records], [failed, None, failed, None, None])
    book.publish()
    assert len(sink.unacked) == 2
    assert book.committable() == {TP: 0}  # the first is dead-lettered, not acknowledged yet
    sink.ack_all()
    assert book.committable() == {TP: 5}
    count, total, delivered = (
        sample("fboc_record_ack_seconds_count", {}),
        sample("fboc_record_ack_seconds_sum", {}),
        sample("fboc_record_outcomes_total", labels),
    )
    assert count - before[0] == 5  # three delivered, two dead-lettered once acknowledged
    assert delivered - before[2] == 3
    now = time.monotonic()
    # three polled at 10, two at 20, all final at (about) `now`
    assert total - before[1] == pytest.approx(5 * now - 3 * 10 - 2 * 20, abs=1.0)


def test_records_of_partitions_and_topics_in_turn_are_each_tracked_in_their_own() -> None:
    book = ledger(Sink())
    other_topic = TopicPartition("returns", 0)  # same partition number, another topic
    order = [TP, TP, TP1, TP, other_topic, TP1, other_topic]
    offsets = {TP: 0, TP1: 0, other_topic: 0}
    records = []
    for tp in order:
        records.append(book.track(src(offsets[tp], tp), 0.0))
        offsets[tp] += 1
    assert [r.tp for r in records] == order
    assert [book.pending(tp) for tp in (TP, TP1, other_topic)] == [3, 2, 2]
    for record in records:
        book.filtered(record, "test")
    assert book.committable() == {TP: 3, TP1: 2, other_topic: 2}
