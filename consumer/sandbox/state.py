"""What the sandbox remembers: accepted events (the latest `max_stored_events`), every request,
fault rules, and Meta's offline dedup keys. One event loop only."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from aiohttp import web

from consumer.sandbox.faults import FaultBook

DEFAULT_MAX_STORED_EVENTS = 100_000
DEDUP_SECONDS = 7 * 86400  # Meta's offline dedup window (docs/meta-api.md)


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
    deduplicated_events: int = 0  # accepted (counted in events_received) but dropped as duplicates
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
    # Offline dedup: key digest -> (event_id of the kept event, a digest of its content, when
    # it was kept), oldest first.
    dedup_keys: OrderedDict[bytes, tuple[str | None, bytes, float]] = field(default_factory=OrderedDict)
    deduplicated: int = 0
    deduplicated_distinct: int = 0  # dropped although their event_id differs: conversions lost
    deduplicated_changed: int = 0  # dropped, same key but other content than the kept one
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.events = deque(maxlen=self.max_stored_events)

    def open_request(self, api_version: str, event_set_id: str) -> RequestRecord:
        record = RequestRecord(f"req-{next(self._ids):06d}", self.now(), api_version, event_set_id)
        self.requests.append(record)
        return record

    def store(self, record: RequestRecord, data: list[dict[str, Any]]) -> None:
        """Keep what Meta keeps: every event counts as received, a later offline event with the
        key of one kept in the last 7 days is dropped silently (first wins)."""
        record.accepted_events = len(data)
        now = self.now()
        self._expire(now)
        for event in data:
            key = dedup_key(record.event_set_id, event)
            if key is not None:
                kept = self.dedup_keys.get(key)
                content = _content_digest(event)
                if kept is not None:
                    record.deduplicated_events += 1
                    self.deduplicated += 1
                    self.deduplicated_distinct += kept[0] != event.get("event_id")
                    self.deduplicated_changed += kept[1] != content
                    continue
                self.dedup_keys[key] = (_str_or_none(event.get("event_id")), content, now)
            self.events.append(
                StoredEvent(
                    record.event_set_id,
                    record.upload_tag,
                    record.test_event_code,
                    record.request_id,
                    record.received_at,
                    event,
                )
            )

    def _expire(self, now: float) -> None:
        keys = self.dedup_keys
        while keys:
            key, (_, _, kept_at) = next(iter(keys.items()))
            if now - kept_at < DEDUP_SECONDS:
                break
            del keys[key]

    def reset(self) -> None:
        self.events.clear()
        self.requests.clear()
        self.faults.clear()
        self.dedup_keys.clear()
        self.deduplicated = self.deduplicated_distinct = self.deduplicated_changed = 0

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
            "deduplicated": self.deduplicated,
            "deduplicated_distinct": self.deduplicated_distinct,
            "deduplicated_changed": self.deduplicated_changed,
            "faults_applied": sum(r.fault is not None for r in self.requests),
            "by_status": dict(statuses),
            "by_error_code": dict(codes),
        }


STATE = web.AppKey("sandbox_state", SandboxState)


def new_state(
    tokens: Collection[str],
    app_secret: str | None,
    now: Callable[[], float],
    max_stored_events: int = DEFAULT_MAX_STORED_EVENTS,
) -> SandboxState:
    if isinstance(tokens, str):
        raise TypeError("tokens must be a collection of strings, not one string")
    if max_stored_events < 0:
        raise ValueError("max_stored_events must be 0 or more")
    return SandboxState(frozenset(tokens), app_secret, now, max_stored_events)


def dedup_key(event_set_id: str, event: dict[str, Any]) -> bytes | None:
    """Meta's offline dedup key, for events not from a website: dataset, event_name,
    event_time, item_number and order_id, or the customer fields when there is no order_id."""
    if event.get("action_source") == "website":
        return None
    custom = event.get("custom_data")
    custom = custom if isinstance(custom, dict) else {}
    order_id = custom.get("order_id")
    who = order_id if order_id not in (None, "") else event.get("user_data")
    parts = [
        event_set_id,
        event.get("event_name"),
        event.get("event_time"),
        custom.get("item_number"),
        order_id not in (None, ""),
        who,
    ]
    try:
        canonical = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON-shaped: validation has refused it before this
        return None
    return hashlib.sha256(canonical).digest()


def _content_digest(event: dict[str, Any]) -> bytes:
    return hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).digest()[:16]


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
