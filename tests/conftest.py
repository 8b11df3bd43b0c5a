from __future__ import annotations

import importlib.util
import os
import tomllib
import uuid
from collections.abc import Callable, Iterator

import pytest

from consumer.sandbox import SandboxThread
from tests.helpers import ROOT, create_topic
from tests.kafka_broker import Broker, start_broker_or_fail

# Set by scripts/test-compiled: the run is void unless it tests the compiled modules.
EXPECT_COMPILED = "FBOC_EXPECT_COMPILED"


def compiled_modules() -> list[str]:
    """The modules hatch_build.py compiles (pyproject.toml), as dotted names."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    paths = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["custom"]["compile"]
    return [p.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for p in paths]


def not_compiled() -> list[str]:
    return [
        name
        for name in compiled_modules()
        if not str(getattr(importlib.util.find_spec(name), "origin", "")).endswith(".so")
    ]


def pytest_report_header() -> str:
    plain = not_compiled()
    return "fboc modules: plain Python" if plain else "fboc modules: compiled by mypyc"


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get(EXPECT_COMPILED) == "1" and (plain := not_compiled()):
        raise pytest.UsageError(f"{EXPECT_COMPILED}=1 but these modules are plain Python: {', '.join(plain)}")


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
