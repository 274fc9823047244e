"""This flusher (certificates on, as `flusher`), then `verify` over the whole lake the flush filled: the result
carries verify_seconds, verify_ok, the batches whose certificate was recomputed and the flush's own client CPU
(flush_client_cpu_seconds), beside the flush's figures."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

from bench.variants.common import read_spec
from bench.variants.flusher_nocert import run_flusher_flow


def main() -> None:
    run_flusher_flow()
    from flusher.config import load_settings
    from flusher.verify import run_verify

    spec = read_spec()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    flush_cpu = usage.ru_utime + usage.ru_stime  # this process's CPU up to here: the flush's client side
    started = time.perf_counter()
    report = run_verify(load_settings(spec["config"]))
    seconds = time.perf_counter() - started
    print(report.render(), flush=True)
    path = Path(spec["result"])
    certified = sum(t.batches_certified for t in report.tables)
    result = json.loads(path.read_text()) | {
        "verify_seconds": seconds,
        "verify_ok": report.ok,
        "verify_batches_certified": certified,
        # cpu_seconds of this variant include verify; this is the flush's part, comparable with flusher-nocert's
        # client_cpu_seconds (PostgreSQL's CPU, in postgres_cpu_seconds, covers both).
        "flush_client_cpu_seconds": flush_cpu,
    }
    path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
