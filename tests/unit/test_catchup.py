"""Catch-up (issue 13): when the loop of capped flushes stops, and the progress it shows; the CLI's options."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flusher.catchup import Backlog, Chunk, Progress, Step, decide, format_eta, ledgers_per_interval


@pytest.mark.parametrize(
    ("backlog", "left"),
    [
        (Backlog(None, None, None), 0),  # empty hot buffer, never flushed
        (Backlog(None, None, 40), 0),  # empty hot buffer after flushes
        (Backlog(1, 30, None), 30),  # never flushed
        (Backlog(11, 30, 10), 20),  # the usual: hot starts right after the watermark
        (Backlog(5, 30, 10), 20),  # late rows below the watermark are not ledgers left
        (Backlog(21, 30, 10), 10),  # a gap: ledgers 11..20 never came
        (Backlog(1, 30, 45), 0),  # watermark ahead of the hot maximum
    ],
)
def test_ledgers_left(backlog, left):
    assert backlog.ledgers_left == left


def test_caught_up_is_at_most_behind_ok_ledgers_left():
    assert Backlog(None, None, None).caught_up(0)
    assert Backlog(21, 30, 20).caught_up(10)
    assert not Backlog(20, 30, 19).caught_up(10)


def test_one_interval_of_ledgers():
    assert ledgers_per_interval(600) == 109  # 10 min at 5.5 s a ledger
    assert ledgers_per_interval(0) == 0


def _chunk(before: Backlog, after: Backlog, rows: int = 10, number: int = 1) -> Chunk:
    return Chunk(number, rows, 1.0, before, after)


def test_a_chunk_that_leaves_more_than_behind_ok_continues_and_one_that_reaches_it_stops():
    assert decide(_chunk(Backlog(1, 30, None), Backlog(11, 30, 10)), 0) is Step.CONTINUE
    assert decide(_chunk(Backlog(21, 30, 20), Backlog(None, None, 30)), 0) is Step.CAUGHT_UP
    assert decide(_chunk(Backlog(1, 30, None), Backlog(11, 30, 10)), 20) is Step.CAUGHT_UP


def test_a_chunk_that_moved_nothing_stalls_instead_of_looping_forever():
    held = Backlog(21, 30, 20)  # a downstream consumer's checkpoint keeps the watermark at 20
    assert decide(_chunk(held, held, rows=0), 0) is Step.STALLED
    never = Backlog(1, 30, None)  # skipped (lock held, downstream unreachable): no watermark at all
    assert decide(_chunk(never, never, rows=0), 0) is Step.STALLED


def test_late_rows_moved_without_moving_the_watermark_are_progress():
    before, after = Backlog(5, 30, 20), Backlog(21, 30, 20)
    assert decide(_chunk(before, after, rows=3), 0) is Step.CONTINUE


def test_progress_counts_rows_ledgers_rate_and_eta():
    progress = Progress(Backlog(1, 30, None), behind_ok=0)
    assert progress.percent == 0 and progress.to_go == 30
    step = progress.record(_chunk(Backlog(1, 30, None), Backlog(11, 30, 10), rows=100), elapsed=2.0)
    assert step is Step.CONTINUE
    assert progress.rows == 100 and progress.ledgers_done == 10 and progress.to_go == 20
    assert progress.rows_per_second == 50
    assert progress.eta_seconds == pytest.approx(4.0)  # 10 ledgers in 2 s, 20 to go
    assert progress.percent == pytest.approx(100 / 3)
    line = progress.line()
    for part in ("chunk 1: 100 rows", "watermark 10", "20 ledgers left", "50 rows/s", "33%", "ETA 4s"):
        assert part in line, line
    assert progress.record(_chunk(Backlog(11, 30, 10), Backlog(None, None, 30), 200, 2), 6.0) is Step.CAUGHT_UP
    assert progress.percent == 100 and progress.eta_seconds == 0 and progress.rows == 300


def test_eta_is_unknown_while_the_backlog_grows_faster_than_it_shrinks():
    progress = Progress(Backlog(1, 30, None), behind_ok=0)
    progress.record(_chunk(Backlog(1, 30, None), Backlog(11, 45, 10)), elapsed=2.0)  # 10 moved, 15 arrived
    assert progress.eta_seconds is None
    assert "ETA unknown" in progress.summary()


def test_percent_reaches_100_at_behind_ok_not_at_an_empty_hot_buffer():
    progress = Progress(Backlog(1, 130, None), behind_ok=100)
    progress.record(_chunk(Backlog(1, 130, None), Backlog(31, 130, 30)), elapsed=1.0)
    assert progress.to_go == 0 and progress.percent == 100


def test_eta_format():
    assert format_eta(4.4) == "4s"
    assert format_eta(125) == "2m05s"
    assert format_eta(3 * 3600 + 61) == "3h01m"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "FLUSHER_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "flusher.app.cli", *args], capture_output=True, text=True, env=environ, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--chunk-ledgers", "-3"], "-3 is negative"),
        (["--chunk-ledgers", "0"], "0 is not a chunk"),
        (["--chunk-ledgers", "10", "--pause-seconds", "-1"], "-1 is negative"),
        (["--chunk-ledgers", "10", "--behind-ok-ledgers", "-5"], "-5 is negative"),
        ([], "--chunk-ledgers"),
    ],
)
def test_catchup_refuses_bad_options_before_anything_runs(tmp_path, args, said):
    done = _cli("catchup", "--config", str(tmp_path / "c.yaml"), *args)
    assert done.returncode == 2
    assert said in done.stderr and "Traceback" not in done.stderr


def test_catchup_with_a_missing_config_exits_2(tmp_path):
    done = _cli("catchup", "--config", str(tmp_path / "c.yaml"), "--chunk-ledgers", "10")
    assert done.returncode == 2
    assert "cannot read config file" in done.stderr and "Traceback" not in done.stderr


def test_the_first_line_says_where_it_starts_without_rates():
    progress = Progress(Backlog(1, 30, None), behind_ok=5)
    assert progress.summary() == "watermark None; 30 ledgers left (hot 1..30, target <= 5)"
    assert "hot buffer empty" in Progress(Backlog(None, None, 30), behind_ok=5).summary()


def test_the_flow_refuses_a_chunk_of_no_ledgers_and_a_negative_pause():
    from prefect.exceptions import ParameterTypeError

    from flusher.flows.catchup import bronze_catchup

    for bad in ({"chunk_ledgers": 0}, {"chunk_ledgers": 5, "pause_seconds": -1}):
        with pytest.raises(ParameterTypeError):
            bronze_catchup.validate_parameters(bad)
    assert bronze_catchup.validate_parameters({"chunk_ledgers": 5})["chunk_ledgers"] == 5
