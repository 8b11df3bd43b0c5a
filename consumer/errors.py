"""Exceptions that mean something to the pipeline.

A dialect or a rule raises `Rejected` (the record goes to the dead-letter topic) or `Filtered`
(the record is dropped by policy and counted). Both carry a stable snake_case reason code; the
message never holds PII or secrets.
"""

from __future__ import annotations


class RecordOutcome(Exception):
    """Base for the two ways a record can leave the pipeline before delivery."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message


class Rejected(RecordOutcome):
    """The record is invalid for Meta: dead-letter it with `reason`."""


class Filtered(RecordOutcome):
    """Policy says the record is not sent (consent, returns, non-commerce events)."""


class InvalidMessage(Exception):
    """The record's bytes cannot be decoded; dead-letter it at stage `decode`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class SchemaUnavailable(Exception):
    """The record's writer schema cannot be fetched now (the registry is down or refuses us):
    the cause is outside the record, so it is held and retried, never dead-lettered."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(Exception):
    """Configuration problems, each as (key path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))
