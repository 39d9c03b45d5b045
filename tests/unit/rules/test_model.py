"""The rule model (rules/model.py): severities as Prometheus rules write them."""

from __future__ import annotations

import pickle

import pytest

from rules.model import Severity


def test_an_unknown_severity_is_one_object_that_survives_pickling() -> None:
    page = Severity("page")
    assert page is Severity("page") and pickle.loads(pickle.dumps(page)) is page
    assert not page.is_known and Severity.CRITICAL.is_known and page.rank < Severity.WARNING.rank
    with pytest.raises(ValueError):
        Severity("")
