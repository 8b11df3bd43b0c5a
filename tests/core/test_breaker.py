from __future__ import annotations

import pytest

from consumer.config.settings import BreakerSettings
from consumer.core.breaker import DeadLetterBreaker
from consumer.errors import DeadLetterBreakerTripped, Fatal


def test_consecutive_dead_letters_trip() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(window_records=100, max_ratio=1.0, max_consecutive=3))
    for _ in range(2):
        breaker.record(dead_lettered=True)
    breaker.record(dead_lettered=False)
    breaker.record(dead_lettered=True)
    breaker.record(dead_lettered=True)
    with pytest.raises(DeadLetterBreakerTripped, match=r"3 consecutive dead letters.*max_consecutive=3"):
        breaker.record(dead_lettered=True)


def test_ratio_trips_only_over_a_full_window() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(window_records=10, max_ratio=0.5, max_consecutive=1000))
    for i in range(9):
        breaker.record(dead_lettered=i % 3 != 0)  # 6 of 9 dead: window not full yet
    with pytest.raises(DeadLetterBreakerTripped, match=r"6 of the last 10 .*max_ratio=0\.5"):
        breaker.record(dead_lettered=False)  # 6 of 10: above 0.5


def test_ratio_is_a_sliding_window() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(window_records=4, max_ratio=0.5, max_consecutive=1000))
    for dead in (True, True, False, False, False, False, True, True):
        breaker.record(dead_lettered=dead)  # never more than 2 of the last 4: never raises


def test_once_tripped_every_dead_letter_is_refused_and_other_outcomes_are_not() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(window_records=100, max_ratio=1.0, max_consecutive=2))
    breaker.record(dead_lettered=True)
    with pytest.raises(Fatal):
        breaker.record(dead_lettered=True)
    breaker.record(dead_lettered=False)  # a delivered record after the trip is only counted
    with pytest.raises(DeadLetterBreakerTripped, match="max_consecutive"):
        breaker.record(dead_lettered=True)
