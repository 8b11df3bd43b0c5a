"""Fault rules, added over HTTP by tests to make the sandbox misbehave on purpose.

A rule: {"match": {"event_set_id"?: str, "event_ids"?: [str]}, "times"?: int | null,
         "action": {<one kind>: ..., <that kind's options>}}
Actions: {"latency_ms": int}, {"http_status": 5xx}, {"reset": true}, {"wrong_events_received": true},
  {"timeout": true, "seconds"?: number (default 30)},
  {"reject_events": true, "error_subcode"?: int}  (needs match.event_ids),
  {"error": {"code": int, "error_subcode"?, "is_transient"?, "message"?, "type"? (default
   GraphMethodException for a code 100 without subcode, else OAuthException), "http_status"?
   (default 400), "regain_minutes"?}, "regain_minutes"?: int}; e.g. {"error": {"code": 102}}.
`times` absent or null means forever. Rules are checked in order; the first one that matches a
request and has uses left applies (only one per request) and uses one up.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

# kind -> the other keys its action may hold
KINDS: dict[str, frozenset[str]] = {
    "latency_ms": frozenset(),
    "http_status": frozenset(),
    "error": frozenset({"regain_minutes"}),
    "reject_events": frozenset({"error_subcode"}),
    "timeout": frozenset({"seconds"}),
    "reset": frozenset(),
    "wrong_events_received": frozenset(),
}
DEFAULT_TIMEOUT_SECONDS = 30.0


class FaultRuleError(ValueError):
    """A rule the sandbox cannot understand; the message says why."""


@dataclass
class FaultRule:
    id: str
    kind: str
    action: dict[str, Any]
    event_set_id: str | None
    event_ids: tuple[str, ...] | None
    times: int | None
    remaining: int | None
    applied: int = 0

    def matches(self, event_set_id: str, event_ids: Collection[str]) -> bool:
        if self.remaining == 0:
            return False
        if self.event_set_id is not None and self.event_set_id != event_set_id:
            return False
        return self.event_ids is None or any(i in event_ids for i in self.event_ids)

    def describe(self) -> dict[str, Any]:
        match: dict[str, Any] = {}
        if self.event_set_id is not None:
            match["event_set_id"] = self.event_set_id
        if self.event_ids is not None:
            match["event_ids"] = list(self.event_ids)
        return {
            "id": self.id,
            "match": match,
            "times": self.times,
            "remaining": self.remaining,
            "applied": self.applied,
            "action": self.action,
        }


class FaultBook:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self._next_id = 1

    def add(self, raw: object) -> FaultRule:
        rule = parse_rule(raw, f"f{self._next_id}")
        self._next_id += 1
        self.rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self.rules)
        self.rules = [rule for rule in self.rules if rule.id != rule_id]
        return len(self.rules) < before

    def clear(self) -> int:
        count = len(self.rules)
        self.rules.clear()
        return count

    def take(self, event_set_id: str, event_ids: Collection[str]) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(event_set_id, event_ids):
                if rule.remaining is not None:
                    rule.remaining -= 1
                rule.applied += 1
                return rule
        return None


def parse_rule(raw: object, rule_id: str) -> FaultRule:
    if not isinstance(raw, dict):
        raise FaultRuleError("a fault rule must be a JSON object")
    _only(raw, {"match", "times", "action"}, "rule")
    match = raw.get("match") or {}
    if not isinstance(match, dict):
        raise FaultRuleError("match must be an object")
    _only(match, {"event_set_id", "event_ids"}, "match")
    event_set_id = match.get("event_set_id")
    if isinstance(event_set_id, int) and not isinstance(event_set_id, bool):
        event_set_id = str(event_set_id)
    if event_set_id is not None and not isinstance(event_set_id, str):
        raise FaultRuleError("match.event_set_id must be a string")
    event_ids = match.get("event_ids")
    if event_ids is not None and not (
        isinstance(event_ids, list) and event_ids and all(isinstance(i, str) for i in event_ids)
    ):
        raise FaultRuleError("match.event_ids must be a non-empty list of strings")
    times = raw.get("times")
    if times is not None and not (_is_int(times) and times >= 1):
        raise FaultRuleError("times must be a positive integer or null (forever)")
    action = raw.get("action")
    kind = _check_action(action, has_event_ids=event_ids is not None)
    assert isinstance(action, dict)
    return FaultRule(
        rule_id, kind, action, event_set_id, tuple(event_ids) if event_ids is not None else None, times, times
    )


def _check_action(action: object, *, has_event_ids: bool) -> str:
    if not isinstance(action, dict):
        raise FaultRuleError("action must be an object")
    kinds = [key for key in action if key in KINDS]
    if len(kinds) != 1:
        raise FaultRuleError(f"action must hold exactly one of: {', '.join(KINDS)}")
    kind: str = kinds[0]
    _only(action, {kind} | KINDS[kind], f"action {kind}")
    value = action[kind]
    checks: dict[str, Callable[[], bool]] = {
        "latency_ms": lambda: _is_int(value) and 0 <= value <= 600_000,
        "http_status": lambda: _is_int(value) and 500 <= value <= 599,
        "error": lambda: _check_error(value, action),
        "reject_events": lambda: value is True and has_event_ids and _optional_int(action, "error_subcode"),
        "timeout": lambda: value is True and _positive_number(action.get("seconds", 1)),
        "reset": lambda: value is True,
        "wrong_events_received": lambda: value is True,
    }
    if not checks[kind]():
        raise FaultRuleError(f"invalid {kind} action (see consumer/sandbox/faults.py)")
    return kind


def _check_error(error: object, action: dict[str, Any]) -> bool:
    if not isinstance(error, dict) or not _is_int(error.get("code")):
        return False
    allowed = {"code", "error_subcode", "is_transient", "message", "regain_minutes", "http_status", "type"}
    if not set(error) <= allowed:
        return False
    status = error.get("http_status", 400)
    return (
        _optional_int(error, "error_subcode")
        and isinstance(error.get("is_transient", False), bool)
        and isinstance(error.get("message", ""), str)
        and isinstance(error.get("type", ""), str)
        and _optional_int(error, "regain_minutes")
        and _optional_int(action, "regain_minutes")
        and _is_int(status)
        and 200 <= status <= 599
    )


def _only(obj: dict[str, Any], allowed: set[str] | frozenset[str], where: str) -> None:
    extra = sorted(set(obj) - set(allowed))
    if extra:
        raise FaultRuleError(f"unknown key(s) in {where}: {', '.join(extra)}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_int(obj: dict[str, Any], key: str) -> bool:
    return key not in obj or (_is_int(obj[key]) and obj[key] >= 0)


def _positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
