"""`make bench-remote`: the deployed regime. The DuckLake catalog PostgreSQL and an S3 server (moto) sit behind
proxies adding a round-trip time (bench/proxy.py); the hot buffer stays local, as the flusher runs next to it.

    python -m bench.remote [--rtt-ms 30] [--sizes seed,medium] [--reps 2] [--variants ceiling,seed-pattern,flusher]
                           [--trace DIR]

Each variant runs on identical data (bench/run.py's datasets and workspaces); besides the phases it reports what
crossed the network during the run: catalog statements, round trips and connections, and S3 requests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.dataset import SIZES, build_template
from bench.measure import Measurement, measure, parse_variant
from bench.prefect_server import prefect_server
from bench.proxy import RunningProxy, running
from bench.report import summarise
from bench.run import RESULTS, in_scratch
from bench.workspace import Remote, prepare

BUCKET = "bronze"
KEYS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "aws_region": "us-east-1"}
WIRE = (  # (result key, proxy, counter)
    ("catalog_statements", "catalog", "statements"),
    ("catalog_round_trips", "catalog", "round_trips"),
    ("catalog_connections", "catalog", "connections"),
    ("s3_requests", "s3", "requests"),
    ("s3_puts", "s3", "PUT"),
)


# What the README recommends for a catalog across the network, measured beside the defaults.
REMOTE_SETTINGS = "flusher[flush.commit_groups=2,flush.certificate=source]"


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.remote", description=__doc__.splitlines()[0])
    parser.add_argument("--rtt-ms", type=float, default=30.0, help="round-trip time added to catalog and S3")
    parser.add_argument("--sizes", default="seed,medium", help=f"comma-separated: {', '.join(SIZES)}")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument(
        "--variants",
        default=f"ceiling,seed-pattern,flusher,{REMOTE_SETTINGS}",
        help="comma-separated; settings in brackets tune one run, e.g. flusher[flush.concurrency=8]",
    )
    parser.add_argument("--trace", default=None, help="folder for per-run statement traces (catalog and S3)")
    parser.add_argument("--name", default=None, help="results file stem (default: remote-<RTT>ms)")
    return parser.parse_args(argv)


@contextmanager
def moto_server() -> Iterator[str]:
    """An S3 server on loopback with the bucket; yields host:port. Keys are not checked (any key may write)."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", **{"region_name": "us-east-1"} | _boto_keys())
        client.create_bucket(Bucket=BUCKET)
        yield f"{host}:{port}"
    finally:
        server.stop()


def _boto_keys() -> dict[str, str]:
    return {k: KEYS[k] for k in ("aws_access_key_id", "aws_secret_access_key")}


def _wire(catalog: RunningProxy, s3: RunningProxy) -> Callable[[bool], dict[str, int]]:
    proxies = {"catalog": catalog, "s3": s3}

    def counters(reset: bool) -> dict[str, int]:
        if reset:
            for proxy in proxies.values():
                proxy.reset()
            return {}
        stats = {name: proxy.stats() for name, proxy in proxies.items()}
        return {key: stats[proxy].get(counter, 0) for key, proxy, counter in WIRE}

    return counters


def _remote(catalog: RunningProxy, s3_endpoint: str, prefix: str) -> Remote:
    return Remote(
        catalog.port,
        {
            "data_path": f"s3://{BUCKET}/{prefix}/",
            "aws_endpoint": s3_endpoint,
            "aws_url_style": "path",
            "aws_use_ssl": False,
            **KEYS,
        },
    )


