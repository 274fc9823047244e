"""prefect.yaml's entrypoints name the installed flows, whatever the working directory (the folders are mapped)."""

from __future__ import annotations

import subprocess
import sys

import yaml

from flusher.app.deployment_spec import entrypoint_module
from tests.layers import ROOT


def test_each_entrypoint_maps_to_its_module_inside_the_package():
    assert entrypoint_module("flows/bronze_flush.py:bronze_flush") == "flusher.flows.bronze_flush"
    assert entrypoint_module("flows/maintenance.py:bronze_maintenance") == "flusher.flows.maintenance"


def test_every_prefect_yaml_entrypoint_loads_its_flow_outside_the_checkout(tmp_path):
    entrypoints = [d["entrypoint"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]]
    assert entrypoints
    code = (
        "import sys; from flusher.app.deployment_spec import entrypoint_module; import importlib\n"
        "for e in sys.argv[1:]:\n"
        "    flow = getattr(importlib.import_module(entrypoint_module(e)), e.partition(':')[2])\n"
        "    print(flow.name)\n"
    )
    # From an unrelated folder: only the installed package can answer, not the checkout's top-level folders.
    done = subprocess.run(
        [sys.executable, "-c", code, *entrypoints], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["bronze-flush", "bronze-maintenance"][: len(entrypoints)]


def test_a_checkout_without_the_installed_package_still_finds_the_mapped_folders(tmp_path):
    """A process that imports `flusher` from the checkout (its folder on sys.path, as a Prefect worker running
    flows/bronze_flush.py from the checkout does) finds flusher.flows etc. in the folders beside it."""
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import flusher.flows.bronze_flush, flusher.app.cli, flusher.blocks.ducklake\n"
        "print(flusher.flows.bronze_flush.__file__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(ROOT / "flows" / "bronze_flush.py")
