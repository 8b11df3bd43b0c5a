"""Dead-letter circuit breaker (docs/design.md invariant 4): a flood of dead letters is a bug, not data."""

from __future__ import annotations

from collections import deque

from consumer.config.settings import BreakerSettings
from consumer.errors import DeadLetterBreakerTripped


class DeadLetterBreaker:
    """Counts final record outcomes: dead letters one at a time, the others in runs (a batch's
    delivered records cost one call)."""

    def __init__(self, settings: BreakerSettings) -> None:
        self._settings = settings
        self._records = 0  # outcomes counted: the last one's position
        self._dead: deque[int] = deque()  # positions of the dead letters in the window, oldest first
        self._consecutive = 0
        self._tripped: str | None = None

    def dead_letter(self) -> None:
        """Count one dead-lettered record. Raises `DeadLetterBreakerTripped` when it trips the
        breaker, and for every dead letter after that (none is counted or may be written once
        it tripped)."""
        if self._tripped is None:
            self._records += 1
            self._dead.append(self._records)
            self._consecutive += 1
            self._tripped = self._verdict()
            if self._tripped is None:
                return
        raise DeadLetterBreakerTripped(self._tripped)

    def passed(self, count: int = 1) -> None:
        """Count `count` records that ended otherwise (delivered, filtered). Raises
        `DeadLetterBreakerTripped` when they fill the window and too many in it were dead letters."""
        window = self._settings.window_records
        fills = self._records < window <= self._records + count
        self._records += count
        self._consecutive = 0
        # Only filling the window can trip here, judged as it filled: no dead letter had slid
        # out yet, and every record passed after that only lowers their share.
        if fills and self._tripped is None:
            self._tripped = self._ratio_verdict(len(self._dead))
            if self._tripped is not None:
                raise DeadLetterBreakerTripped(self._tripped)

    def _verdict(self) -> str | None:
        """Why the breaker trips after a dead letter, or None."""
        s, dead = self._settings, self._dead
        while dead[0] <= self._records - s.window_records:  # slid out of the window
            dead.popleft()
        if self._consecutive >= s.max_consecutive:
            return (
                f"{self._consecutive} consecutive dead letters "
                f"(dead_letter.breaker.max_consecutive={s.max_consecutive})"
            )
        return self._ratio_verdict(len(dead)) if self._records >= s.window_records else None

    def _ratio_verdict(self, dead: int) -> str | None:
        """Why a full window with `dead` dead letters in it trips the breaker, or None."""
        s = self._settings
        if dead / s.window_records <= s.max_ratio:
            return None
        return (
            f"{dead} of the last {s.window_records} records dead-lettered "
            f"(dead_letter.breaker.max_ratio={s.max_ratio})"
        )
