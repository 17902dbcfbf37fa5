"""`hubbub serve` sets the garbage collector for a server (server/app.py, ADR 0025)."""

import gc
from collections.abc import Iterator

import pytest

from hubbub.server.app import GC_YOUNG, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_startup_objects_are_frozen_and_young_collections_wait(restored_gc: None) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    survivor = [object() for _ in range(10)]  # a container that exists at startup
    tune_gc()
    assert gc.get_freeze_count() > 0
    # Frozen: in no generation a collection walks.
    assert gc.is_tracked(survivor)
    assert all(obj is not survivor for obj in gc.get_objects())
    assert gc.get_threshold() == (GC_YOUNG, 20, 100)
