"""Where the flusher's seconds go: one real flow run under py-spy (all threads, waits included), summarised.

    python -m bench.profile [--size seed|large] [--rate 100]

Writes bench/results/profile-<size>.txt: wall seconds inside each of the flusher's own functions (inclusive, summed
over threads, so concurrent table flushes add up) and the heaviest library frames beneath them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from bench.dataset import SIZES, build_template
from bench.measure import ROOT
from bench.prefect_server import prefect_server
from bench.workspace import prepare

PY_SPY = ROOT / "bench" / ".venv" / "bin" / "py-spy"
OURS = re.compile(r"(^|\(|/)(flows|tasks|flusher)/[a-z_]+\.py")
FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:]+)(:\d+)?\)$")


def _frames(stack: str) -> list[str]:
    """Function (short file) names of one collapsed stack, outermost first, without line numbers."""
    names = []
    for raw in stack.split(";"):
        match = FRAME.match(raw.strip())
        if match:
            names.append(f"{match['func']} ({'/'.join(Path(match['file']).parts[-2:])})")
    return names


def summarise(raw: Path, rate: int, top: int = 45) -> str:
    """Inclusive seconds per function: ours, and the library functions directly under ours."""
    ours: Counter[str] = Counter()
    below: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = _frames(stack)
        seen = set()
        for i, frame in enumerate(frames):
            if OURS.search(frame) and frame not in seen:
                seen.add(frame)
                ours[frame] += int(count)
                nxt = frames[i + 1] if i + 1 < len(frames) else None
                if nxt and not OURS.search(nxt):
                    below[f"{frame.split(' (')[0]} -> {nxt}"] += int(count)
    lines = ["seconds  our function (inclusive, summed over threads)"]
    lines += [f"{n / rate:7.2f}  {name}" for name, n in ours.most_common(top)]
    lines += ["", "seconds  library call made directly by our function"]
    lines += [f"{n / rate:7.2f}  {name}" for name, n in below.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--size", default="seed", choices=["seed", "large"])
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's collapsed stacks here")
    args = parser.parse_args()
    from flusher.embedded import start_embedded_postgres

    tmp = Path(tempfile.mkdtemp(prefix="flusher-profile-"))
    server = start_embedded_postgres(tmp / "pg")
    try:
        dataset = build_template(server.get_uri(), args.size, SIZES[args.size])
        with prefect_server(tmp / "prefect", tmp / "prefect-server.log") as env:
            ws = prepare(server.get_uri(), dataset, tmp / "run")
            spec = ws.spec(ws.root / "flusher.result.json", root=str(ws.root))
            raw = tmp / "profile.raw"
            subprocess.run(
                [
                    str(PY_SPY),
                    "record",
                    "--idle",
                    "--threads",
                    "--format",
                    "raw",
                    "--rate",
                    str(args.rate),
                    "--output",
                    str(raw),
                    "--",
                    str(Path(os.sys.executable)),
                    "-m",
                    "bench.variants.flusher_flow",
                    str(spec),
                ],
                cwd=ROOT,
                env=os.environ | env,
                check=True,
            )
            print((ws.root / "flusher.result.json").read_text())
        text = summarise(raw, args.rate)
        if args.raw:
            shutil.copy(raw, args.raw)
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    out = ROOT / "bench" / "results" / f"profile-{args.size}.txt"
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
