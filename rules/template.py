"""Annotation templates: the small subset of Prometheus' Go templates that rule files use.

Supported: `{{ $labels.NAME }}`, `{{ $value }}`, `{{ $threshold }}`, `{{ $labels.NAME }}` with a
missing label rendering empty (as Go templates do), and a `| printf "%.1f"` or `| humanize`
pipe after `$value` / `$threshold`. Anything else is rejected when the rule file loads,
so a typo never reaches a pager as a literal `{{ ... }}`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

_EXPR = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_VAR = re.compile(
    r"""^\$(?:labels\.(?P<label>[A-Za-z_][A-Za-z0-9_]*)|(?P<var>value|threshold))"""
    r"""(?:\s*\|\s*(?:printf\s+"(?P<fmt>%[-+ #0]*\d*(?:\.\d+)?[dfegs])"|(?P<humanize>humanize)))?$"""
)


def check(template: str) -> list[str]:
    """Every problem in a template, empty when it renders."""
    return [
        f"unsupported template expression {{{{ {m.group(1)} }}}}"
        for m in _EXPR.finditer(template)
        if not _VAR.match(m.group(1))
    ]


def humanize(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.4g}{unit}"
    return f"{x:.4g}"


def render(template: str, labels: Mapping[str, str], value: float, threshold: float) -> str:
    if "{{" not in template:
        return template

    def sub(m: re.Match[str]) -> str:
        v = _VAR.match(m.group(1))
        if v is None:  # rejected at load; keep the text rather than fail on the hot path
            return m.group(0)
        if v.group("label"):
            return labels.get(v.group("label"), "")
        x = value if v.group("var") == "value" else threshold
        if v.group("fmt"):
            fmt = v.group("fmt")
            return fmt % (int(x) if fmt.endswith("d") and not math.isnan(x) else x)
        if v.group("humanize"):
            return humanize(x)
        return "NaN" if math.isnan(x) else f"{x:g}"

    return _EXPR.sub(sub, template)
