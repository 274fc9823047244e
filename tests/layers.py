"""The import-layer check: import-linter's contracts (pyproject.toml) over the package as it is installed.

The folders above the core are mapped into `flusher` at install time (flusher.app from app/, ...); import-linter reads
a package from one folder, so the check lays the package out as the wheel does, in a temporary folder, first.
`python -m tests.layers` runs it (make test does); tests/unit/test_layers.py also proves it can fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = ("app", "flows", "tasks", "blocks", "schema")  # pyproject.toml [tool.setuptools.package-dir]


def lay_out(source: Path, into: Path) -> Path:
    """Copy the package into `into` the way the wheel installs it; return the package folder."""
    package = into / "flusher"
    shutil.copytree(source / "flusher", package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in MAPPED:
        shutil.copytree(source / name, package / name, ignore=shutil.ignore_patterns("__pycache__"))
    return package


def lint_imports(laid_out: Path, config: Path = ROOT / "pyproject.toml") -> subprocess.CompletedProcess[str]:
    """Run lint-imports on a laid-out package (the folder holding `flusher`)."""
    env = {**os.environ, "PYTHONPATH": str(laid_out)}
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--no-cache", str(config)], cwd=laid_out, env=env, capture_output=True, text=True, timeout=120
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="flusher-layers-") as tmp:
        lay_out(ROOT, Path(tmp))
        done = lint_imports(Path(tmp))
    print(done.stdout[done.stdout.find("Contracts") :] if "Contracts" in done.stdout else done.stdout, done.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
