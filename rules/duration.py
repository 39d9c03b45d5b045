"""The one duration grammar: rule files, PromQL, promtool tests, `--from -7d`, collector targets.

Prometheus' syntax (`model.ParseDuration`): units in the order y w d h m s ms, each at most
once (`1h30m`, `5m`, `30s`, `250ms`, `1d`, `2w`, `1y` = 365d), or `0`. Two extensions, both
accepted before the grammars were merged: a unit's number may have a fraction (`1.5s`,
`0.5h`), and in YAML a bare number is seconds.
"""

from __future__ import annotations

import math
import re
from typing import Final

# in milliseconds, so `250ms` is exactly 0.25 s (250 * 0.001 need not be)
_UNIT_MS: Final = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000,
                   "s": 1000, "ms": 1}  # fmt: skip
_NUM = r"(\d+(?:\.\d+)?)"
# `m(?!s)`: `5ms` is milliseconds, never 5 minutes followed by an `s` that then fails
_DURATION: Final = re.compile("".join(f"(?:{_NUM}{u}{'(?!s)' if u == 'm' else ''})?" for u in _UNIT_MS) + "$")
HINT: Final = "use e.g. 30s, 5m, 1h30m"


def parse_duration(value: object) -> float:
    """Seconds of `5m`, `1h30m`, `90s`, `250ms`, `1d`, `2w`, `1y`, or of a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"not a duration: {value!r} (use a finite number of seconds, or {HINT})")
        if value < 0:
            raise ValueError(f"negative duration: {value!r}")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a duration: {value!r}")
    text = value.strip()
    if text == "0":
        return 0.0
    m = _DURATION.match(text)
    if m is None or not any(m.groups()):
        raise ValueError(f"not a duration: {value!r} ({HINT})")
    return sum(float(n) * ms for n, ms in zip(m.groups(), _UNIT_MS.values(), strict=True) if n) / 1000
