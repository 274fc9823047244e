"""`python -m bench.memreport bench/results/mem-xl.json`: where each probed run's memory went, phase by phase.

Reads a results file of a `BENCH_MEMORY_PROBE=1 python -m bench.run ...` run and writes `<stem>-breakdown.md` beside
it: per run the peak RSS (the kernel's high-water mark), and per phase the peak RSS, the peak of DuckDB's own
accounting (what `memory_limit` bounds) and the most RSS held outside it (Python, Prefect, the extensions' code and
DuckDB's allocations outside its buffer manager), from the probe's one-per-second timeline.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
ORDER = ("engine", "flow_body", "watermark", "flush", "delete_subflow", "delete", "vacuum", "report")


def _outside_peaks(timeline: list[dict[str, Any]]) -> dict[str, float]:
    """Per phase, the largest RSS minus DuckDB's accounting at one sample (MiB)."""
    out: dict[str, float] = {}
    for point in timeline:
        if point.get("duckdb") is not None:
            outside = (point["rss"] - point["duckdb"]) / MIB
            out[point["phase"]] = max(out.get(point["phase"], 0.0), outside)
    return out


def _memory_limit(variant: str) -> str:
    """The memory_limit a variant ran with, as its label says (the config's default otherwise)."""
    for option in variant.partition("[")[2].rstrip("]").split(","):
        key, _, value = option.partition("=")
        if key.strip() == "ducklake.memory_limit":
            return value.strip()
    return "default"


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def breakdown(results: dict[str, Any]) -> str:
    """The markdown: one table per probed run."""
    lines = [results.get("header", ""), ""]
    for m in results["measurements"]:
        memory = m.get("extra", {}).get("memory")
        if not memory:
            continue
        peaks, outside = memory["peaks_mib"], _outside_peaks(memory["timeline"])
        lines += [
            f"**{m['size']}, {m['variant']}** ({m['rows']:,} rows, memory_limit {_memory_limit(m['variant'])}): "
            f"peak RSS {m['peak_rss_mib']:,.0f} MiB, wall {m['wall']:.1f} s",
            "",
            "| phase | peak RSS MiB | peak DuckDB MiB | most outside DuckDB MiB |",
            "|---|---:|---:|---:|",
        ]
        for phase in sorted(peaks, key=lambda p: (ORDER.index(p) if p in ORDER else len(ORDER), p)):
            lines.append(
                f"| {phase} | {_cell(peaks[phase].get('rss'))} | {_cell(peaks[phase].get('duckdb'))} "
                f"| {_cell(outside.get(phase))} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.memreport bench/results/<name>.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    target = path.with_name(f"{path.stem}-breakdown.md")
    target.write_text(breakdown(json.loads(path.read_text())))
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
