from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from consumer.sandbox import SandboxThread
from tests.helpers import create_topic
from tests.kafka_broker import Broker, start_broker_or_fail


@pytest.fixture(scope="session")
def kafka() -> Iterator[Broker]:
    broker = start_broker_or_fail()
    yield broker
    broker.remove()


@pytest.fixture
def new_topic(kafka: Broker) -> Callable[..., str]:
    def make(partitions: int = 4, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        create_topic(kafka.bootstrap, name, partitions)
        return name

    return make


@pytest.fixture
def group_id() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sandbox() -> Iterator[SandboxThread]:
    with SandboxThread() as box:
        yield box
