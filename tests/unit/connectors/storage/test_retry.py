"""connectors.storage.retry: the storage retry loop (on tenacity) keeps its contract."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from connectors.storage.retry import STORAGE_RETRY, RetryExhaustedError, retry_call


def test_an_attempt_budget_is_spent_with_one_reconnect_and_one_log_line_per_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = replace(STORAGE_RETRY, base_s=1.0, cap_s=1.0, deadline_s=None, max_attempts=3)
    failures = [ConnectionResetError("reset 1"), ConnectionResetError("reset 2"), TimeoutError("slow")]
    dropped: list[BaseException] = []
    sleeps: list[float] = []

    def down() -> None:
        raise failures[len(sleeps)]

    with caplog.at_level(logging.WARNING), pytest.raises(RetryExhaustedError) as info:
        retry_call(
            down,
            what="write 3 rows",
            is_transient=lambda e: isinstance(e, OSError),
            policy=policy,
            on_retry=dropped.append,
            sleep=sleeps.append,
            clock=lambda: 0.0,
            rand=lambda: 0.5,
        )
    assert dropped == failures[:2]  # before each wait, never after the last attempt
    assert sleeps == [0.5, 0.5]
    assert info.value.__cause__ is failures[2]
    assert "write 3 rows: still failing after 3 attempt(s) over 0.0s: TimeoutError: slow" in str(info.value)
    assert [r.getMessage() for r in caplog.records if r.name == "connectors.storage.retry"] == [
        "write 3 rows failed (attempt 1): ConnectionResetError: reset 1; retrying in 0.50s",
        "write 3 rows failed (attempt 2): ConnectionResetError: reset 2; retrying in 0.50s",
    ]


def test_a_base_exception_is_never_retried() -> None:
    """An interrupt while writing stops at once, whatever the classifier says."""
    calls: list[int] = []

    def interrupted() -> None:
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        retry_call(interrupted, what="t", is_transient=lambda e: True, sleep=lambda s: None)
    assert calls == [1]
