"""Grouping rows by order in time (docs/dialects.md#amperity): pure, the caller passes the time in."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from consumer.core.dialects.amperity.rows import Row

T = TypeVar("T")
OrderKey = tuple[str, str]  # (destination name, order_id)


class Group(NamedTuple, Generic[T]):
    """Rows to transform together, the caller's tokens for them (same order), and whether the
    order was emitted before (then `transform_rows(..., late=True)`)."""

    rows: list[Row]
    tokens: list[T]
    late: bool


@dataclass(slots=True)
class _Open(Generic[T]):
    opened_ms: float
    rows: list[Row] = field(default_factory=list)
    tokens: list[T] = field(default_factory=list)
    late: bool = False


class OrderGrouper(Generic[T]):
    """Holds an order's rows for `window_ms` after its first row, then hands them out together.

    Memory is bounded: at most `max_open_orders` orders wait (past that the oldest is handed out
    early), and the keys of the last `max_sent_orders` emitted orders are remembered (an LRU) to
    recognise late rows. Late rows wait a window like a new order and form a further part of it:
    a replay after a crash, which has forgotten the order, groups the same rows the same way.
    A late row whose order was forgotten (evicted, or emitted before a restart or rebalance)
    starts a new order. Every event's item_number is a hash of its own rows, so Meta keeps each
    part beside the earlier ones and still drops a replay of the same rows.

    `now_ms` must not go backwards (use a monotonic clock): orders are closed oldest first.
    """

    def __init__(self, window_ms: int, max_open_orders: int = 10_000, max_sent_orders: int = 100_000) -> None:
        self.window_ms = window_ms
        self.max_open_orders = max(1, max_open_orders)
        self.max_sent_orders = max(0, max_sent_orders)
        self._open: OrderedDict[OrderKey, _Open[T]] = OrderedDict()  # oldest first
        self._sent: OrderedDict[OrderKey, None] = OrderedDict()  # least recently used first
        self._ready: list[Group[T]] = []
        self._held = 0

    def __len__(self) -> int:
        """Rows held (waiting or ready)."""
        return self._held

    def add(self, key: OrderKey, row: Row, token: T, now_ms: float) -> None:
        self._held += 1
        order = self._open.get(key)
        if order is not None:
            order.rows.append(row)
            order.tokens.append(token)
            return
        late = key in self._sent
        if late:
            self._sent.move_to_end(key)
        if len(self._open) >= self.max_open_orders:
            self._close(next(iter(self._open)))
        self._open[key] = _Open(now_ms, [row], [token], late)

    def due(self, now_ms: float) -> list[Group[T]]:
        """Orders whose window has passed (and late rows), oldest first."""
        while self._open:
            key, order = next(iter(self._open.items()))
            if now_ms - order.opened_ms < self.window_ms:
                break
            self._close(key)
        return self._take()

    def drain(self) -> list[Group[T]]:
        """Everything, now (shutdown, revocation)."""
        while self._open:
            self._close(next(iter(self._open)))
        return self._take()

    def next_due_ms(self) -> float | None:
        """When `due` will next return something (None: nothing held)."""
        if self._ready:
            return 0.0
        if self._open:
            return next(iter(self._open.values())).opened_ms + self.window_ms
        return None

    def _close(self, key: OrderKey) -> None:
        order = self._open.pop(key)
        self._ready.append(Group(order.rows, order.tokens, order.late))
        if self.max_sent_orders:
            self._sent[key] = None
            self._sent.move_to_end(key)
            while len(self._sent) > self.max_sent_orders:
                self._sent.popitem(last=False)

    def _take(self) -> list[Group[T]]:
        ready, self._ready = self._ready, []
        self._held -= sum(len(group.rows) for group in ready)
        return ready
