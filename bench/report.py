"""Summaries of the measurements: medians and spread per size and variant, ratios, targets, and a markdown table."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from bench.measure import Measurement

PHASES = ("watermark", "flush", "delete", "vacuum", "overhead")
VARIANTS = ("ceiling", "seed-pattern", "flusher", "dlt")
MIB = 1024 * 1024


def summarise(measurements: list[Measurement], datasets: dict[str, dict]) -> list[dict[str, Any]]:
    """One row per (size, variant) with the median of each figure and the min/max of wall time."""
    rows = []
    tuned = [v for v in dict.fromkeys(m.variant for m in measurements) if v not in VARIANTS]
    for size, data in datasets.items():
        for variant in (*VARIANTS, *tuned):
            runs = [m for m in measurements if m.size == size and m.variant == variant]
            if not runs:
                continue
            good = [m for m in runs if m.verified]
            walls = [m.wall for m in good] or [float("nan")]
            wall = statistics.median(walls)
            rows.append(
                {
                    "size": size,
                    "variant": variant,
                    "reps": len(runs),
                    "verified": len(good) == len(runs),
                    "rows": data["total_rows"],
                    "wall_median": wall,
                    "wall_min": min(walls),
                    "wall_max": max(walls),
                    "rows_per_s": data["total_rows"] / wall,
                    "mb_per_s": data["table_bytes"] / MIB / wall,
                    "phases": {
                        p: statistics.median(m.phases[p] for m in good)
                        if good and all(p in m.phases for m in good)
                        else None
                        for p in PHASES
                    },
                    "peak_rss_mib": max(m.peak_rss_mib for m in runs),
                    "cpu_seconds_median": statistics.median(m.extra.get("cpu_seconds", 0.0) for m in runs),
                    "flow_runs": max(m.extra.get("runs", 0) for m in runs),
                    "lake_mib": statistics.median(m.extra.get("lake_mib", 0.0) for m in runs),
                    "flow_engine": statistics.median(m.phases["flow_engine"] for m in good)
                    if good and all("flow_engine" in m.phases for m in good)
                    else None,
                    # Other work on the machine shows up here: a 2-core box with a load average above 2 is contended.
                    "load_avg_1m_median": statistics.median(m.extra.get("load_avg_1m_after", 0.0) for m in runs),
                    "problems": [p for m in runs for p in m.problems][:5],
                }
            )
    return rows


def ratios(summary: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per size: the flusher's throughput divided by each other variant's (above 1: the flusher is faster)."""
    out: dict[str, dict[str, float]] = {}
    for size in dict.fromkeys(r["size"] for r in summary):
        by_variant = {r["variant"]: r for r in summary if r["size"] == size and r["verified"]}
        if "flusher" not in by_variant:
            continue
        flusher = by_variant["flusher"]["rows_per_s"]
        out[size] = {f"flusher/{v}": flusher / r["rows_per_s"] for v, r in by_variant.items() if v != "flusher"}
    return out


def targets(summary: list[dict[str, Any]], ratio: dict[str, dict[str, float]]) -> list[tuple[str, str, bool]]:
    """The issue's targets, measured (never asserted): (target, measured, met)."""
    found = {(r["size"], r["variant"]): r for r in summary}
    checks = []
    if "large" in ratio and "flusher/ceiling" in ratio["large"]:
        value = ratio["large"]["flusher/ceiling"]
        checks.append(("large: flusher >= 0.9 x ceiling", f"{value:.2f} x", value >= 0.9))
    if ("seed", "flusher") in found:
        wall = found[("seed", "flusher")]["wall_median"]
        checks.append(("seed: flusher <= 3 s wall", f"{wall:.2f} s", wall <= 3))
    if "seed" in ratio and "flusher/seed-pattern" in ratio["seed"]:
        value = ratio["seed"]["flusher/seed-pattern"]
        checks.append(("seed: flusher >= 10 x seed pattern", f"{value:.2f} x", value >= 10))
    for size, values in ratio.items():
        if "flusher/dlt" in values:
            checks.append(
                (f"{size}: flusher faster than dlt", f"{values['flusher/dlt']:.2f} x", values["flusher/dlt"] > 1)
            )
    for size in ("large", "xl", "catchup"):
        if (size, "flusher") in found:
            rss = found[(size, "flusher")]["peak_rss_mib"]
            checks.append((f"{size}: flusher peak RSS <= 1 GiB", f"{rss:.0f} MiB", rss <= 1024))
    return checks


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(summary: list[dict[str, Any]], datasets: dict[str, dict], ratio: dict, checks: Iterable[tuple]) -> str:
    lines = [
        "| size | variant | rows | wall s median (min–max) | rows/s | MB/s | watermark | flush | delete | vacuum "
        "| Prefect + other | CPU s | peak RSS MiB | load avg | verified |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in summary:
        p = r["phases"]
        lines.append(
            f"| {r['size']} | {r['variant']} | {r['rows']:,} | {r['wall_median']:.2f} "
            f"({r['wall_min']:.2f}–{r['wall_max']:.2f}) "
            f"| {r['rows_per_s']:,.0f} | {r['mb_per_s']:.1f} | {_seconds(p['watermark'])} | {_seconds(p['flush'])} "
            f"| {_seconds(p['delete'])} | {_seconds(p['vacuum'])} | {_seconds(p['overhead'])} "
            f"| {r['cpu_seconds_median']:.1f} "
            f"| {r['peak_rss_mib']:.0f} "
            f"| {r['load_avg_1m_median']:.1f} "
            f"| {'yes' if r['verified'] else 'NO'} ({r['reps']} reps) |"
        )
    lines.append("")
    for r in summary:
        if r["flow_runs"] > 1:
            lines.append(
                f"- **{r['size']}**: the backlog moved in {r['flow_runs']} flow runs (ledger cap per run), "
                f"{r['rows'] / r['flow_runs']:,.0f} rows per run on average"
            )
    for r in summary:
        engine = r.get("flow_engine")
        if engine is not None:
            lines.append(
                f"- **{r['size']}**: of the flusher's {r['wall_median']:.2f} s, {engine:.2f} s are Prefect's flow-run "
                "engine outside the flow function (creating and finishing the run; at the end it joins its "
                "heartbeat thread, which sleeps in one-second steps)"
            )
    for size in datasets:
        sizes = [f"{r['variant']} {r['lake_mib']:,.0f}" for r in summary if r["size"] == size and r.get("lake_mib")]
        if sizes:
            lines.append(f"- lake files written at **{size}** (MiB, Parquet): {', '.join(sizes)}")
    for size, values in ratio.items():
        if not values:
            continue
        text = ", ".join(f"{name} {value:.2f}×" for name, value in values.items())
        lines.append(f"- ratios at **{size}** (throughput, above 1 = the flusher is faster): {text}")
    for size, data in datasets.items():
        lines.append(
            f"- data **{size}**: {data['ledgers']:,} ledgers, {data['total_rows']:,} rows in 19 tables, "
            f"{data['table_bytes'] / MIB:,.0f} MiB of hot table data (heap + TOAST), "
            f"loaded in {data['load_seconds']:.0f} s"
        )
    lines += ["", "| target | measured | met |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {'yes' if met else 'no'} |" for name, value, met in checks]
    return "\n".join(lines)
