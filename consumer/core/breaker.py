"""Dead-letter circuit breaker (docs/design.md invariant 4): a flood of dead letters is a bug, not data."""

from __future__ import annotations

from collections import deque

from consumer.config.settings import BreakerSettings
from consumer.errors import DeadLetterBreakerTripped


class DeadLetterBreaker:
    def __init__(self, settings: BreakerSettings) -> None:
        self._settings = settings
        self._window: deque[bool] = deque(maxlen=settings.window_records)
        self._dead_in_window = 0
        self._consecutive = 0
        self._tripped: str | None = None

    def record(self, *, dead_lettered: bool) -> None:
        """Count one final record outcome. Raises `DeadLetterBreakerTripped` when this outcome
        trips the breaker, and for every dead letter after that (none is counted or may be
        written once it tripped)."""
        if self._tripped is None or not dead_lettered:
            window = self._window
            if len(window) == window.maxlen and window[0]:
                self._dead_in_window -= 1
            window.append(dead_lettered)
            self._dead_in_window += dead_lettered
            self._consecutive = self._consecutive + 1 if dead_lettered else 0
            if self._tripped is not None:  # tripped before: this record is only counted
                return
            self._tripped = self._verdict()
            if self._tripped is None:
                return
        raise DeadLetterBreakerTripped(self._tripped)

    def _verdict(self) -> str | None:
        """Why the breaker trips now, or None."""
        s, window = self._settings, self._window
        if self._consecutive >= s.max_consecutive:
            return (
                f"{self._consecutive} consecutive dead letters "
                f"(dead_letter.breaker.max_consecutive={s.max_consecutive})"
            )
        if len(window) == window.maxlen and self._dead_in_window / len(window) > s.max_ratio:
            return (
                f"{self._dead_in_window} of the last {len(window)} records dead-lettered "
                f"(dead_letter.breaker.max_ratio={s.max_ratio})"
            )
        return None
