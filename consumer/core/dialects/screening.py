"""What every dialect's events pass on their way out (README, "What is never sent"):
customer data screened out of custom_data and URLs (consumer.core.capi.custom), then the checks that
would otherwise fail a whole request (action_source requirements, ISO 4217 currency).

`get_dialect` wraps each dialect with `screened`, so the service, `fboc preview` and replays see
the same events. The drops are counted here, once per record and property, in
`fboc_custom_data_dropped_total{reason}`: the screening itself stays pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from consumer.config.settings import DestinationSettings
from consumer.core.capi.custom import Drop, Screen, has_email, has_phone, screen_event
from consumer.core.capi.event import Output, RecordContext, ServerEvent
from consumer.core.capi.rules import check_action_source, check_currency
from consumer.errors import RecordOutcome
from consumer.telemetry.metrics import METRICS

if TYPE_CHECKING:
    from consumer.core.dialects import Dialect, PreviewResult, Transform


# Screen of each destination, by identity (settings are frozen; an entry holds its destination,
# so its id is not reused while it is here). Bounded: a caller making settings per record
# starts it again.
_SCREENS: Final[dict[int, tuple[DestinationSettings, Screen]]] = {}
MAX_SCREENS: Final = 64


def screen_for(dest: DestinationSettings) -> Screen:
    known = _SCREENS.get(id(dest))
    if known is not None and known[0] is dest:
        return known[1]
    screen = Screen(
        dest.allowed_custom_properties,
        dest.default_country.upper(),
        dest.date_order,
        dest.external_id_normalization,
    )
    if len(_SCREENS) >= MAX_SCREENS:
        _SCREENS.clear()
    _SCREENS[id(dest)] = (dest, screen)
    return screen


def finish(outputs: list[Output], dest: DestinationSettings) -> list[Output]:
    """The outputs as they may be sent; raises `Rejected` like a dialect. An event shared by
    several outputs (one per event set) stays shared."""
    screen = screen_for(dest)
    done: dict[int, ServerEvent] = {}
    drops: set[Drop] = set()
    result: list[Output] = []
    for out in outputs:
        event = done.get(id(out.event))
        if event is None:
            event, dropped = screen_event(out.event, screen)
            check_action_source(event)
            check_currency(event)
            drops.update(dropped)
            done[id(out.event)] = event
        tag = out.upload_tag  # request-level, from the record in segment: screened too
        if tag is not None and (has_email(tag) or has_phone(tag, screen.default_country)):
            drops.add(("upload_tag", "email_value" if has_email(tag) else "phone_value"))
            out = out._replace(upload_tag=None)
        result.append(out if event is out.event else out._replace(event=event))
    for _where, reason in drops:
        METRICS.custom_data_dropped.labels(reason).inc()
    return result


class _Transform:
    __slots__ = ("inner",)

    def __init__(self, inner: Transform) -> None:
        self.inner = inner

    def __call__(
        self, payload: Mapping[str, Any], ctx: RecordContext, dest: DestinationSettings, now: int
    ) -> list[Output]:
        return finish(self.inner(payload, ctx, dest, now), dest)


class _Emit:
    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, parts: Sequence[Any], dest: DestinationSettings, now: int) -> list[Output]:
        return finish(self.inner(parts, dest, now), dest)


class _Preview:
    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(
        self, payloads: Sequence[tuple[int, Mapping[str, Any]]], dest: DestinationSettings, now: int
    ) -> PreviewResult:
        results: PreviewResult = []
        for index, result in self.inner(payloads, dest, now):
            if isinstance(result, list):
                try:
                    result = finish(result, dest)
                except RecordOutcome as exc:
                    result = exc
            results.append((index, result))
        return results


def screened(dialect: Dialect) -> Dialect:
    grouping = dialect.grouping
    if grouping is not None:
        grouping = dataclasses.replace(
            grouping, emit=_Emit(grouping.emit), preview=_Preview(grouping.preview)
        )
    return dataclasses.replace(dialect, transform=_Transform(dialect.transform), grouping=grouping)
