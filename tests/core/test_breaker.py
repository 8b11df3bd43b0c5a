from __future__ import annotations

from consumer.config.settings import BreakerSettings
from consumer.core.breaker import DeadLetterBreaker


def test_consecutive_dead_letters_trip() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(window_records=100, max_ratio=1.0, max_consecutive=3))
    for _ in range(2):
        breaker.record(dead_lettered=True)
    breaker.record(dead_lettered=False)
    breaker.record(dead_lettered=True)
    breaker.record(dead_lettered=True)
    assert breaker.tripped is None
    breaker.record(dead_lettered=True)
    assert breaker.tripped is not None
    assert "max_consecutive" in breaker.tripped


def test_ratio_trips_only_over_a_full_window() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(window_records=10, max_ratio=0.5, max_consecutive=1000))
    for i in range(9):
        breaker.record(dead_lettered=i % 3 != 0)  # 6 of 9 dead
    assert breaker.tripped is None  # window not full yet
    breaker.record(dead_lettered=False)  # 6 of 10: above 0.5
    assert breaker.tripped is not None
    assert "max_ratio" in breaker.tripped


def test_ratio_is_a_sliding_window() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(window_records=4, max_ratio=0.5, max_consecutive=1000))
    for dead in (True, True, False, False, False, False, True, True):
        breaker.record(dead_lettered=dead)
    assert breaker.tripped is None  # never more than 2 of the last 4
