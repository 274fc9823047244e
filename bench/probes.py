"""`python -m bench.probes`: /health and /metrics under a bounded burst, served from the background snapshot
(today) and, in the same run, read per request (the old behaviour: the state and hot buffer read in the request,
a new catalog connection each time, a 30 s pool wait).

An embedded PostgreSQL (flusher.embedded) holds the hot schema (21 tables), the flusher's state tables and a
catalog database; the load comes from a separate process (so the clients do not share the servers' GIL): C
concurrent clients, each sending N requests one after another. Prints requests/s, p50, p99 and errors (a
connection error, a timeout, or an answer other than 200) per server, endpoint and concurrency.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

CLIENT_TIMEOUT_SECONDS = 60


def _one(url: str) -> tuple[float, bool]:
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=CLIENT_TIMEOUT_SECONDS) as response:
            response.read()
            ok = response.status == 200
    except (urllib.error.URLError, OSError):  # HTTPError (a 503) included
        ok = False
    return time.monotonic() - start, ok


def load(url: str, clients: int, per_client: int) -> dict:
    """C clients x N requests; the figures as a dict."""

    def client(_: int) -> list[tuple[float, bool]]:
        return [_one(url) for _ in range(per_client)]

    start = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.monotonic() - start
    latencies = sorted(t for t, _ in results)
    return {
        "requests": len(results),
        "rps": len(results) / wall,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "errors": sum(1 for _, ok in results if not ok),
    }


def _load_in_child(url: str, clients: int, per_client: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.probes", "--load", url, str(clients), str(per_client)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def _settings(uri: str, root: Path):
    from flusher.config import settings_from_mapping
    from flusher.embedded import server_params

    params = server_params(uri)
    pg = {"host": params["host"], "port": int(params["port"]), "user": params["user"]}
    catalog = " ".join(f"{k}={v}" for k, v in {**pg, "dbname": "catalog"}.items())
    raw = {
        "postgres": {**pg, "database": "hot"},
        "ducklake": {"catalog_path": catalog, "data_path": str(root / "lake")},
    }
    return settings_from_mapping(raw, "bench", {})


def _servers(settings, pool):
    """(name, HealthServer) for the cached server and the per-request baseline."""
    from flusher.app.health import Current, HealthProbe, HealthServer
    from flusher.app.probe_reader import CatalogCheck, StateReader

    class PerRequest(HealthProbe):
        """The old behaviour: every request reads PostgreSQL and opens a new catalog connection."""

        def current(self) -> Current:
            snap, problem = self.reader._read_hot()  # no lock: requests read side by side, as they did
            catalog = CatalogCheck(self.settings)
            snap.problems += [p for p in (problem, catalog.problem()) if p]
            catalog.close()
            return Current(snap, datetime.now(UTC), 0.0)

    cached = HealthProbe(settings, pool, lambda: None, interval_seconds=600)
    baseline = PerRequest(
        settings, pool, lambda: None, interval_seconds=600, reader=StateReader(settings, pool, timeout_seconds=30)
    )
    baseline.refresh()  # creates the state tables once, as the old probe did on its first request
    return [("cached", HealthServer(cached, "127.0.0.1", 0)), ("per-request", HealthServer(baseline, "127.0.0.1", 0))]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.probes")
    parser.add_argument("--clients", default="20,100", help="concurrent clients, comma-separated")
    parser.add_argument("--requests", type=int, default=5, help="requests per client")
    parser.add_argument("--load", nargs=3, metavar=("URL", "CLIENTS", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(args.load[0], int(args.load[1]), int(args.load[2]))))
        return

    from flusher.embedded import start_embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="flusher-bench-probes-"))
    server = start_embedded_postgres(root / "pg")
    try:
        _run(server.get_uri(), root, [int(c) for c in args.clients.split(",")], args.requests)
    finally:
        server.cleanup()  # stops PostgreSQL
        shutil.rmtree(root, ignore_errors=True)


def _run(uri: str, root: Path, concurrency: list[int], per_client: int) -> None:
    import psycopg

    from flusher.embedded import create_database, create_hot_schema
    from flusher.hot import make_pool

    for name in ("hot", "catalog"):
        create_database(uri, name)
    hot_uri = psycopg.conninfo.make_conninfo(uri, dbname="hot")
    with psycopg.connect(hot_uri, autocommit=True) as conn:
        create_hot_schema(conn)
    settings = _settings(uri, root)
    rows = []
    with make_pool(settings.postgres) as pool:
        servers = _servers(settings, pool)
        for _, http in servers:
            http.start()
        time.sleep(1)  # the cached server's first reading
        try:
            for clients in concurrency:
                for path in ("/health", "/metrics"):
                    for name, http in servers:
                        url = f"http://127.0.0.1:{http.port}{path}"
                        rows.append(
                            {"server": name, "path": path, "clients": clients}
                            | _load_in_child(url, clients, per_client)
                        )
                        print(_row(rows[-1]), flush=True)
        finally:
            for _, http in servers:
                http.stop()
    print(f"\n{per_client} requests per client, each client one request after another; embedded PostgreSQL")


def _row(r: dict) -> str:
    return (
        f"{r['server']:<12} {r['path']:<8} {r['clients']:>4} clients: {r['requests']:>4} requests, "
        f"{r['rps']:8.1f} req/s, p50 {r['p50'] * 1000:8.1f} ms, p99 {r['p99'] * 1000:8.1f} ms, "
        f"errors {r['errors']}"
    )


if __name__ == "__main__":
    main()
