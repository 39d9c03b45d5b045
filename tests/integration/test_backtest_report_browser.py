"""The backtest's HTML report in Debian's headless Chromium: what a rule author sees.

The report is produced by the real CLI (`python -m flows.backtest ... --html`) over a recording
whose first and last minutes fall outside `--from/--to`; the page is then opened from disk and
checked as rendered: the banner about the messages left out, one chart per alert instance
with its legend, the pending and firing periods shaded at the times the engine's own
transition log gives (read off the chart's time axis labels), in the severity's colour, the
value above the threshold while firing, and no two labels of any chart overlapping.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from rules.metric import iso
from tests.support.browser import chromium

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_736_935_200.0  # 2025-01-15T10:00:00Z
M = 60.0
RULES = """\
settings:
  evaluation_interval: 1m
alert_rules:
  - name: HighCPU
    metric: cpu_usage_percent
    condition: {operator: ">", threshold: 80, duration: 5m, aggregation: avg}
    window: 1m
    severity: critical
  - name: ConnectionsHigh
    metric: connections_used_percent
    condition: {operator: ">", threshold: 60, duration: 2m, aggregation: max}
    window: 1m
    severity: warning
"""


def row(ts: float, iid: str, metric: str, value: float) -> dict[str, Any]:
    return {
        "timestamp": iso(ts),
        "database_type": "postgresql",
        "instance_id": iid,
        "metric_name": metric,
        "value": value,
        "tags": {"environment": "production", "region": "eu-west-1"},
    }


def recording() -> list[dict[str, Any]]:
    """10:00-11:00 plus 10 minutes either side (left out by --from/--to), a sample every 15 s.

    db1's CPU: a 2-minute spike at 10:05 (pending, dropped before `for`), then hot 10:20-10:35
    (pending, firing, resolved). db2's connections: above 60 from 10:40 to the end of the data.
    """
    out = []
    for step in range(-40, 280):
        ts = T0 + step * 15
        minute = step / 4
        hot = 5 <= minute < 7 or 20 <= minute < 35
        out.append(row(ts, "db1", "cpu_usage_percent", 92.0 if hot else 40.0 + (step % 4)))
        out.append(row(ts, "db2", "connections_used_percent", 75.0 if minute >= 40 else 30.0))
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]], str]:
    """The CLI's HTML report, its transition log (every state) and its stderr."""
    d = tmp_path_factory.mktemp("report")
    (d / "rules.yml").write_text(RULES)
    (d / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recording()))
    out = subprocess.run(
        [sys.executable, "-m", "flows.backtest", "--rules", str(d / "rules.yml"),
         "--input", str(d / "in.jsonl"), "--from", iso(T0), "--to", iso(T0 + 60 * M),
         "--all-states", "--output", str(d / "out.jsonl"), "--html", str(d / "report.html"),
         "--progress", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    log = [json.loads(line) for line in (d / "out.jsonl").read_text().splitlines()]
    return d / "report.html", log, out.stderr


@pytest.fixture(scope="module")
def page(report: tuple[Path, list[dict[str, Any]], str]) -> Iterator[WebDriver]:
    with chromium(1400, 1000) as driver:
        driver.get(report[0].as_uri())
        yield driver


def box(driver: WebDriver, el: WebElement) -> dict[str, float]:
    got: dict[str, float] = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return {left: r.left, right: r.right, top: r.top, bottom: r.bottom};",
        el,
    )
    return got


def chart_of(driver: WebDriver, instance: str) -> WebElement:
    sections = driver.find_elements(By.CSS_SELECTOR, "section.instance")
    (found,) = [s for s in sections if instance in s.find_element(By.TAG_NAME, "h3").text]
    return found


def axis(driver: WebDriver, chart: WebElement) -> tuple[float, float]:
    """(seconds per pixel, epoch at x=0) read off the chart's labels: its day from the axis
    title, two tick labels' text (HH:MM) and where their centres are on the screen."""
    title = next(t.text for t in chart.find_elements(By.CSS_SELECTOR, "text.axis-title") if "UTC" in t.text)
    day = title.split("from ")[1].rstrip(")")
    ticks = chart.find_elements(By.CSS_SELECTOR, "text.x-tick")
    assert len(ticks) >= 3
    (a, b) = ticks[0], ticks[-1]

    def when(el: WebElement) -> float:
        return datetime.fromisoformat(f"{day}T{el.text}:00+00:00").timestamp()

    ba, bb = box(driver, a), box(driver, b)
    ca, cb = (ba["left"] + ba["right"]) / 2, (bb["left"] + bb["right"]) / 2
    per_px = (when(b) - when(a)) / (cb - ca)
    return per_px, when(a) - ca * per_px


def at(rec: dict[str, Any], field: str = "at") -> float:
    return datetime.fromisoformat(str(rec[field])).timestamp()


def test_banner_says_what_fell_outside_the_window(page: WebDriver) -> None:
    (banner,) = page.find_elements(By.CSS_SELECTOR, "[data-banner=window]")
    assert banner.is_displayed() and banner.get_attribute("role") == "status"
    # 40 samples before 10:00 and 40 from 11:00 on, for each of the two series
    assert "160 of the 640 message(s) read fell outside the event-time window" in banner.text
    top = box(page, banner)["top"]
    charts = page.find_elements(By.CSS_SELECTOR, "section.instance")
    assert charts and all(box(page, c)["top"] > top for c in charts)  # read before any chart


def test_one_chart_per_alert_instance_with_its_legend(page: WebDriver) -> None:
    titles = [h.text for h in page.find_elements(By.CSS_SELECTOR, "section.instance h3")]
    assert titles == ["A HighCPU db1", "A ConnectionsHigh db2"]
    legend = [
        [t.text for t in chart_of(page, name).find_elements(By.CSS_SELECTOR, ".legend-item text")]
        for name in ("HighCPU", "ConnectionsHigh")
    ]
    assert legend == [
        ["avg(cpu_usage_percent[1m])", "threshold > 80", "pending (for 5m)", "firing (critical)"],
        ["max(connections_used_percent[1m])", "threshold > 60", "pending (for 2m)", "firing (warning)"],
    ]
    assert all(t.is_displayed() for t in page.find_elements(By.CSS_SELECTOR, ".legend-item text"))


def test_periods_are_shaded_where_the_engine_says_in_the_severity_colour(
    page: WebDriver, report: tuple[Path, list[dict[str, Any]], str]
) -> None:
    log = [r for r in report[1] if r["alert_name"] == "HighCPU"]
    dropped = next(r for r in log if r["state"] == "inactive")
    fired = next(r for r in log if r["state"] == "firing")
    resolved = next(r for r in log if r["state"] == "resolved")
    expected = {
        "pending": [(at(dropped, "active_at"), at(dropped)), (at(fired, "active_at"), at(fired))],
        "firing": [(at(fired), at(resolved))],
    }
    chart = chart_of(page, "HighCPU")
    per_px, epoch0 = axis(page, chart)
    for kind, spans in expected.items():
        shaded = chart.find_elements(By.CSS_SELECTOR, f"rect.period.{kind}")
        assert len(shaded) == len(spans), kind
        for el, (start, end) in zip(sorted(shaded, key=lambda e: box(page, e)["left"]), spans, strict=True):
            b = box(page, el)
            # where the axis labels put those times, to within a pixel and a half
            assert abs(epoch0 + b["left"] * per_px - start) <= 1.5 * per_px, (kind, iso(start))
            assert abs(epoch0 + b["right"] * per_px - end) <= 1.5 * per_px, (kind, iso(end))
    colour = page.execute_script("return getComputedStyle(arguments[0]).fill", shaded[0])
    assert colour == "rgb(201, 48, 44)"  # critical
    warn = chart_of(page, "ConnectionsHigh").find_element(By.CSS_SELECTOR, "rect.period.firing")
    assert page.execute_script("return getComputedStyle(arguments[0]).fill", warn) == "rgb(217, 119, 6)"
    # still firing when the data ended: the shading runs to the end of the plot
    assert abs(box(page, warn)["right"] - box(page, chart_of(page, "ConnectionsHigh").find_element(
        By.CSS_SELECTOR, "rect.plot"))["right"]) <= 1.0  # fmt: skip


def test_the_value_is_above_the_threshold_while_firing(page: WebDriver) -> None:
    chart = chart_of(page, "HighCPU")
    firing = box(page, chart.find_element(By.CSS_SELECTOR, "rect.period.firing"))
    threshold = box(page, chart.find_element(By.CSS_SELECTOR, "line.threshold"))
    element = chart.find_element(By.TAG_NAME, "svg")
    svg = box(page, element)
    scale = (svg["right"] - svg["left"]) / float(
        element.get_attribute("width") or 1
    )  # narrow windows shrink it
    points = []
    for line in chart.find_elements(By.CSS_SELECTOR, "polyline.value"):
        for p in (line.get_attribute("points") or "").split():
            x, y = (float(v) for v in p.split(","))
            points.append((svg["left"] + x * scale, svg["top"] + y * scale))
    inside = [y for x, y in points if firing["left"] + 1 < x < firing["right"] - 1]
    assert len(inside) >= 5 and all(y < threshold["top"] for y in inside)  # drawn above the line
    before = [y for x, y in points if x < firing["left"] - 40]
    assert before and any(y > threshold["bottom"] for y in before)


def test_no_two_labels_of_a_chart_overlap(page: WebDriver) -> None:
    # every label's box in one call per chart: there are dozens
    script = (
        "return Array.from(arguments[0].querySelectorAll('text')).filter(t => t.textContent.trim())"
        ".map(t => { const r = t.getBoundingClientRect(); return {tick: t.classList.contains('tick'),"
        " left: r.left, right: r.right, top: r.top, bottom: r.bottom}; });"
    )
    svgs = page.find_elements(By.TAG_NAME, "svg")
    assert len(svgs) == 3  # the timeline and two charts
    for svg in svgs:
        boxes: list[dict[str, Any]] = page.execute_script(script, svg)
        assert len(boxes) >= 5
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                apart = a["right"] <= b["left"] or b["right"] <= a["left"]
                apart = apart or a["bottom"] <= b["top"] or b["bottom"] <= a["top"]
                assert apart, (a, b)
        ticks = [b for b in boxes if b["tick"]]
        assert len(ticks) >= 3
        outer = box(page, svg)
        assert all(outer["left"] <= t["left"] and t["right"] <= outer["right"] for t in ticks)  # none cut off
