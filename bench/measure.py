"""Run one variant in a subprocess, read its own result and its peak RSS, and check the flush was complete."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.dataset import hot_counts
from bench.pgcpu import postgres_cpu_seconds
from bench.workspace import Workspace, lake_counts

ROOT = Path(__file__).resolve().parent.parent
MODULES = {
    "ceiling": "bench.variants.ceiling",
    "seed-pattern": "bench.variants.seed_pattern",
    "flusher": "bench.variants.flusher_flow",
    "flusher-nocert": "bench.variants.flusher_nocert",  # certificates off: their cost (issue 12)
    "flusher-verify": "bench.variants.flusher_verify",  # then `verify` over the lake, timed
    "dlt": "bench.variants.dlt_peer",
}
DELETES = {"ceiling", "seed-pattern", "flusher", "flusher-nocert", "flusher-verify"}  # dlt only copies
PROBED = {"bench.variants.flusher_flow"}  # BENCH_MEMORY_PROBE=1 samples their memory per phase (bench/memprobe.py)


def command(python: str, module: str, spec: Path, env: dict[str, str]) -> list[str]:
    """The variant's command line: its module, or the memory probe running it when BENCH_MEMORY_PROBE=1."""
    if env.get("BENCH_MEMORY_PROBE") == "1" and module in PROBED:
        return [python, "-m", "bench.memprobe", module, str(spec)]
    return [python, "-m", module, str(spec)]


def parse_variant(label: str) -> tuple[str, dict[str, str]]:
    """'flusher[flush.concurrency=2,ducklake.threads=1]' -> ('flusher', {FLUSHER_FLUSH_CONCURRENCY: '2', ...}).

    The settings in brackets reach the variant as the config's environment overrides, so one run can compare
    tunings side by side; a plain name runs with the workspace's config as it is.
    """
    base, _, options = label.partition("[")
    if base not in MODULES:
        raise ValueError(f"unknown variant {base!r}; choose from {', '.join(MODULES)}")
    env = {}
    for item in filter(None, options.rstrip("]").split(",")):
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not (sep and dot):
            raise ValueError(f"variant option {item!r} is not section.key=value")
        env[f"FLUSHER_{section.upper()}_{name.upper()}"] = value.strip()
    return base, env


@dataclass
class Measurement:
    size: str
    variant: str
    rep: int
    wall: float
    phases: dict[str, float]
    peak_rss_mib: float
    rows: int
    verified: bool
    problems: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def run_subprocess(python: str, module: str, spec: Path, env: dict[str, str], log: Path) -> tuple[int, float, float]:
    """Run `python -m module spec`; returns its exit code, peak RSS in MiB (its own and its waited children's) and
    CPU seconds (user + system; PostgreSQL's own work is not in it)."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            command(python, module, spec, env), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # Linux reports KiB


def verify(variant: str, ws: Workspace, result: dict) -> list[str]:
    """What is wrong with this run's outcome: lake rows != rows loaded, or (for variants that delete) rows left hot."""
    problems = []
    lake = result.get("lake_counts") or lake_counts(ws)
    for table, expected in ws.expected.items():
        if lake.get(table) != expected:
            problems.append(f"{table}: {lake.get(table)} rows in the lake, {expected} loaded")
    if variant in DELETES:
        problems += [f"{t}: {n} rows left in PostgreSQL" for t, n in hot_counts(ws.hot_uri, ws.tables).items() if n]
    return problems


def measure(
    size: str,
    variant: str,
    rep: int,
    ws: Workspace,
    python: str,
    env: dict[str, str],
    pgdata: Path,
    wire: Callable[[bool], dict[str, int]] | None = None,
    **spec_extra: object,
) -> Measurement:
    """`wire(reset)`: counters of what crossed the network (bench/remote.py's proxies), zeroed before the run
    (reset=True) and read right after it, before anything else talks to the lake."""
    base, overrides = parse_variant(variant)
    result_path = ws.root / f"{base}.result.json"
    spec = ws.spec(result_path, root=str(ws.root), **spec_extra)
    log = ws.root / f"{base}.log"
    load_before, pg_before = os.getloadavg()[0], postgres_cpu_seconds(pgdata)
    if wire:
        wire(True)
    code, rss, cpu = run_subprocess(python, MODULES[base], spec, os.environ | env | overrides, log)
    counted = wire(False) if wire else {}
    time.sleep(0.3)  # let the postmaster reap the variant's backends, so their CPU is counted
    pg_cpu = postgres_cpu_seconds(pgdata) - pg_before
    load = {
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": os.getloadavg()[0],
        "cpu_seconds": cpu + pg_cpu,
        "client_cpu_seconds": cpu,
        "postgres_cpu_seconds": pg_cpu,
    } | counted
    if code != 0 or not result_path.exists():
        tail = log.read_text()[-2000:]
        return Measurement(size, variant, rep, 0.0, {}, rss, 0, False, [f"exit code {code}: {tail}"], load)
    result = json.loads(result_path.read_text())
    problems = verify(base, ws, result)
    extra = load | {k: v for k, v in result.items() if k not in ("wall", "phases", "rows", "lake_counts")}
    extra["lake_mib"] = sum(f.stat().st_size for f in Path(ws.data_path).rglob("*") if f.is_file()) / 2**20
    return Measurement(
        size,
        variant,
        rep,
        result["wall"],
        result["phases"],
        rss,
        sum(ws.expected.values()),
        not problems,
        problems,
        extra,
    )
