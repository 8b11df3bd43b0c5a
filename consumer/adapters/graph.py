"""Graph API client: auth, error classification, retries with backoff, split on invalid events.

Classification follows docs/meta-api.md#errors on code / subcode / is_transient, not HTTP status.
Policy for token and permission errors (190, 10, 3, 200-299): the destination is *halted*: its
batches wait and are re-probed every `facebook.auth_retry_seconds`; their records stay
uncommitted (nothing is lost, nothing is dead-lettered for a fixable credential problem) and
`fboc_destination_halted` plus an error log tell the operator.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog

from consumer.config.settings import DestinationSettings, FacebookSettings
from consumer.errors import FbocError
from consumer.telemetry.metrics import METRICS

log = structlog.get_logger("fboc.delivery")

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
UNKNOWN_MAX_ATTEMPTS = 3


class ErrorKind(enum.Enum):
    TRANSIENT = "transient"
    THROTTLED = "throttled"
    INVALID = "invalid"
    DATASET = "dataset"
    AUTH = "auth"
    UNKNOWN = "unknown"


THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
TRANSIENT_CODES = frozenset({1, 2, 341, 368})
AUTH_CODES = frozenset({190, 102, 10, 3, *range(200, 300)})
# What an operator should look at, by code; logged with the halt (never Meta's own text).
HALT_CAUSES: dict[int | None, str] = {
    190: "access token expired or invalid",
    102: "API session invalid: the access token was invalidated",
    100: "request or credentials refused (appsecret_proof missing or wrong: check the "
    "destination's app_secret), or an unsupported request",
    10: "the token lacks permission for the dataset",
    3: "the app lacks the capability for this call",
}


def code_label(code: object, status: int) -> str:
    """The `code` label of fboc_graph_errors_total. Meta's codes are small integers; whatever else
    an answer's body holds (a long string, a float, an object) is counted as "other", so a hostile
    or broken answer cannot create a new time series per request."""
    if code is None:
        return str(status)
    if type(code) is int and 0 <= code < 10_000_000:
        return str(code)
    return "other"


def classify(status: int, error: Mapping[str, Any] | None) -> ErrorKind:
    code = error.get("code") if error else None
    subcode = error.get("error_subcode") if error else None
    if code in AUTH_CODES:
        return ErrorKind.AUTH
    if code in THROTTLE_CODES:
        return ErrorKind.THROTTLED
    if code == 100 and subcode == 33:
        return ErrorKind.DATASET
    if (error and error.get("is_transient") is True) or code in TRANSIENT_CODES or status >= 500:
        return ErrorKind.TRANSIENT
    if code == 100:
        # Without a subcode it is the request (e.g. no appsecret_proof), not an event: splitting
        # would dead-letter every event for a fixable credential problem.
        return ErrorKind.INVALID if subcode is not None else ErrorKind.AUTH
    return ErrorKind.UNKNOWN


class GraphError(FbocError):
    """A failed request. The message names codes only: Meta's own text may echo event values."""

    def __init__(
        self,
        kind: ErrorKind,
        status: int = 0,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        regain_s: float | None = None,
        detail: str = "",
    ) -> None:
        self.kind, self.status, self.code, self.subcode = kind, status, code, subcode
        self.fbtrace_id, self.regain_s = fbtrace_id, regain_s
        super().__init__(
            f"{kind.value} error (http {status}, code {code}, subcode {subcode})"
            + (f": {detail}" if detail else "")
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """Why events of a batch could not be delivered: goes into dead-letter headers."""

    reason: str
    message: str
    attempts: int
    code: int | None = None
    subcode: int | None = None
    fbtrace_id: str | None = None

    @classmethod
    def of(cls, reason: str, err: GraphError, attempts: int) -> Failure:
        return cls(reason, str(err), attempts, err.code, err.subcode, err.fbtrace_id)


def _regain_seconds(header: str | None) -> float | None:
    """`estimated_time_to_regain_access` (minutes) from X-Business-Use-Case-Usage."""
    if not header:
        return None
    try:
        usage = orjson.loads(header)
    except orjson.JSONDecodeError:
        return None
    minutes = [
        entry.get("estimated_time_to_regain_access", 0)
        for entries in (usage.values() if isinstance(usage, dict) else [])
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    numbers = [m for m in minutes if isinstance(m, int | float)]
    return max(numbers) * 60.0 if numbers and max(numbers) > 0 else None


class GraphClient:
    """Sends batches of one destination. One instance per destination, shared by its batches."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        facebook: FacebookSettings,
        dest: DestinationSettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._fb = facebook
        self._dest = dest
        self._sleep = sleep
        self._clock = clock
        token = dest.access_token.get_secret_value() if dest.access_token else ""
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        extras: dict[str, str] = {}
        if dest.partner_agent:  # only a string agreed with Meta: unset by default
            extras["partner_agent"] = dest.partner_agent
        if dest.app_secret is not None:
            extras["appsecret_proof"] = hmac.new(
                dest.app_secret.get_secret_value().encode(), token.encode(), hashlib.sha256
            ).hexdigest()
        if dest.test_event_code:
            extras["test_event_code"] = dest.test_event_code
        self._extras = extras
        self._base = f"{facebook.graph_url.rstrip('/')}/{facebook.api_version}"
        self._resume_at = 0.0  # destination-wide gate: throttling and halts slow every batch
        self.halted = False

    def _body(self, events: Sequence[bytes], upload_tag: str | None) -> bytes:
        extras = dict(self._extras)
        if upload_tag:
            extras["upload_tag"] = upload_tag
        tail = b"]," + orjson.dumps(extras)[1:] if extras else b"]}"  # no extras: no trailing comma
        return b'{"data":[' + b",".join(events) + tail

    async def post(self, event_set_id: str, upload_tag: str | None, events: Sequence[bytes]) -> None:
        """One request; raises GraphError unless Meta acknowledged every event."""
        url = f"{self._base}/{event_set_id}/events"
        timeout = aiohttp.ClientTimeout(total=self._fb.timeout_seconds)
        started = time.perf_counter()
        try:
            async with self._session.post(
                url, data=self._body(events, upload_tag), headers=self._headers, timeout=timeout
            ) as resp:
                raw = await resp.read()
                status, usage = resp.status, resp.headers.get("X-Business-Use-Case-Usage")
        except TimeoutError:
            raise GraphError(ErrorKind.TRANSIENT, detail="timeout") from None
        except aiohttp.ClientError as exc:
            raise GraphError(ErrorKind.TRANSIENT, detail=type(exc).__name__) from None
        finally:
            METRICS.request_seconds.labels(self._dest.name).observe(time.perf_counter() - started)
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {}
        error = body.get("error") if isinstance(body, dict) else None
        if status == 200 and error is None:
            received = body.get("events_received") if isinstance(body, dict) else None
            if received == len(events):
                return
            raise GraphError(ErrorKind.TRANSIENT, status, detail="events_received mismatch")
        error = error if isinstance(error, dict) else {}
        kind = classify(status, error)
        METRICS.graph_errors.labels(self._dest.name, code_label(error.get("code"), status)).inc()
        raise GraphError(
            kind,
            status,
            error.get("code"),
            error.get("error_subcode"),
            error.get("fbtrace_id"),
            _regain_seconds(usage),
        )

    async def _gate(self) -> bool:
        """Wait while the destination is throttled or halted; True when it waited for a halt."""
        wait = self._resume_at - self._clock()
        if wait <= 0:
            return False
        halted = self.halted
        await self._sleep(wait)
        return halted

    def _backoff(self, attempt: int) -> float:
        delay: float = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)

    async def deliver(
        self, event_set_id: str, upload_tag: str | None, events: Sequence[bytes]
    ) -> list[Failure | None]:
        """Deliver what can be delivered; one entry per event: None when delivered."""
        results: list[Failure | None] = [None] * len(events)
        await self._deliver(event_set_id, upload_tag, events, list(range(len(events))), results)
        return results

    async def _deliver(
        self,
        event_set_id: str,
        upload_tag: str | None,
        events: Sequence[bytes],
        indexes: list[int],
        results: list[Failure | None],
    ) -> None:
        attempts = 0
        started = self._clock()
        while True:
            if await self._gate():  # time spent halted is not retry time: the budget restarts
                attempts, started = 0, self._clock()
            attempts += 1
            try:
                await self.post(event_set_id, upload_tag, [events[i] for i in indexes])
            except GraphError as err:
                if err.kind is ErrorKind.AUTH:
                    attempts = 0
                failure = await self._handle(err, attempts, started, len(indexes))
                if failure == "split":
                    half = len(indexes) // 2
                    for part in (indexes[:half], indexes[half:]):
                        await self._deliver(event_set_id, upload_tag, events, part, results)
                    return
                if isinstance(failure, Failure):
                    for i in indexes:
                        results[i] = failure
                    return
                continue
            except Exception as exc:  # the request could not even be sent
                attempts = 0
                self.halt_for(exc)
                continue
            if self.halted:
                self.halted = False
                METRICS.destination_halted.labels(self._dest.name).set(0)
                log.info("destination_resumed", destination=self._dest.name)
            return

    async def _handle(
        self, err: GraphError, attempts: int, started: float, size: int
    ) -> Failure | str | None:
        """Decide what to do after a failed request: a Failure, "split", or None to retry."""
        if err.kind is ErrorKind.INVALID:
            return "split" if size > 1 else Failure.of("graph_invalid_event", err, attempts)
        if err.kind is ErrorKind.DATASET:
            log.error("dataset_unavailable", destination=self._dest.name, code=err.code, subcode=err.subcode)
            return Failure.of("graph_dataset_unavailable", err, attempts)
        if err.kind is ErrorKind.AUTH:
            self._halt(
                code=err.code,
                subcode=err.subcode,
                cause=HALT_CAUSES.get(err.code, "the token lacks permission"),
            )
            return None
        limit = UNKNOWN_MAX_ATTEMPTS if err.kind is ErrorKind.UNKNOWN else self._fb.max_attempts
        if attempts >= limit or self._clock() - started >= self._fb.max_retry_seconds:
            return Failure.of("graph_retries_exhausted", err, attempts)
        METRICS.retries.labels(self._dest.name, err.kind.value).inc()
        delay = self._backoff(attempts)
        if err.kind is ErrorKind.THROTTLED:
            delay = max(delay, err.regain_s or 0.0)
            self._resume_at = max(self._resume_at, self._clock() + delay)
            log.warning("throttled", destination=self._dest.name, code=err.code, wait_s=round(delay, 2))
            return None
        await self._sleep(delay)
        return None

    def halt_for(self, exc: BaseException) -> None:
        """A request failed before Meta answered, for a reason retrying cannot fix by itself
        (a header aiohttp refuses, a client bug): halt as for a token error. Only the exception's
        type is logged: its message may quote the header, and the header holds the token."""
        self._halt(
            code=None,
            subcode=None,
            error=type(exc).__name__,
            cause="the request could not be sent (an access token holding a newline"
            " or control character, or a client bug)",
        )

    def _halt(self, **why: Any) -> None:
        if not self.halted:
            log.error(
                "destination_halted",
                destination=self._dest.name,
                retry_in_s=self._fb.auth_retry_seconds,
                **why,
            )
        self.halted = True
        METRICS.destination_halted.labels(self._dest.name).set(1)
        self._resume_at = max(self._resume_at, self._clock() + self._fb.auth_retry_seconds)
