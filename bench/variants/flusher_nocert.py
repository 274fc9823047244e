"""This flusher with completeness certificates off (FLUSHER_BENCH_NO_CERTIFICATE, read by flusher/certificate.py):
the same flow as `flusher`, so its wall time against `flusher`'s is what the certificate costs.

    python -m bench.run --sizes large --reps 3 --variants flusher,flusher-nocert,flusher-verify --no-readme
"""

from __future__ import annotations

import os

from bench.variants import flusher_flow
from flusher.certificate import DISABLE_ENV

if __name__ == "__main__":
    os.environ[DISABLE_ENV] = "1"
    flusher_flow.main()
