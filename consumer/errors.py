"""fboc's own exceptions, all under `FbocError`.

A dialect or a rule raises `Rejected` (the record goes to the dead-letter topic) or `Filtered`
(the record is dropped by policy and counted). Both carry a stable snake_case reason code; the
message never holds PII or secrets.

`Fatal` and its subclasses mean fboc must stop: continuing would lose records or flood the
dead-letter topic. Each is raised where its condition is found and caught only by the service
(consumer/service.py), which logs it by its class and exits 1.
"""

from __future__ import annotations


class FbocError(Exception):
    """Base of every exception fboc raises on purpose."""


class RecordOutcome(FbocError):
    """Base for the two ways a record can leave the pipeline before delivery."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message


class Rejected(RecordOutcome):
    """The record is invalid for Meta: dead-letter it with `reason`."""


class Filtered(RecordOutcome):
    """Policy says the record is not sent (consent, returns, non-commerce events)."""


class InvalidMessage(FbocError):
    """The record's bytes cannot be decoded; dead-letter it at stage `decode`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class SchemaUnavailable(FbocError):
    """The record's writer schema cannot be fetched now (the registry is down or refuses us):
    the cause is outside the record, so it is held and retried, never dead-lettered."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(FbocError):
    """Configuration problems, each as (key path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))


class Fatal(FbocError):
    """fboc must stop now; what is final is still committed on the way out."""


class DeadLetterBreakerTripped(Fatal):
    """Too many dead letters in a row or in the window: a flood is a bug, not data
    (docs/design.md, the dead-letter breaker)."""


class DeadLetterProducerFailed(Fatal):
    """The dead-letter topic refused a write for good: committing past the record would lose it."""


class BrokersUnreachable(Fatal):
    """No Kafka broker answered for longer than `kafka.unreachable_timeout_seconds`."""


class FinalCommitFailed(Fatal):
    """The last commit or the consumer's close did not complete in time."""
