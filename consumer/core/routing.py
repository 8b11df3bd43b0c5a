"""Event names and event sets (docs/dialects.md#routing): one event → one output per (name, event set)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from consumer.config.settings import DestinationSettings
from consumer.core.capi.event import Output, ServerEvent
from consumer.errors import Rejected

# build(event_name, mapped_through_config) -> the server event for that name
EventBuilder = Callable[[str, bool], ServerEvent]


def event_names(
    source_name: str, dest: DestinationSettings, builtin: Mapping[str, str], default_unmapped: str
) -> list[tuple[str, bool]]:
    """The output names for a source event name, each with whether event_mapping produced it."""
    mapped = dest.event_mapping.get(source_name)
    if mapped:
        return [(name, True) for name in dict.fromkeys(mapped)]
    standard = builtin.get(source_name)
    if standard:
        return [(standard, False)]
    policy = dest.unmapped_events or default_unmapped
    if policy == "reject":
        raise Rejected("unmapped_event", "the event name has no mapping to a standard event")
    if policy == "passthrough":
        return [(source_name, False)]
    return [("Other", False)]


def event_set_ids(name: str, dest: DestinationSettings) -> tuple[str, ...]:
    return dest.event_sets.get(name) or dest.default_event_sets


def fan_out(
    source_name: str,
    dest: DestinationSettings,
    builtin: Mapping[str, str],
    default_unmapped: str,
    build: EventBuilder,
    upload_tag: str | None,
) -> list[Output]:
    outputs: list[Output] = []
    for name, via_mapping in event_names(source_name, dest, builtin, default_unmapped):
        sets = event_set_ids(name, dest)
        if not sets:
            continue
        event = build(name, via_mapping)
        for set_id in sets:  # a loop, not a generator: no generator object a record
            outputs.append(Output(set_id, event, upload_tag))
    if not outputs:
        raise Rejected("no_event_set", "no event set is configured for this event")
    return outputs
