from __future__ import annotations

import asyncio
from typing import cast

from consumer.adapters.graph import Failure, GraphClient
from consumer.core.batching import Batch, BatchKey
from consumer.runtime.dispatch import Dispatch
from consumer.runtime.ledger import Ledger, Owner


class HeldClient:
    """Answers every request once `answer` is set (no events, so no records to settle)."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.requests = 0

    async def deliver(
        self, event_set_id: str, upload_tag: str | None, events: list[bytes]
    ) -> list[Failure | None]:
        self.requests += 1
        await self.answer.wait()
        return [None for _ in events]


def empty_batch() -> Batch[Owner]:
    return Batch(BatchKey("main", "111", None), 0.0)


async def test_half_a_round_of_batches_may_wait_behind_those_in_flight() -> None:
    client = HeldClient()
    dispatch = Dispatch({"main": cast(GraphClient, client)}, max_in_flight=4, ledger=cast(Ledger, None))
    assert dispatch.free_slots() == {"main": 4}
    for sent in range(1, 7):
        dispatch.send(empty_batch())
        await asyncio.sleep(0)
        # four in flight, then up to two waiting; the loop stops reading once two wait
        assert dispatch.free_slots() == {"main": max(0, 4 - sent)}
        assert dispatch.saturated() == (sent == 6)
    assert client.requests == 4
    client.answer.set()
    while dispatch.busy:
        await dispatch.wait_any(1.0)
    assert client.requests == 6
    assert (dispatch.saturated(), dispatch.free_slots()) == (False, {"main": 4})


class BuggyClient:
    """Raises on its first deliveries (a client bug), then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.halts: list[str] = []
        self.requests = 0

    async def deliver(
        self, event_set_id: str, upload_tag: str | None, events: list[bytes]
    ) -> list[Failure | None]:
        self.requests += 1
        await asyncio.sleep(0)
        if self.requests <= self.failures:
            raise KeyError("a bug")
        return [None for _ in events]

    def halt_for(self, exc: BaseException) -> None:
        self.halts.append(type(exc).__name__)


async def test_a_delivery_that_raises_halts_the_destination_and_is_tried_again() -> None:
    # before, the task died and its records were never settled: a silent stall
    client = BuggyClient(failures=2)
    dispatch = Dispatch({"main": cast(GraphClient, client)}, max_in_flight=1, ledger=cast(Ledger, None))
    dispatch.send(empty_batch())
    for _ in range(50):
        if not dispatch.busy:
            break
        await dispatch.wait_any(0.1)
    assert not dispatch.busy
    assert client.requests == 3
    assert client.halts == ["KeyError", "KeyError"]
