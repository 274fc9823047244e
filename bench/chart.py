"""A PNG of a results JSON: throughput per variant and size (with min–max), and where each variant's seconds go.

Runs in bench/.venv (matplotlib): python -m bench.chart bench/results/bench.json bench/results/bench.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PHASES = ("watermark", "flush", "delete", "vacuum", "overhead")
COLOURS = {"ceiling": "#888888", "seed-pattern": "#cc6666", "flusher": "#3366cc", "dlt": "#66aa66"}


def draw(results: dict, png: Path) -> None:
    summary = results["summary"]
    sizes = list(dict.fromkeys(r["size"] for r in summary))
    fig, axes = plt.subplots(len(sizes), 2, figsize=(13, 3.8 * len(sizes)), squeeze=False)
    for row, size in enumerate(sizes):
        runs = [r for r in summary if r["size"] == size]
        names = [r["variant"] for r in runs]
        rate = [r["rows_per_s"] for r in runs]
        low = [r["rows"] / r["wall_max"] for r in runs]
        high = [r["rows"] / r["wall_min"] for r in runs]
        ax = axes[row][0]
        ax.bar(
            names,
            rate,
            yerr=[[a - b for a, b in zip(rate, low, strict=False)], [b - a for a, b in zip(rate, high, strict=False)]],
            color=[COLOURS.get(n, "#999999") for n in names],
            capsize=4,
        )
        ax.set_title(f"{size}: {runs[0]['rows']:,} rows — rows/s (median, min–max)")
        ax.grid(axis="y", alpha=0.3)
        ax = axes[row][1]
        bottom = [0.0] * len(runs)
        for phase in PHASES:
            values = [(r["phases"].get(phase) or 0.0) for r in runs]
            ax.barh(names, values, left=bottom, label=phase)
            bottom = [a + b for a, b in zip(bottom, values, strict=False)]
        ax.set_title(f"{size}: wall seconds by phase (median)")
        ax.legend(fontsize=8, loc="lower right")
        ax.invert_yaxis()
    fig.suptitle(results["header"], fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
