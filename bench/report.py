"""One Markdown table from the JSON lines of one `make bench` run.

`python -m bench.report [FILE]` (stdin without FILE): every figure of issue 16 with its value,
its ratio, its target and whether the numbers meet it, computed here from the lines, never
typed in. A figure whose bench printed no line reads "not run"; lines of benches this does not
know are ignored. When a bench printed a name twice, the last line counts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Line = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """`measured op bound`, shown as `text`."""

    op: str  # ">=", "<=", "<"
    bound: float
    text: str

    def met(self, measured: float | None) -> bool | None:
        if measured is None:
            return None
        if self.op == ">=":
            return measured >= self.bound
        if self.op == "<=":
            return measured <= self.bound
        return measured < self.bound


@dataclass(frozen=True)
class Row:
    figure: str
    value: str
    ratio: str = ""
    target: Target | None = None
    measured: float | None = None  # what the target is checked on

    def cells(self) -> list[str]:
        met = self.target.met(self.measured) if self.target is not None else None
        return [
            self.figure,
            self.value,
            self.ratio,
            self.target.text if self.target is not None else "",
            "" if self.target is None else ("not run" if met is None else ("yes" if met else "**no**")),
        ]


NOT_RUN = "not run"
EVAL_SEPARATE = Target(">=", 0.6, ">= 0.6 of ceiling")
EVAL_INLINE = Target(">=", 0.5, ">= 0.5 of ceiling")
SCALING = Target(">=", 1.7, ">= 1.7x one process")
BACKTEST = Target(">=", 1.0, ">= 1.0x the live job")
CARDINALITY = Target(">=", 0.7, ">= 0.7 of the smallest size (within 30 %)")
PEAK_1M = Target("<", 2048, "< 2048 MiB")
SNAPSHOT = Target("<", 512, "< 512 B")
CATCHUP = Target("<=", 1.5, "<= 1.5x steady state")
LATENCY = Target("<", 250, "p99 < 250 ms")


def rate(line: Line) -> str:
    return f"{line['messages_per_s']:,} msg/s"


def ratio_of(line: Line, key: str = "ratio_to_ceiling") -> float | None:
    value = line.get(key)
    return float(value) if isinstance(value, int | float) else None


def fmt(x: float | None, suffix: str = "") -> str:
    return "" if x is None else f"{x:.3g}{suffix}" if abs(x) < 10 else f"{x:,.0f}{suffix}"


def throughput(lines: dict[str, Line], name: str, figure: str, target: Target | None = None) -> Row:
    line = lines.get(name)

    def value(x: Line) -> str:
        posts = x.get("notifications")
        return rate(x) + (f" ({posts:,} posts)" if posts else "")

    return row(line, figure, value, lambda x: fmt(ratio_of(x)), target, ratio_of)


def row(
    line: Line | None,
    figure: str,
    value: Callable[[Line], str],
    ratio: Callable[[Line], str] = lambda _: "",
    target: Target | None = None,
    measured: Callable[[Line], float | None] | None = None,
) -> Row:
    """A row from one line, or "not run" without it."""
    if line is None:
        return Row(figure, NOT_RUN, target=target)
    try:
        return Row(figure, value(line), ratio(line), target, measured(line) if measured is not None else None)
    except (KeyError, TypeError, ValueError) as exc:  # a line of an older bench
        return Row(figure, f"line without {exc}", target=target)


def latency(x: Line) -> str:
    """bench/delivery.py's figure; lines before it had only p50_ms/p99_ms (from the breach)."""
    if "arrival_to_receiver_p99_ms" not in x:
        return f"p50 {x['p50_ms']:,.0f} ms, p99 {x['p99_ms']:,.0f} ms"
    text = f"p50 {x['arrival_to_receiver_p50_ms']:,.0f} ms, p99 {x['arrival_to_receiver_p99_ms']:,.0f} ms"
    breach = x.get("breach_to_receiver")
    if isinstance(breach, dict) and "p99_ms" in breach:
        text += f" (from the breaching sample: p99 {breach['p99_ms']:,.0f} ms)"
    if "max_messages_per_s" in x:
        text += f"; at {x['load_messages_per_s']:,} msg/s of a {x['max_messages_per_s']:,} msg/s maximum"
    return text


def scaling(x: Line) -> str:
    """The rates, and what the speed-up is made of where the line has it: how many more cores the
    two processes kept busy, over how much more CPU each message cost them (the exchange)."""
    text = f"{x['two_processes_messages_per_s']:,} vs {x['one_process_messages_per_s']:,} msg/s"
    if "cores_ratio" in x:
        text += (
            f"; {x['cores_ratio']:.2f}x the cores"
            f" (machine {x['machine_busy_two_processes']:.0%} busy over the run)"
            f" / {x['cpu_per_message_ratio']:.2f}x the CPU per message"
        )
    return text