def run_all(args: argparse.Namespace, tmp: Path) -> tuple[list[Measurement], dict[str, dict]]:
    from flusher.embedded import server_params, start_embedded_postgres

    variants = re.findall(r"[^,\[]+(?:\[[^\]]*\])?", args.variants)
    for variant in variants:
        parse_variant(variant)
    server = start_embedded_postgres(tmp / "pg")
    measurements: list[Measurement] = []
    datasets: dict[str, dict] = {}
    trace = Path(args.trace) if args.trace else None
    if trace:
        trace.mkdir(parents=True, exist_ok=True)
    try:
        admin = server.get_uri()
        params = server_params(admin)
        with ExitStack() as stack:
            prefect_env = stack.enter_context(prefect_server(tmp / "prefect", tmp / "prefect-server.log"))
            s3_direct = stack.enter_context(moto_server())
            catalog = stack.enter_context(
                running(f"{params['host']}:{params['port']}", args.rtt_ms, "postgres", trace and trace / "catalog.log")
            )
            s3 = stack.enter_context(running(s3_direct, args.rtt_ms, "s3", trace and trace / "s3.log"))
            s3_endpoint = f"127.0.0.1:{s3.port}"
            for size in args.sizes.split(","):
                print(f"[{size}] loading {SIZES[size]:,} ledgers ...", flush=True)
                dataset = build_template(admin, size, SIZES[size])
                datasets[size] = dataset.to_json()
                print(f"[{size}] {dataset.total_rows:,} rows at {args.rtt_ms:g} ms RTT", flush=True)
                for rep in range(1, args.reps + 1):
                    for variant in variants:  # interleaved, so drift on the machine hits every variant alike
                        prefix = f"{size}-{re.sub(r'[^a-z0-9]+', '-', variant)}-{rep}"
                        ws = prepare(admin, dataset, tmp / "run", remote=_remote(catalog, s3_endpoint, prefix))
                        m = measure(
                            size, variant, rep, ws, sys.executable, prefect_env, tmp / "pg", wire=_wire(catalog, s3)
                        )
                        measurements.append(m)
                        status = "ok" if m.verified else "FAILED: " + "; ".join(m.problems)[-1500:]
                        print(
                            f"[{size}] rep {rep} {variant:13} {m.wall:7.2f} s  "
                            + "  ".join(f"{k} {m.extra.get(k, 0):5}" for k, _, _ in WIRE)
                            + f"  load {m.extra.get('load_avg_1m_after', 0):4.1f}  {status}",
                            flush=True,
                        )
    finally:
        server.cleanup()
    return measurements, datasets


def markdown(measurements: list[Measurement], datasets: dict[str, dict], rtt_ms: float) -> str:
    """Per size and variant: median wall and phases, and the median of each wire counter per run."""
    lines = [
        "| size | variant | wall s median (min–max) | watermark | flush | delete | vacuum | other "
        "| catalog statements | catalog round trips | catalog connections | S3 requests (PUT) | load avg | verified |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in summarise(measurements, datasets):
        runs = [m for m in measurements if m.size == row["size"] and m.variant == row["variant"]]
        wire = {key: statistics.median(m.extra.get(key, 0) for m in runs) for key, _, _ in WIRE}
        p = {k: ("–" if v is None else f"{v:.2f}") for k, v in row["phases"].items()}
        lines.append(
            f"| {row['size']} | {row['variant']} | {row['wall_median']:.2f} ({row['wall_min']:.2f}–"
            f"{row['wall_max']:.2f}) | {p['watermark']} | {p['flush']} | {p['delete']} | {p['vacuum']} "
            f"| {p['overhead']} | {wire['catalog_statements']:,.0f} | {wire['catalog_round_trips']:,.0f} "
            f"| {wire['catalog_connections']:,.0f} | {wire['s3_requests']:,.0f} ({wire['s3_puts']:,.0f}) "
            f"| {row['load_avg_1m_median']:.1f} | {'yes' if row['verified'] else 'NO'} ({row['reps']} reps) |"
        )
    lines.append("")
    for size, data in datasets.items():
        lines.append(
            f"- data **{size}**: {data['total_rows']:,} rows in 19 tables; catalog PostgreSQL and S3 (moto) "
            f"{rtt_ms:g} ms RTT away, the hot buffer local"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    name = args.name or f"remote-{args.rtt_ms:g}ms"
    started = time.perf_counter()
    measurements, datasets = in_scratch(run_all, args, "flusher-bench-remote-")
    command = "python -m bench.remote " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (
        f"Measured by `{command}` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {args.reps} repetitions "
        f"per variant, {time.perf_counter() - started:.0f} s in all; counters are per run, at the proxies."
    )
    table = markdown(measurements, datasets, args.rtt_ms)
    print("\n" + header + "\n\n" + table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(
        json.dumps(
            {
                "header": header,
                "rtt_ms": args.rtt_ms,
                "datasets": datasets,
                "measurements": [m.to_json() for m in measurements],
            },
            indent=1,
        )
    )
    (RESULTS / f"{name}.md").write_text(header + "\n\n" + table + "\n")
    return 0 if all(m.verified for m in measurements) else 1


if __name__ == "__main__":
    sys.exit(main())
