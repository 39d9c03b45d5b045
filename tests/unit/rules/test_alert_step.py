"""Table-driven tests of the pure `step`, walking time minute by minute."""

from __future__ import annotations

import math

import pytest

from rules.alert import INACTIVE, ChangeKind, Policy, step
from rules.model import AlertState, NotifyReason, Op, Rule

M = 60.0
P = Policy(flap_window_s=1800, flap_threshold=4)


def rule(for_m: float = 5, keep_m: float = 0, repeat_m: float = 240) -> Rule:
    return Rule(
        "R", "m", Op.GT, 80.0, for_s=for_m * M, keep_firing_for_s=keep_m * M, repeat_interval_s=repeat_m * M
    )


def walk(r: Rule, script: str, policy: Policy = P) -> list[tuple[int, str]]:
    """`script`: one char a minute: T true, F false, . no data, S stale. Returns (minute, change)."""
    inst = INACTIVE
    out: list[tuple[int, str]] = []
    for minute, ch in enumerate(script):
        holds = {"T": True, "F": False, ".": None, "S": None}[ch]
        inst, changes = step(inst, holds, 90.0 if holds else 10.0, minute * M, r, policy, stale=ch == "S")
        out.extend((minute, c.kind.value) for c in changes)
    return out


CASES = [
    # (name, rule, script, expected changes)
    (
        "fires after for, resolves once",
        rule(5),
        "FTTTTTTTTFF",
        [(1, "pending"), (6, "firing"), (9, "resolved")],
    ),
    (
        "breaks before for: pending reset",
        rule(5),
        "TTTTFTTTTF",
        [(0, "pending"), (4, "inactive"), (5, "pending"), (9, "inactive")],
    ),
    ("for 0 fires at once", rule(0), "FTTF", [(1, "firing"), (3, "resolved")]),
    ("no data keeps pending (fires on the next true)", rule(3), "TT..T", [(0, "pending"), (4, "firing")]),
    ("stale drops pending", rule(5), "TTS", [(0, "pending"), (2, "inactive")]),
    ("stale resolves firing", rule(1), "TTT.S", [(0, "pending"), (1, "firing"), (4, "resolved")]),
    (
        "keep_firing_for holds through a dip",
        rule(1, keep_m=3),
        "TTTFFTFFFF",
        [(0, "pending"), (1, "firing"), (9, "resolved")],
    ),
    ("keep_firing_for expires", rule(1, keep_m=2), "TTFFF", [(0, "pending"), (1, "firing"), (4, "resolved")]),
    (
        "repeat interval",
        rule(0, repeat_m=3),
        "TTTTTTTF",
        [(0, "firing"), (3, "repeat"), (6, "repeat"), (7, "resolved")],
    ),
    (
        "second incident fires again",
        rule(1),
        "TTFTTF",
        [(0, "pending"), (1, "firing"), (2, "resolved"), (3, "pending"), (4, "firing"), (5, "resolved")],
    ),
]


@pytest.mark.parametrize(("name", "r", "script", "expected"), CASES, ids=[c[0] for c in CASES])
def test_step_walk(name: str, r: Rule, script: str, expected: list[tuple[int, str]]) -> None:
    assert walk(r, script) == expected


def test_firing_carries_times_and_counts() -> None:
    r = rule(2)
    inst = INACTIVE
    for minute, holds in enumerate([True, True, True, False, True, True, True]):
        inst, changes = step(inst, holds, 91.0 if holds else 1.0, minute * M, r, P)
        if minute == 2:
            assert inst.state is AlertState.FIRING
            assert (inst.active_at, inst.fired_at, inst.fire_count) == (0.0, 2 * M, 1)
            assert changes[0].notify is NotifyReason.FIRST
        if minute == 3:
            assert inst.state is AlertState.RESOLVED and inst.resolved_at == 3 * M
            assert changes[0].notify is NotifyReason.RESOLVED
    assert inst.state is AlertState.FIRING and inst.fire_count == 2 and inst.active_at == 4 * M


def test_flapping_marks_changes_after_threshold() -> None:
    r = rule(0)
    inst = INACTIVE
    flags: list[bool] = []
    for minute, holds in enumerate([True, False] * 4):
        inst, changes = step(inst, holds, 0.0, minute * M, r, P)
        flags.extend(c.flapping for c in changes)
    # 4th state change within 30 minutes and after are flapping
    assert flags == [False, False, False, True, True, True, True, True]


def test_stale_resolution_has_no_value() -> None:
    r = rule(0)
    inst, _ = step(INACTIVE, True, 95.0, 0.0, r, P)
    inst, changes = step(inst, None, math.nan, 5 * M, r, P, stale=True)
    assert changes[0].kind is ChangeKind.RESOLVED and changes[0].stale
    assert math.isnan(inst.value)
