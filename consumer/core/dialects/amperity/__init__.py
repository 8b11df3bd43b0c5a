"""Amperity "Meta Ads Offline Events" rows (docs/dialects.md#amperity).

One Kafka record is one itemized transaction row. Rows of one order become one event:

    grouper.seen(tp, offset, record_time_ms, clock_ms)      # every record of the partition
    row = check_row(payload, ctx, dest, now)                # Rejected / Filtered / Row
    grouper.add(tp, (dest.name, row.order_id), row, token, offset, record_time_ms)
    for rows, tokens, tp, first, last in grouper.due(clock_ms):
        outputs = transform_rows(rows, dest, now)           # Rejected → all the tokens

`transform` (one row alone) is the registry's per-record entry point; `preview_group` is what
`fboc preview` uses to group the rows of one order like the service does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from consumer.config.settings import DestinationSettings
from consumer.core.capi.event import Output, RecordContext
from consumer.core.dialects import Dialect, Grouping
from consumer.core.dialects.amperity.events import DEFAULT_UNMAPPED, item_number, transform_rows
from consumer.core.dialects.amperity.grouper import Group, OrderGrouper
from consumer.core.dialects.amperity.rows import MATCH_POLICY, Row, check_row
from consumer.errors import RecordOutcome

__all__ = [
    "DIALECT",
    "Group",
    "OrderGrouper",
    "Row",
    "check_row",
    "item_number",
    "preview_group",
    "transform",
    "transform_rows",
]


def transform(
    payload: Mapping[str, Any], ctx: RecordContext, dest: DestinationSettings, now: int
) -> list[Output]:
    """One row as an order of its own."""
    return transform_rows([check_row(payload, ctx, dest, now)], dest, now)


def preview_group(
    payloads: Sequence[tuple[int, Mapping[str, Any]]], dest: DestinationSettings, now: int
) -> list[tuple[int, list[Output] | RecordOutcome]]:
    """`fboc preview` (docs/operations.md): (line index, row) pairs → (index, outputs or outcome), by index.

    All valid rows of one order form one event, reported at the index of the order's first valid
    row (the other rows of the order get no line); a row that fails gets its own line. There is
    no time window here: the whole input counts as one window.
    """
    results: dict[int, list[Output] | RecordOutcome] = {}
    orders: dict[str, list[tuple[int, Row]]] = {}
    for index, payload in payloads:
        try:
            row = check_row(payload, RecordContext(now * 1000, payload), dest, now)
        except RecordOutcome as exc:
            results[index] = exc
            continue
        orders.setdefault(row.order_id, []).append((index, row))
    for members in orders.values():
        first = members[0][0]
        try:
            results[first] = transform_rows([row for _, row in members], dest, now)
        except RecordOutcome as exc:
            results[first] = exc
    return sorted(results.items(), key=lambda item: item[0])


DIALECT = Dialect(
    "amperity",
    transform,
    DEFAULT_UNMAPPED,
    MATCH_POLICY,
    Grouping(
        check=check_row,
        key=lambda row: row.order_id,
        emit=transform_rows,
        preview=preview_group,
        grouper=OrderGrouper,
    ),
)
