"""What the sandbox remembers: accepted events (the latest `max_stored_events`), every request,
fault rules. One event loop only."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from consumer.sandbox.faults import FaultBook

DEFAULT_MAX_STORED_EVENTS = 100_000


@dataclass
class RequestRecord:
    """One events request. Never holds the token, the proof or event contents."""

    request_id: str
    received_at: float
    api_version: str
    event_set_id: str
    events: int | None = None
    upload_tag: str | None = None
    test_event_code: str | None = None
    status: int | None = None  # None: still held, reset by a fault, or the client went away
    error_code: int | None = None
    error_subcode: int | None = None
    fault: str | None = None
    fault_id: str | None = None
    accepted_events: int = 0
    done: bool = False
    client_disconnected: bool = False  # the client gave up before the answer

    def note_body(self, body: dict[str, Any]) -> None:
        data = body.get("data")
        self.events = len(data) if isinstance(data, list) else None
        self.upload_tag = _str_or_none(body.get("upload_tag"))
        self.test_event_code = _str_or_none(body.get("test_event_code"))


@dataclass
class StoredEvent:
    event_set_id: str
    upload_tag: str | None
    test_event_code: str | None
    request_id: str
    received_at: float
    event: dict[str, Any]


@dataclass
class SandboxState:
    tokens: frozenset[str]
    app_secret: str | None
    now: Callable[[], float]
    # Bounded so that a long load test does not grow the sandbox without end (a million stored
    # events slowed its answers); the counts in stats() cover every accepted event.
    max_stored_events: int = DEFAULT_MAX_STORED_EVENTS
    events: deque[StoredEvent] = field(init=False)
    requests: list[RequestRecord] = field(default_factory=list)
    faults: FaultBook = field(default_factory=FaultBook)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.events = deque(maxlen=self.max_stored_events)

    def open_request(self, api_version: str, event_set_id: str) -> RequestRecord:
        record = RequestRecord(f"req-{next(self._ids):06d}", self.now(), api_version, event_set_id)
        self.requests.append(record)
        return record

    def store(self, record: RequestRecord, data: list[dict[str, Any]]) -> None:
        record.accepted_events = len(data)
        self.events.extend(
            StoredEvent(record.event_set_id, record.upload_tag, record.test_event_code,
                        record.request_id, record.received_at, event)
            for event in data
        )

    def reset(self) -> None:
        self.events.clear()
        self.requests.clear()
        self.faults.clear()

    def list_events(self, event_set_id: str | None) -> list[dict[str, Any]]:
        return [asdict(e) for e in self.events if event_set_id in (None, e.event_set_id)]

    def list_requests(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.requests]

    def stats(self) -> dict[str, Any]:
        statuses = Counter("none" if r.status is None else str(r.status) for r in self.requests)
        codes = Counter(str(r.error_code) for r in self.requests if r.error_code is not None)
        accepted = sum(r.accepted_events > 0 for r in self.requests)
        in_progress = sum(not r.done for r in self.requests)
        return {
            "requests": len(self.requests),
            "accepted_requests": accepted,
            "rejected_requests": len(self.requests) - accepted - in_progress,
            "in_progress": in_progress,
            "accepted_events": sum(r.accepted_events for r in self.requests),
            "stored_events": len(self.events),
            "faults_applied": sum(r.fault is not None for r in self.requests),
            "by_status": dict(statuses),
            "by_error_code": dict(codes),
        }


STATE = web.AppKey("sandbox_state", SandboxState)


def new_state(tokens: Collection[str], app_secret: str | None, now: Callable[[], float],
              max_stored_events: int = DEFAULT_MAX_STORED_EVENTS) -> SandboxState:
    if isinstance(tokens, str):
        raise TypeError("tokens must be a collection of strings, not one string")
    if max_stored_events < 0:
        raise ValueError("max_stored_events must be 0 or more")
    return SandboxState(frozenset(tokens), app_secret, now, max_stored_events)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