def rows(lines: dict[str, Line]) -> list[Row]:
    get = lines.get
    ceiling = get("ceiling_consume_decode")
    size = (
        f" ({ceiling['messages']:,} messages, {ceiling['series']:,} series)"
        if ceiling and "series" in ceiling
        else ""
    )
    out = [
        row(ceiling, f"ceiling: confluent-kafka consume + decode{size}", rate, lambda _: "1"),
        throughput(lines, "route_decode", "Bytewax: route by key + decode in a stateful_batch, no rules"),
        throughput(lines, "alerting_separate", "alerting job, delivery in its own process", EVAL_SEPARATE),
        throughput(
            lines, "alerting_inline", "alerting job, delivery inline (HTTP, loopback receiver)", EVAL_INLINE
        ),
        row(
            get("scaling_2_processes"),
            "2 processes x 1 worker, 4 partitions (delivery separate)",
            scaling,
            lambda x: f"{x['speedup']:.2f}x",
            SCALING,
            lambda x: float(x["speedup"]),
        ),
        throughput(
            lines, "windowing_baseline", "idiomatic Bytewax windowing, same rules (bench/windowing.py)"
        ),
        row(
            get("backtest_topic"),
            "backtest from the same topic (flows.backtest)",
            rate,
            lambda x: f"{x['ratio_to_live']:.2f}x live",
            BACKTEST,
            lambda x: float(x["ratio_to_live"]),
        ),
        *safe(cardinality, lines, "cardinality (bench/cardinality.py)"),
        row(
            get("catchup_memory"),
            "catch-up: peak RSS / steady-state RSS (bench/catchup.py)",
            lambda x: (
                f"{x['peak_catchup_mib']:,.0f} / {x['steady_median_mib']:,.0f} MiB"
                f" ({x['backlog_messages']:,} messages"
                + (
                    f"; steady: a fresh job after {x['steady_s']:,.0f} s of the live feed"
                    if "steady_s" in x
                    else ""
                )
                + (f", {x['steady_90s_mib']:,.0f} MiB after 90 s" if "steady_90s_mib" in x else "")
                + ")"
            ),
            lambda x: f"{x['ratio']:.2f}x",
            CATCHUP,
            lambda x: float(x["ratio"]),
        ),
        row(
            get("delivery_latency_under_load"),
            "latency at 80 % load: arrival of the deciding sample to the receiver's answer",
            latency,
            target=LATENCY,
            measured=lambda x: float(
                x["arrival_to_receiver_p99_ms"] if "arrival_to_receiver_p99_ms" in x else x["p99_ms"]
            ),
        ),
    ]
    idle = get("arrival_to_notification")
    if idle:
        out.append(
            row(
                idle,
                "arrival to notification, idle job",
                lambda x: f"p50 {x['p50_ms']:,.0f} ms, p99 {x['p99_ms']:,.0f} ms",
            )
        )
    live = get("alerting_live_max")
    if live:
        out.append(
            row(
                live,
                "live maximum: what the job takes in while a producer feeds it (bench/delivery.py)",
                lambda x: (
                    f"{x['messages_per_s']:,} msg/s"
                    + ("" if x["saturated"] else f" (at least: fed {x['fed_messages_per_s']:,} msg/s)")
                ),
            )
        )
    for label in ("off", "on"):
        if get(f"alerting_delivery_{label}"):
            out.append(
                throughput(lines, f"alerting_delivery_{label}", f"bench/delivery.py: delivery {label}")
            )
    out.append(
        row(
            get("state_bytes_per_series"),
            "engine snapshot per series (bench/state.py)",
            lambda x: f"{x['bytes_per_series']:,.0f} B ({x['series']:,} series)",
            target=SNAPSHOT,
            measured=lambda x: float(x["bytes_per_series"]),
        )
    )
    out += safe(ops, lines, "operations (bench/ops.py)")
    gw = get("gateway")
    if gw and "gateway_samples_per_s" in gw:
        out.append(row(gw, "gateway remote_write intake vs a plain producer",
                       lambda x: f"{x['gateway_samples_per_s']:,} samples/s",
                       lambda x: fmt(x.get("gateway_to_producer"))))  # fmt: skip
    pq = get("promql")
    if pq and "threshold_messages_per_s" in pq:
        out.append(row(pq, "PromQL group (bundled thresholds) vs the seed engine, backtest",
                       lambda x: f"{x['threshold_messages_per_s']:,} vs {x['seed_messages_per_s']:,} msg/s",
                       lambda x: fmt(x.get("threshold_to_seed"))))  # fmt: skip
    fb = get("backtest")
    if fb:
        out.append(row(fb, f"backtest from a file ({fb['messages']:,} messages, bundled rules)", rate))
    return out


