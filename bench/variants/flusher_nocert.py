"""This flusher with completeness certificates off (FLUSHER_BENCH_NO_CERTIFICATE, read by flusher/certificate.py):
the same flow as `flusher`, so its wall time against a run with certificates is what the certificate costs.

    python -m bench.run --sizes large --reps 3 --variants flusher-verify,flusher-nocert --no-readme
"""

from __future__ import annotations

import os

from bench.variants import flusher_flow
from flusher.certificate import DISABLE_ENV


def run_flusher_flow() -> None:
    """bench.variants.flusher_flow's run, with the flow function's annotations resolved first: its timers' wrappers
    copy them, and Prefect would resolve names like `list[KnownTable]` in the wrapper's module, which lacks them."""
    import typing

    import flusher.flows.bronze_flush as module

    module.bronze_flush.fn.__annotations__ = typing.get_type_hints(module.bronze_flush.fn, include_extras=True)
    flusher_flow.main()


if __name__ == "__main__":
    os.environ[DISABLE_ENV] = "1"
    run_flusher_flow()
