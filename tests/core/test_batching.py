from __future__ import annotations

from consumer.core.batching import Batcher, BatchKey

KEY = BatchKey("main", "111", None)


def test_batch_closes_at_max_events_and_keeps_owners_aligned() -> None:
    batcher: Batcher[int] = Batcher(max_events=3, max_bytes=10_000, linger_s=1.0)
    assert batcher.add(KEY, b"{}", 1, 0.0) == []
    assert batcher.add(KEY, b"{}", 2, 0.0) == []
    (batch,) = batcher.add(KEY, b'{"a":1}', 3, 0.0)
    assert batch.events == [b"{}", b"{}", b'{"a":1}']
    assert batch.owners == [1, 2, 3]
    assert len(batcher) == 0


def test_batches_are_per_destination_event_set_and_upload_tag() -> None:
    batcher: Batcher[int] = Batcher(max_events=10, max_bytes=10_000, linger_s=1.0)
    keys = [
        KEY,
        BatchKey("main", "222", None),
        BatchKey("main", "111", "tag"),
        BatchKey("other", "111", None),
    ]
    for i, key in enumerate(keys):
        batcher.add(key, b"{}", i, 0.0)
    assert {b.key for b in batcher.drain()} == set(keys)


def test_byte_budget_closes_the_batch_before_it_overflows() -> None:
    batcher: Batcher[int] = Batcher(max_events=1000, max_bytes=25, linger_s=1.0)
    assert batcher.add(KEY, b"x" * 10, 1, 0.0) == []
    assert batcher.add(KEY, b"x" * 10, 2, 0.0) == []
    (closed,) = batcher.add(KEY, b"x" * 10, 3, 0.0)
    assert closed.owners == [1, 2]
    assert [b.owners for b in batcher.drain()] == [[3]]


def test_linger_makes_a_batch_due() -> None:
    batcher: Batcher[int] = Batcher(max_events=1000, max_bytes=10_000, linger_s=0.5)
    batcher.add(KEY, b"{}", 1, 10.0)
    assert batcher.due(10.4) == []
    assert [b.owners for b in batcher.due(10.5)] == [[1]]


def test_lingered_batches_go_only_into_free_slots_oldest_first() -> None:
    batcher: Batcher[int] = Batcher(max_events=1000, max_bytes=10_000, linger_s=0.5)
    newer, other = BatchKey("main", "222", None), BatchKey("other", "111", None)
    batcher.add(newer, b"{}", 1, 10.2)
    batcher.add(KEY, b"{}", 2, 10.0)
    batcher.add(other, b"{}", 3, 10.0)
    # one free slot for main, none for other: main's oldest batch goes, the rest stay open
    assert [b.key for b in batcher.due(11.0, room={"main": 1, "other": 0})] == [KEY]
    batcher.add(newer, b"{}", 4, 11.0)
    assert [b.owners for b in batcher.due(11.0, room={"main": 2})] == [[1, 4]]
    assert [b.key for b in batcher.due(11.0)] == [other]
