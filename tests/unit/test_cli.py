"""The console command without servers: --help lists every command."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_help_names_every_command():
    result = subprocess.run(
        [sys.executable, "-m", "flusher.app.cli", "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    for command in ("flush", "init", "status", "blocks", "serve", "alerts", "demo", "maintain", "takeover"):
        assert command in result.stdout
    assert "exactly once" in result.stdout
