"""The Prefect API under concurrent flow runs, on SQLite and on PostgreSQL: requests/s, latency and errors (503s).

The README recommends a PostgreSQL-backed Prefect server for production because SQLite answers 503 under concurrent
load; this measures it in one run. Each client plays a flow run's API traffic: create the run, set it Running, send a
batch of log lines, set it Completed (what the flusher's flow runs and their task runs do, minus the work).

    .venv/bin/python -m bench.prefect_db [--clients 20 100] [--runs 10]

PostgreSQL is the machine's 127.0.0.1:5432 when it answers (a database of its own, dropped after); without one only
SQLite is measured.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.prefect_server import prefect_server


def _flow_run_traffic(api: str, flow_id: str, runs: int) -> tuple[list[float], Counter]:
    """`runs` flow runs' worth of API calls from one client; latencies (s) and status codes."""
    latencies, codes = [], Counter()
    with httpx.Client(base_url=api, timeout=60) as http:

        def call(method: str, path: str, body: object) -> httpx.Response | None:
            started = time.perf_counter()
            try:
                response = http.request(method, path, json=body)
            except httpx.HTTPError as exc:
                codes[type(exc).__name__] += 1
                return None
            latencies.append(time.perf_counter() - started)
            codes[response.status_code] += 1
            return response

        for _ in range(runs):
            created = call("POST", "/flow_runs/", {"flow_id": flow_id, "state": {"type": "PENDING"}})
            if created is None or created.status_code >= 300:
                continue
            run_id = created.json()["id"]
            call("POST", f"/flow_runs/{run_id}/set_state", {"state": {"type": "RUNNING"}, "force": True})
            now = datetime.now(UTC).isoformat()
            logs = [
                {"name": "bench", "level": 20, "message": f"line {i}", "timestamp": now, "flow_run_id": run_id}
                for i in range(10)
            ]
            call("POST", "/logs/", logs)
            call("POST", f"/flow_runs/{run_id}/set_state", {"state": {"type": "COMPLETED"}, "force": True})
    return latencies, codes


def measure(api: str, clients: int, runs: int) -> dict[str, object]:
    with httpx.Client(base_url=api, timeout=60) as http:
        flow_id = http.post("/flows/", json={"name": "bench-prefect-db"}).json()["id"]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: _flow_run_traffic(api, flow_id, runs), range(clients)))
    wall = time.perf_counter() - started
    latencies = sorted(x for lat, _ in results for x in lat)
    codes = sum((c for _, c in results), Counter())
    errors = sum(n for code, n in codes.items() if not (isinstance(code, int) and code < 300))
    return {
        "clients": clients,
        "requests": sum(codes.values()),
        "req_per_s": sum(codes.values()) / wall,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
        "errors": errors,
        "503s": codes.get(503, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--runs", type=int, default=10, help="flow runs per client")
    args = parser.parse_args()
    rows = []
    for database in ("sqlite", "auto"):
        with tempfile.TemporaryDirectory(prefix="bench-prefect-db-") as tmp:
            log = Path(tmp) / "server.log"
            with prefect_server(Path(tmp) / "home", log, timeout=180, database=database) as env:
                if database == "auto" and env["BENCH_PREFECT_DATABASE"] == "sqlite":
                    print("no PostgreSQL on 127.0.0.1:5432: measured SQLite only")
                    break
                for clients in args.clients:
                    rows.append(
                        {
                            "database": env["BENCH_PREFECT_DATABASE"],
                            **measure(env["PREFECT_API_URL"], clients, args.runs),
                        }
                    )
    print("| database | clients | requests | req/s | p50 ms | p99 ms | errors | 503s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['database']} | {r['clients']} | {r['requests']} | {r['req_per_s']:.0f} | {r['p50_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {r['errors']} | {r['503s']} |"
        )


if __name__ == "__main__":
    main()
