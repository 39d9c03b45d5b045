"""The jobs' collector settings (connectors/ops/runtime.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from connectors.ops.runtime import GEN0_THRESHOLD, tune_gc


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_freezes_start_up_and_raises_gen0(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GDS_GC_GEN0", raising=False)
    kept = [object() for _ in range(10)]  # still referenced: frozen, not collected
    assert tune_gc() == (GEN0_THRESHOLD, *gc.get_threshold()[1:])
    assert gc.get_freeze_count() > len(kept)


def test_environment_override_and_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GDS_GC_GEN0", "1234")
    assert tune_gc()[0] == 1234
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    monkeypatch.setenv("GDS_GC_GEN0", "0")
    assert tune_gc() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
