"""The command line's own options (issue 13): --version, $FLUSHER_CONFIG, --max-ledgers, run names in log lines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from flusher.app.cli import RunNameFormatter, main


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "FLUSHER_CONFIG"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "flusher.app.cli", *args], capture_output=True, text=True, env=environ, timeout=120
    )


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == "postgres-ducklake-flusher 0.1.0"


def test_without_config_or_flusher_config_a_command_exits_2_saying_both_ways():
    done = _cli("status")
    assert done.returncode == 2
    assert "no configuration: pass --config FILE or set $FLUSHER_CONFIG" in done.stderr
    assert "Traceback" not in done.stderr


def test_flusher_config_is_the_default_config(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    done = _cli("status", env={"FLUSHER_CONFIG": str(missing)})
    assert done.returncode == 2
    assert f"cannot read config file {missing}" in done.stderr  # the variable's file was the one read


@pytest.mark.parametrize(("value", "said"), [("-3", "-3 is negative"), ("many", "'many' is not a whole number")])
def test_a_negative_or_non_numeric_ledger_cap_is_refused_before_anything_runs(tmp_path, value, said):
    done = _cli("flush", "--config", str(tmp_path / "c.yaml"), "--max-ledgers", value)
    assert done.returncode == 2
    assert said in done.stderr and "Traceback" not in done.stderr


def test_log_lines_of_a_run_name_the_run():
    formatter = RunNameFormatter("%(levelname)s %(run)s%(message)s")
    record = logging.LogRecord("prefect.task_runs", logging.INFO, __file__, 1, "Finished in state %s", ("ok",), None)
    assert formatter.format(record) == "INFO Finished in state ok"
    record.flow_run_name, record.task_run_name = "brave-fox", "flush-trades_row_v1"
    assert formatter.format(record) == "INFO flush-trades_row_v1 | Finished in state ok"
    del record.task_run_name
    assert formatter.format(record) == "INFO brave-fox | Finished in state ok"


def test_the_command_line_and_settings_resolution_load_neither_prefect_nor_duckdb():
    """--help, a configuration error and `status` answer fast: Prefect (~2 s) and DuckDB load only when used."""
    code = (
        "import sys, flusher.app.cli, flusher.blocks.settings; print(sorted({'prefect', 'duckdb'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
