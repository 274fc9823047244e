"""`make bench`: build realistic Hubble data in a throw-away PostgreSQL, then measure the ceiling, the seed pattern,
this flusher and dlt on identical copies of it, several times each; print, and write bench/results/.

    python -m bench.run [--sizes seed,large] [--reps 3] [--variants ceiling,seed-pattern,flusher,dlt]
    python -m bench.run --catchup          # the >= 10M-row backlog, flushed in capped runs (make bench-catchup)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.dataset import SIZES, Dataset, build_template
from bench.measure import ROOT, Measurement, measure, parse_variant
from bench.prefect_server import prefect_server
from bench.report import markdown, ratios, summarise, targets
from bench.workspace import prepare

RESULTS = ROOT / "bench" / "results"
PEER_PYTHON = ROOT / "bench" / ".venv" / "bin" / "python"
CATCHUP_CAP = 60_000  # ledgers per run (~1M rows) when catching up
# Untimed runs per variant before the measured ones: the first run in a fresh Prefect server registers the flow and
# reads the extensions from a cold disk cache. Only where a run is cheap; a large run warms its own caches.
WARMUP_RUNS = {"seed": 1}
# The peer takes ~85 s per large run (3x the others); two runs bound its median well enough and keep
# `make bench` under 15 minutes on a fresh clone.
MAX_REPS = {("large", "dlt"): 2}


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="seed,large", help="comma-separated: seed, large, xl (~4M rows)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--variants",
        default="ceiling,seed-pattern,flusher,dlt",
        help="comma-separated; settings in brackets tune one run, e.g. flusher[flush.concurrency=2]",
    )
    parser.add_argument("--catchup", action="store_true", help="only the catch-up run (flusher with a ledger cap)")
    parser.add_argument("--peer-python", default=str(PEER_PYTHON), help="Python of bench/.venv (dlt, matplotlib)")
    parser.add_argument("--name", default=None, help="results file stem (default: bench, or catchup)")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite README's Performance section")
    return parser.parse_args(argv)


def _python_for(variant: str, peer_python: str) -> str:
    return peer_python if parse_variant(variant)[0] == "dlt" else sys.executable


def _plan(args: argparse.Namespace) -> list[tuple[str, list[str], int, int]]:
    """(size, variants, reps, ledger cap) to run."""
    if args.catchup:
        return [("catchup", ["flusher"], 1, CATCHUP_CAP)]
    variants = re.findall(r"[^,\[]+(?:\[[^\]]*\])?", args.variants)  # commas inside [...] separate options
    for variant in variants:
        parse_variant(variant)  # an unknown name or a malformed option stops here, before any data is loaded
    if "dlt" in variants and not Path(args.peer_python).exists():
        print(f"note: {args.peer_python} missing (run `make bench`), so dlt is left out", file=sys.stderr)
        variants.remove("dlt")
    return [(size, variants, args.reps, 0) for size in args.sizes.split(",")]


def run_all(args: argparse.Namespace, tmp: Path) -> tuple[list[Measurement], dict[str, dict]]:
    from flusher.embedded import start_embedded_postgres

    server = start_embedded_postgres(tmp / "pg")
    measurements: list[Measurement] = []
    datasets: dict[str, dict] = {}
    try:
        admin = server.get_uri()
        with prefect_server(tmp / "prefect", tmp / "prefect-server.log") as prefect_env:
            for size, variants, reps, cap in _plan(args):
                print(f"[{size}] loading {SIZES[size]:,} ledgers ...", flush=True)
                dataset: Dataset = build_template(admin, size, SIZES[size])
                datasets[size] = dataset.to_json()
                print(
                    f"[{size}] {dataset.total_rows:,} rows, {dataset.table_bytes / 2**20:,.0f} MiB "
                    f"in {dataset.load_seconds:.0f} s",
                    flush=True,
                )
                for variant in variants if not cap else []:
                    for _ in range(WARMUP_RUNS.get(size, 0)):
                        m = measure(
                            size,
                            variant,
                            0,
                            prepare(admin, dataset, tmp / "run", cap),
                            _python_for(variant, args.peer_python),
                            prefect_env,
                            tmp / "pg",
                        )
                        print(
                            f"[{size}] warm-up {variant:13} {m.wall:7.2f} s (not counted)"
                            + ("" if m.verified else "  FAILED: " + "; ".join(m.problems)[:400]),
                            flush=True,
                        )
                for rep in range(1, reps + 1):
                    for variant in variants:  # interleaved, so drift on the machine hits every variant alike
                        if rep > MAX_REPS.get((size, variant), reps):
                            continue
                        ws = prepare(admin, dataset, tmp / "run", cap)
                        m = measure(
                            size,
                            variant,
                            rep,
                            ws,
                            _python_for(variant, args.peer_python),
                            prefect_env,
                            tmp / "pg",
                            until_empty=cap > 0,
                        )
                        measurements.append(m)
                        status = "ok" if m.verified else "FAILED: " + "; ".join(m.problems)[:400]
                        print(
                            f"[{size}] rep {rep} {variant:13} {m.wall:7.2f} s  "
                            f"{m.rows / max(m.wall, 1e-9):>10,.0f} rows/s"
                            f"  CPU {m.extra.get('cpu_seconds', 0):6.2f} s  RSS {m.peak_rss_mib:5.0f} MiB"
                            f"  load {m.extra.get('load_avg_1m_after', 0):4.1f}  {status}",
                            flush=True,
                        )
                        if variant == "flusher" and cap:
                            print(f"[{size}]   {m.extra.get('runs')} flow runs of <= {cap:,} ledgers each", flush=True)
    finally:
        server.cleanup()
    return measurements, datasets


def _chart(peer_python: str, results: Path, png: Path) -> None:
    if not Path(peer_python).exists():
        print("note: no bench/.venv, so no chart", file=sys.stderr)
        return
    subprocess.run([peer_python, "-m", "bench.chart", str(results), str(png)], cwd=ROOT, check=True)


def _update_readme(section: str, name: str) -> None:
    """Replace README's block between the markers for `name` with the latest table."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text:
        return
    head, rest = text.split(start, 1)
    readme.write_text(head + start + "\n" + section + "\n" + end + rest.split(end, 1)[1])


