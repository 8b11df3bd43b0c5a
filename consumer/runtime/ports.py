"""What the pipeline loop uses of the world around it, as protocols: where records come from
(`Source`), where dead letters go (`DeadLetterSink`) and where events go (`Destination`).

Kafka and the Graph API implement them (consumer/adapters/kafka/source.py, kafka/deadletter.py,
graph.py); tests/runtime/memory.py implements them in memory, so the loop is tested without a
broker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from confluent_kafka import KafkaError

from consumer.adapters.graph import Failure
from consumer.adapters.kafka.deadletter import DeadLetter
from consumer.adapters.kafka.source import SourceRecord
from consumer.core.offsets import TopicPartition


class SourceEvents(Protocol):
    """What a source reports to the loop; only from inside `Source.poll` (Kafka: its poll thread)."""

    def on_assign(self, tps: list[TopicPartition]) -> None:
        """These partitions are ours now."""

    def on_revoke(self, tps: list[TopicPartition]) -> None:
        """These go to another consumer once this returns: commit what is final of them first."""

    def on_lost(self, tps: list[TopicPartition]) -> None:
        """These are gone already (another consumer may read them): commit nothing of them."""

    def on_commit_failed(self, tps: list[TopicPartition], error: str) -> None:
        """An asynchronous commit of these partitions failed (`error`: a name, never a value)."""

    def on_error(self, err: KafkaError) -> None:
        """librdkafka's error callback (broker outages)."""

    def on_stats(self, raw: str) -> None:
        """librdkafka's statistics, JSON (consumer lag)."""


class Source(Protocol):
    """The records to deliver, their commits, and the group's rebalances."""

    def subscribe(self, events: SourceEvents) -> None:
        """Join the group; rebalances and commit results go to `events`, from inside `poll`."""

    async def poll(self, max_records: int, wait_s: float) -> list[SourceRecord]:
        """Up to `max_records` records in partition order, waiting up to `wait_s` for one."""

    async def reachable(self, wait_s: float) -> bool:
        """Whether a broker answers now."""

    def commit(self, offsets: dict[TopicPartition, int], *, asynchronous: bool = True) -> None:
        """Commit next-offsets; raises KafkaException when the commit cannot even be made."""

    async def finish(self, offsets: dict[TopicPartition, int], wait_s: float) -> bool:
        """The last commit (synchronous) and leave the group, within `wait_s`; False if not done."""

    def assignment(self) -> list[TopicPartition]:
        """The partitions assigned now."""

    def pause(self, tps: list[TopicPartition]) -> None:
        """Stop returning records of these partitions (the group still sees us: poll goes on)."""

    def resume(self, tps: list[TopicPartition]) -> None:
        """Return their records again."""


class DeadLetterWrites(Protocol):
    """What the ledger needs of the dead-letter sink: writes, each acknowledged later."""

    def write(self, src: SourceRecord, dl: DeadLetter, on_done: Callable[[], None]) -> None:
        """Queue a dead letter, never raising; `on_done` runs from a later `poll` or `flush` once stored."""


class DeadLetterSink(DeadLetterWrites, Protocol):
    """Where records that cannot be delivered are kept (a record is final once its write is acked)."""

    @property
    def pending(self) -> int:
        """Writes not acknowledged yet."""

    def poll(self) -> None:
        """Run the acknowledgements that arrived; raises `DeadLetterProducerFailed` for a lost write."""

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` s for every write (raising as `poll`); how many are unacknowledged."""


class Destination(Protocol):
    """One Graph API destination (its retries, throttling and halts are its own)."""

    @property
    def halted(self) -> bool:
        """Waiting for an operator (token or permission refused): /readyz reports it."""

    async def deliver(
        self, event_set_id: str, upload_tag: str | None, events: Sequence[bytes]
    ) -> list[Failure | None]:
        """Deliver the events to an event set: per event, None once delivered or why it failed."""

    def halt_for(self, exc: BaseException) -> None:
        """`deliver` raised (a bug): halt the destination until its re-probe wait passes."""
