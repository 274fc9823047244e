"""The layers point down (README "Layout"): import-linter's contracts hold, cover every core module, and can fail."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.layers import ROOT, lay_out, lint_imports

CONTRACTS = {
    c["id"]: c for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
}


def _core_modules() -> set[str]:
    return {f"flusher.{p.stem}" for p in (ROOT / "flusher").glob("*.py") if p.stem != "__init__"}


def test_the_contracts_name_every_module_of_the_core():
    bottom = {name.strip() for name in CONTRACTS["layers"]["layers"][-1].split(":")}
    assert bottom == _core_modules(), "a core module is missing from the layers contract in pyproject.toml"
    assert set(CONTRACTS["core-without-prefect"]["source_modules"]) == _core_modules()


def test_the_layers_contracts_are_kept(tmp_path: Path):
    lay_out(ROOT, tmp_path)
    done = lint_imports(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("flusher/hot.py", "import prefect", "The core runs without Prefect"),
        ("flusher/state.py", "from flusher.tasks import flush", "Layers point down"),
        ("flusher/tasks/flush.py", "from flusher.flows import bronze_flush", "Layers point down"),
        ("flusher/blocks/ducklake.py", "from flusher.app import cli", "Layers point down"),
    ],
)
def test_an_upward_import_breaks_a_contract(tmp_path: Path, module: str, line: str, contract: str):
    lay_out(ROOT, tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n\ndef _upward():\n    {line}\n")  # function-local imports count too
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    assert f"{contract}" in done.stdout and "BROKEN" in done.stdout, done.stdout[-3000:]