def in_scratch(
    run: Callable[[argparse.Namespace, Path], tuple[list[Measurement], dict[str, dict]]],
    args: argparse.Namespace,
    prefix: str,
) -> tuple[list[Measurement], dict[str, dict]]:
    """`run(args, tmp)` in a new temporary folder, removed afterwards whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    name = args.name or ("catchup" if args.catchup else "bench")
    started = time.perf_counter()
    measurements, datasets = in_scratch(run_all, args, "flusher-bench-")
    summary = summarise(measurements, datasets)
    ratio = ratios(summary)
    checks = targets(summary, ratio)
    table = markdown(summary, datasets, ratio, checks)
    command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])  # what make bench runs
    header = (
        f"Measured by `{command}` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"{args.reps if not args.catchup else 1} repetitions per variant"
        + "".join(
            f" (at {size}, after {n} untimed warm-up run)"
            for size, n in WARMUP_RUNS.items()
            if size in args.sizes.split(",") and not args.catchup
        )
        + "".join(
            f" ({variant} at {size}: at most {n})"
            for (size, variant), n in MAX_REPS.items()
            if size in args.sizes.split(",") and variant in args.variants and not args.catchup
        )
        + f", {time.perf_counter() - started:.0f} s in all; PostgreSQL checkpointed and disks synced before each run."
    )
    print("\n" + header + "\n\n" + table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = RESULTS / f"{name}.json"
    results.write_text(
        json.dumps(
            {
                "header": header,
                "datasets": datasets,
                "summary": summary,
                "ratios": ratio,
                "targets": checks,
                "measurements": [m.to_json() for m in measurements],
            },
            indent=1,
        )
    )
    (RESULTS / f"{name}.md").write_text(header + "\n\n" + table + "\n")
    _chart(args.peer_python, results, RESULTS / f"{name}.png")
    if not args.no_readme:
        _update_readme(header + "\n\n" + table, name)
    return 0 if all(m.verified for m in measurements) else 1


if __name__ == "__main__":
    sys.exit(main())
