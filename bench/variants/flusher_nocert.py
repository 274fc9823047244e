"""This flusher with completeness certificates off (flush.certificate: false, here through its environment variable):
the same flow as `flusher`, so its wall time against a run with certificates is what the certificate costs.

    python -m bench.run --sizes large --reps 3 --variants ceiling,flusher,flusher-nocert --no-readme --name cert-large
"""

from __future__ import annotations

import os

from bench.variants import flusher_flow


def run_flusher_flow() -> None:
    """bench.variants.flusher_flow's run, with the flow function's annotations resolved first: its timers' wrappers
    copy them, and Prefect would resolve names like `list[KnownTable]` in the wrapper's module, which lacks them."""
    import typing

    import flusher.flows.bronze_flush as module

    module.bronze_flush.fn.__annotations__ = typing.get_type_hints(module.bronze_flush.fn, include_extras=True)
    flusher_flow.main()


if __name__ == "__main__":
    os.environ["FLUSHER_FLUSH_CERTIFICATE"] = "false"
    run_flusher_flow()
