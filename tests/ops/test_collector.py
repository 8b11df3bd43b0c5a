"""The garbage collector as `fboc run` serves with it (consumer/ops/cli.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from consumer.ops.cli import COLLECTOR_THRESHOLDS, prepare_collector


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector")
def test_the_start_up_heap_is_frozen_and_young_objects_are_collected_less_often() -> None:
    gc.unfreeze()
    prepare_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == COLLECTOR_THRESHOLDS
    assert COLLECTOR_THRESHOLDS[0] > 700  # Python's default: every few hundred new objects


@pytest.mark.usefixtures("collector")
def test_garbage_made_before_start_up_is_collected_not_frozen() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    gc.disable()
    try:
        garbage = weakref.ref(Cycle())  # unreachable at once, and only the collector frees it
        assert garbage() is not None
        prepare_collector()
        assert garbage() is None
    finally:
        gc.enable()
