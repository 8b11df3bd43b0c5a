"""HeldRecords: the hold is logged once when it starts and once when every record went through,
however many turns a held record is taken and held again."""

from __future__ import annotations

from structlog.testing import capture_logs

from consumer.adapters.kafka.deadletter import SourceRecord
from consumer.runtime.holding import HeldRecords
from consumer.runtime.ledger import PendingRecord


def record(offset: int) -> PendingRecord:
    src = SourceRecord("t", 0, offset, 0, None, b"x", [])
    return PendingRecord(src, ("t", 0), 0.0)


def test_a_record_held_again_turn_after_turn_logs_the_hold_once() -> None:
    held = HeldRecords()
    with capture_logs() as logs:
        held.hold(record(1), "looking the schema up")
        for _ in range(100):  # the retry of every turn while the lookup is under way
            again = held.take()
            assert again is not None
            held.hold(again, "looking the schema up", first=True)
        assert held.take() is not None  # it went through
        assert held.take() is None
    assert [line["event"] for line in logs] == ["records_held", "records_released"]
    assert len(held) == 0
