from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.config.settings import BreakerSettings
from consumer.core.breaker import DeadLetterBreaker
from consumer.errors import DeadLetterBreakerTripped, Fatal


def test_consecutive_dead_letters_trip() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(window_records=100, max_ratio=1.0, max_consecutive=3))
    for _ in range(2):
        breaker.dead_letter()
    breaker.passed()
    breaker.dead_letter()
    breaker.dead_letter()
    with pytest.raises(DeadLetterBreakerTripped, match=r"3 consecutive dead letters.*max_consecutive=3"):
        breaker.dead_letter()


def test_ratio_trips_only_over_a_full_window() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(window_records=10, max_ratio=0.5, max_consecutive=1000))
    for i in range(9):  # 6 of 9 dead: window not full yet
        if i % 3 != 0:
            breaker.dead_letter()
        else:
            breaker.passed()
    with pytest.raises(DeadLetterBreakerTripped, match=r"6 of the last 10 .*max_ratio=0\.5"):
        breaker.passed()  # 6 of 10: above 0.5


def test_a_run_of_passed_records_that_fills_the_window_trips_it() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(window_records=10, max_ratio=0.5, max_consecutive=1000))
    for _ in range(6):
        breaker.dead_letter()
    with pytest.raises(DeadLetterBreakerTripped, match=r"6 of the last 10 "):
        breaker.passed(4)


def test_ratio_is_a_sliding_window() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(window_records=4, max_ratio=0.5, max_consecutive=1000))
    for dead in (True, True, False, False, False, False, True, True):  # never more than 2 of the last 4
        if dead:
            breaker.dead_letter()
        else:
            breaker.passed()
    with pytest.raises(DeadLetterBreakerTripped, match=r"3 of the last 4 "):
        breaker.dead_letter()


def test_once_tripped_every_dead_letter_is_refused_and_other_outcomes_are_not() -> None:
    breaker = DeadLetterBreaker(BreakerSettings(window_records=100, max_ratio=1.0, max_consecutive=2))
    breaker.dead_letter()
    with pytest.raises(Fatal):
        breaker.dead_letter()
    breaker.passed(5)  # delivered records after the trip are only counted
    with pytest.raises(DeadLetterBreakerTripped, match="max_consecutive"):
        breaker.dead_letter()


class _OneByOne:
    """The breaker's rules, one outcome at a time over the plainest window: the reference."""

    def __init__(self, s: BreakerSettings) -> None:
        self.s = s
        self.window: deque[bool] = deque(maxlen=s.window_records)
        self.consecutive = 0
        self.tripped = False

    def record(self, dead: bool) -> bool:
        """Whether this outcome raises."""
        if self.tripped:
            return dead
        self.window.append(dead)
        self.consecutive = self.consecutive + 1 if dead else 0
        full = len(self.window) == self.s.window_records
        self.tripped = self.consecutive >= self.s.max_consecutive or (
            full and sum(self.window) / len(self.window) > self.s.max_ratio
        )
        return self.tripped


@given(
    window=st.integers(1, 12),
    ratio=st.sampled_from([0.1, 0.25, 0.5, 0.75, 1.0]),
    consecutive=st.integers(1, 15),
    runs=st.lists(st.tuples(st.booleans(), st.integers(1, 20)), max_size=30),
)
def test_runs_of_outcomes_trip_where_the_same_outcomes_one_by_one_would(
    window: int, ratio: float, consecutive: int, runs: list[tuple[bool, int]]
) -> None:
    settings = BreakerSettings(window_records=window, max_ratio=ratio, max_consecutive=consecutive)
    breaker, reference = DeadLetterBreaker(settings), _OneByOne(settings)
    for dead, count in runs:
        if dead:  # dead letters come one at a time
            for _ in range(count):
                expected = reference.record(True)
                if expected:
                    with pytest.raises(DeadLetterBreakerTripped):
                        breaker.dead_letter()
                else:
                    breaker.dead_letter()
        else:  # a delivered batch: one call, raising if any of its records would have
            expected = any([reference.record(False) for _ in range(count)])
            if expected:
                with pytest.raises(DeadLetterBreakerTripped):
                    breaker.passed(count)
            else:
                breaker.passed(count)