def safe(section: Callable[[dict[str, Line]], list[Row]], lines: dict[str, Line], label: str) -> list[Row]:
    """A section's rows; a line it cannot read (an older bench's) costs its rows, not the table."""
    try:
        return section(lines)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        return [Row(label, f"line without {exc}")]


def cardinality(lines: dict[str, Line]) -> list[Row]:
    runs = sorted((v for k, v in lines.items() if k.startswith("cardinality_")), key=lambda v: v["series"])
    if not runs:
        return [
            Row("cardinality: throughput at 10k / 100k / 1M series", NOT_RUN, target=CARDINALITY),
            Row("peak RSS at 1M series", NOT_RUN, target=PEAK_1M),
            Row("recovery snapshot per series", NOT_RUN, target=SNAPSHOT),
        ]
    first = runs[0]
    out = []
    for r in runs:
        rel = r["messages_per_s"] / first["messages_per_s"]
        figure = f"cardinality: {r['series']:,} series ({r['messages']:,} messages)"
        target = CARDINALITY if r is not first else None
        out.append(Row(figure, rate(r), f"{rel:.2f} of {first['series']:,}", target, rel))
    for r in runs:
        value = (
            f"{r['rss_per_series_bytes']:,} B ({r['rss_after_load_mib']:,.0f} MiB loaded,"
            f" {r['rss_no_series_mib']:,.0f} MiB with no series)"
        )
        out.append(Row(f"resident memory per series at {r['series']:,} series", value))
    big = next((r for r in runs if r["series"] >= 1_000_000), None)
    out.append(
        row(
            big,
            "peak RSS at 1M series",
            lambda x: f"{x['peak_rss_mib']:,.0f} MiB",
            target=PEAK_1M,
            measured=lambda x: float(x["peak_rss_mib"]),
        )
    )
    last = runs[-1]
    out.append(
        row(
            last,
            f"recovery snapshot per series at {last['series']:,} series (the job's sqlite)",
            lambda x: f"{x['snapshot_bytes_per_series']:,.0f} B",
            target=SNAPSHOT,
            measured=lambda x: float(x["snapshot_bytes_per_series"]),
        )
    )
    return out


def ops(lines: dict[str, Line]) -> list[Row]:
    def again(x: Line) -> str:
        return f"{x['resume_s']:.1f} s ({x['reread_messages']:,} messages re-read)"

    out = []
    if "ops_sigkill_one_of_two" in lines:
        out.append(
            row(lines["ops_sigkill_one_of_two"], "SIGKILL of 1 of 2 processes: processing again after", again)
        )
    if "ops_rescale_2_to_3" in lines:
        out.append(
            row(
                lines["ops_rescale_2_to_3"],
                "rescale 2 -> 3 processes from recovery: processing again after",
                again,
            )
        )
    frozen = lines.get("ops_frozen_one_of_three")
    if frozen:
        value = f"{frozen['others_unhealthy_s']} s (stalled after {frozen['others_stalled_after_s']} s)"
        out.append(Row("1 of 3 processes frozen: the others unhealthy after", value))
    return out or [Row("operations (bench/ops.py)", NOT_RUN)]


def machine(lines: dict[str, Line]) -> str:
    m = lines.get("machine")
    if m is None:
        return "Machine: not recorded."
    text = (
        f"Measured {m['at']} on {m['cpu']}, {m['cpus']} cores, {m['mem_gib']} GiB RAM, Python {m['python']}"
        " (broker, jobs and receivers on the same cores)."
    )
    run = lines.get("run")
    if run and isinstance(run.get("seconds"), int | float):
        text += f" `make bench` ({run.get('mode', 'full')}) took {run['seconds'] / 60:.0f} min."
    return text


def latest(records: Iterable[Line]) -> dict[str, Line]:
    out: dict[str, Line] = {}
    for r in records:
        if isinstance(r, dict) and isinstance(r.get("bench"), str):
            out[r["bench"]] = r
    return out


def parse(text: str) -> list[Line]:
    """JSON lines; anything else (a bench's stray output) is skipped."""
    out = []
    for raw in text.splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
    return out


def render(records: Iterable[Line]) -> str:
    lines = latest(records)
    table = [["figure", "value", "ratio", "target", "met?"], ["---", "---:", "---:", "---", "---"]]
    table += [row.cells() for row in rows(lines)]
    body = "\n".join("| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in table)
    return f"{machine(lines)}\n\n{body}\n"


def main(argv: list[str] | None = None, read: Callable[[], str] = sys.stdin.read) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = Path(args[0]).read_text() if args else read()
    print(render(parse(text)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
