"""The deliver stage: closed batches go to the Graph API, at most `max_in_flight` requests at
once per destination. Answers wait until the loop calls `settle`, which hands them to the record
ledger: records are settled on the loop's turn, never inside a delivery task, so a fatal outcome
raises into the loop."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Sequence

import structlog

from consumer.adapters.graph import Failure, GraphClient
from consumer.core.batching import Batch
from consumer.runtime.ledger import Ledger, Owner
from consumer.telemetry.metrics import METRICS, event_label

log = structlog.get_logger("fboc.pipeline")


class Dispatch:
    def __init__(self, clients: dict[str, GraphClient], max_in_flight: int, ledger: Ledger) -> None:
        self._clients = clients
        self._max_in_flight = max_in_flight
        self._full_at = max_in_flight + (max_in_flight + 1) // 2  # see saturated()
        self._ledger = ledger
        self._answers: deque[tuple[Batch[Owner], list[Failure | None]]] = deque()
        self._slots = {name: asyncio.Semaphore(max_in_flight) for name in clients}
        self._tasks: set[asyncio.Task[None]] = set()
        self._outstanding: Counter[str] = Counter()  # batches handed over, per destination

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def saturated(self) -> bool:
        """Some destination has every slot taken and half a round of batches (one per two
        slots, rounded up) waiting behind them: reading on would only grow the buffer. Several
        may wait so that slots freeing together each find a batch ready; a full round cost
        more peak memory than it gained (bench/README.md, "Results")."""
        return any(n >= self._full_at for n in self._outstanding.values())

    def free_slots(self) -> dict[str, int]:
        """In-flight slots per destination that no batch has taken or waits for."""
        return {d: max(0, self._max_in_flight - self._outstanding[d]) for d in self._clients}

    async def wait_any(self, wait_s: float) -> None:
        """Until one batch is settled, or the timeout."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)

    def settle(self) -> None:
        """Hand every answer received since the last call to the ledger, in arrival order."""
        answers = self._answers
        while answers:
            batch, results = answers.popleft()
            key = batch.key
            self._ledger.answered(key.destination, key.event_set_id, batch.owners, results)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def send(self, batch: Batch[Owner]) -> None:
        destination = batch.key.destination
        self._outstanding[destination] += 1
        task = asyncio.create_task(self._deliver(batch))
        self._tasks.add(task)

        def settled(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self._outstanding[destination] -= 1

        task.add_done_callback(settled)

    async def _deliver(self, batch: Batch[Owner]) -> None:
        key = batch.key
        async with self._slots[key.destination]:
            METRICS.in_flight.labels(key.destination).inc()
            try:
                results = await self._send(key.destination, key.event_set_id, key.upload_tag, batch.events)
            finally:
                METRICS.in_flight.labels(key.destination).dec()
        METRICS.batch_events.observe(len(batch))
        delivered = sum(1 for r in results if r is None)
        log.info(
            "batch_sent",
            destination=key.destination,
            event_set_id=key.event_set_id,
            events=len(batch),
            delivered=delivered,
            failed=len(batch) - delivered,
        )
        sent: Counter[str] = Counter()
        for (_records, event_name), failure in zip(batch.owners, results, strict=True):
            if failure is None:
                sent[event_name] += 1
        for event_name, count in sent.items():
            METRICS.events_sent.labels(key.destination, key.event_set_id, event_label(event_name)).inc(count)
        self._answers.append((batch, results))

    async def _send(
        self, destination: str, event_set_id: str, upload_tag: str | None, events: Sequence[bytes]
    ) -> list[Failure | None]:
        """A delivery that raised (a client bug) halts the destination and is tried again after
        its re-probe wait: its records stay held and visible, never silently stuck."""
        client = self._clients[destination]
        while True:
            try:
                return await client.deliver(event_set_id, upload_tag, events)
            except Exception as exc:  # anything but cancellation
                client.halt_for(exc)
