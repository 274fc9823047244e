"""bench/memprobe.py and bench/memreport.py: BENCH_DUCKDB_SET is parsed strictly and checked before a run; the probe
tags samples with the innermost phase and reads DuckDB's own accounting; the report lays the phases out."""

from __future__ import annotations

import json

import duckdb
import pytest

import flusher.lake as lake
from bench import memprobe
from bench.measure import command
from bench.memprobe import BadSetting, Probe, check_settings, install, parse_duckdb_set, set_statements
from bench.memreport import breakdown
from bench.variants.common import Phases

MIB = 1024 * 1024


def test_settings_parse_into_pairs_and_set_statements():
    pairs = parse_duckdb_set(" memory_limit=1GB; threads = 2 ;")
    assert pairs == [("memory_limit", "1GB"), ("threads", "2")]
    assert set_statements(pairs) == ["SET GLOBAL memory_limit = '1GB'", "SET GLOBAL threads = '2'"]
    assert parse_duckdb_set("") == []


@pytest.mark.parametrize("text", ["memory_limit", "=1GB", "memory_limit=", "memory limit=1GB", "threads=2'; DROP x"])
def test_a_malformed_setting_is_refused_with_what_to_write(text):
    with pytest.raises(BadSetting, match="is not name=value"):
        parse_duckdb_set(text)


@pytest.mark.parametrize("text", ["no_such_setting=1", "memory_limit=lots"])
def test_a_setting_duckdb_refuses_stops_before_the_run(text):
    with pytest.raises(BadSetting, match="BENCH_DUCKDB_SET: .* failed"):
        check_settings(set_statements(parse_duckdb_set(text)))
    check_settings(set_statements(parse_duckdb_set("memory_limit=300MB")))  # a good one passes


@pytest.mark.parametrize("text", ["memory_limit", "no_such_setting=1"])
def test_a_bad_setting_exits_2_without_running_the_variant(monkeypatch, capsys, text):
    ran = []
    monkeypatch.setenv("BENCH_DUCKDB_SET", text)
    monkeypatch.setattr(memprobe.runpy, "run_module", lambda *a, **k: ran.append(a))
    assert memprobe.main(["bench.variants.flusher_flow", "spec.json"]) == 2
    assert "BENCH_DUCKDB_SET" in capsys.readouterr().err and not ran


def test_samples_carry_the_innermost_phase_and_duckdb_memory():
    probe = Probe()
    assert probe.sample()["phase"] == "engine" and probe.sample()["duckdb"] is None
    db = duckdb.connect()
    probe.watch(db)
    with probe.phase("flow_body"), probe.phase("flush"):
        point = probe.sample()
    assert point["phase"] == "flush" and point["rss"] > 0 and point["duckdb"] is not None
    db.close()
    assert probe.sample()["duckdb"] is None  # a closed DuckDB is skipped, not an error


def test_peaks_are_kept_per_phase():
    probe = Probe()
    for phase, rss in (("flush", 900), ("flush", 700), ("delete", 300)):
        probe._record({"t": 0.0, "phase": phase, "rss": rss * MIB, "duckdb": None})
    assert probe.peaks_mib() == {"flush": {"rss": 900.0}, "delete": {"rss": 300.0}}


def test_install_applies_the_settings_to_every_flusher_duckdb_and_tags_phases(monkeypatch, tmp_path):
    probe = Probe()
    install(probe, ["SET GLOBAL memory_limit = '300MB'"], monkeypatch.setattr)
    db = lake.connect_duckdb(1, "1GB", tmp_path)
    try:
        assert db.execute("SELECT current_setting('memory_limit')").fetchone()[0] in ("286.1 MiB", "300.0 MB")
        phases, seen = Phases(), []
        with phases.time("vacuum"):
            seen.append(probe.sample())
        assert seen[0]["phase"] == "vacuum" and seen[0]["duckdb"] is not None and "vacuum" in phases.seconds
    finally:
        db.close()


def test_only_the_flusher_runs_under_the_probe_and_only_when_asked(tmp_path):
    spec = tmp_path / "spec.json"
    on = {"BENCH_MEMORY_PROBE": "1"}
    assert command("py", "bench.variants.flusher_flow", spec, on)[:4] == [
        "py",
        "-m",
        "bench.memprobe",
        "bench.variants.flusher_flow",
    ]
    assert command("py", "bench.variants.flusher_flow", spec, {}) == [
        "py",
        "-m",
        "bench.variants.flusher_flow",
        str(spec),
    ]
    assert command("py", "bench.variants.dlt_peer", spec, on)[2] == "bench.variants.dlt_peer"


def test_the_breakdown_shows_each_phase_and_what_sits_outside_duckdb():
    memory = {
        "peaks_mib": {"flush": {"rss": 850.0, "duckdb": 512.0}, "engine": {"rss": 200.0}},
        "timeline": [
            {"t": 1.0, "phase": "engine", "rss": 200 * MIB, "duckdb": None},
            {"t": 2.0, "phase": "flush", "rss": 850 * MIB, "duckdb": 500 * MIB},
            {"t": 3.0, "phase": "flush", "rss": 800 * MIB, "duckdb": 400 * MIB},
        ],
    }
    results = {
        "header": "Measured by ...",
        "measurements": [
            {
                "size": "xl",
                "variant": "flusher[ducklake.memory_limit=1GB]",
                "rows": 4_008_000,
                "wall": 80.0,
                "peak_rss_mib": 855.4,
                "extra": {"memory": memory},
            },
            {"size": "xl", "variant": "ceiling", "rows": 4_008_000, "wall": 60.0, "peak_rss_mib": 700.0, "extra": {}},
        ],
    }
    text = breakdown(json.loads(json.dumps(results)))
    assert "**xl, flusher[ducklake.memory_limit=1GB]** (4,008,000 rows, memory_limit 1GB): peak RSS 855 MiB" in text
    assert "| engine | 200 | – | – |" in text.splitlines()
    assert "| flush | 850 | 512 | 400 |" in text.splitlines()  # 800 - 400 at t=3 beats 850 - 500 at t=2
    assert "ceiling" not in text  # not probed: no table
