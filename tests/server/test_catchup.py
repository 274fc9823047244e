"""Catch-up (issue 13): capped flushes until caught up, with progress; a kill between or inside chunks is resumed."""

from __future__ import annotations

import signal

import pytest

from flusher.hot import lock_key
from tests.helpers import ENABLED, write_config

pytestmark = pytest.mark.usefixtures("prefect_api")

CATCHUP = ("catchup", "--chunk-ledgers", "10", "--pause-seconds", "0", "--behind-ok-ledgers", "0")


def _runs(hot) -> list[tuple]:
    return hot.execute("SELECT status, watermark FROM flusher_state.runs ORDER BY batch_id")


def _progress_artifact() -> float:
    """The newest bronze-catchup-progress artifact's value."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["bronze-catchup-progress"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return artifact.data


def test_catchup_moves_the_backlog_in_chunks_exactly_once_with_progress(hot):
    hot.load(1, 30)
    done = hot.run_cli(*CATCHUP)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert _runs(hot) == [("completed", 10), ("completed", 20), ("completed", 30)]
    assert hot.assert_exactly_once()["ledgers_row_v2"] == 30
    for line in ("chunk 1: ", "20 ledgers left", "chunk 2: ", "10 ledgers left", "chunk 3: ", "0 ledgers left"):
        assert line in output, output
    assert "rows/s" in output and "ETA" in output
    assert "caught up after 3 chunks" in done.stdout
    assert _progress_artifact() == 100.0
    again = hot.run_cli(*CATCHUP)  # nothing left: no flush at all
    assert again.returncode == 0 and "already caught up" in again.stdout, again.stdout + again.stderr
    assert len(_runs(hot)) == 3


@pytest.mark.parametrize(
    "point",
    [
        "catchup_chunk:2=kill",  # between chunks: chunk 1 done, chunk 2 not started
        "after_lake_commit:transactions_row_v2=kill",  # inside chunk 1: committed in the lake, not deleted
    ],
)
def test_a_killed_catchup_resumes_from_the_last_watermark_exactly_once(hot, point):
    hot.load(1, 30)
    killed = hot.run_cli(*CATCHUP, failpoints=point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    hot.assert_exactly_once(unconfirmed_ok=True)
    hot.load(31, 5)  # the ingester went on meanwhile
    resumed = hot.run_cli(*CATCHUP)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert hot.assert_exactly_once()["ledgers_row_v2"] == 35
    for table in ENABLED:
        assert hot.hot_count_at_or_below(table, 35) == 0, f"{table} still has flushed ledgers in PostgreSQL"
    completed = [w for status, w in _runs(hot) if status == "completed"]
    assert completed == sorted(completed) and completed[-1] == 35


def test_a_chunk_that_cannot_move_stops_the_catchup_with_the_reason(hot):
    hot.config = write_config(hot, flush={"lock_wait_seconds": 0})
    hot.load(1, 30)
    with hot.connect() as holder:  # another run holds the flusher lock: every chunk would be skipped
        holder.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (lock_key("flusher_state"),))
        done = hot.run_cli(*CATCHUP)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no progress: chunk 1 moved nothing" in done.stderr and "flusher lock" in done.stderr, done.stderr
    assert hot.hot_count_at_or_below("ledgers_row_v2", 30) == 30


def test_a_failed_chunk_stops_the_catchup_with_exit_1_and_the_failure(hot):
    hot.load(1, 30)
    done = hot.run_cli(*CATCHUP, failpoints="after_lake_commit:trades_row_v1=raise")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "catch-up failed: chunk 1 failed: FAILED: trades_row_v1: injected fault" in done.stderr, done.stderr
    assert [status for status, _ in _runs(hot)] == ["failed"], "no chunk after a failed one"
    hot.assert_exactly_once(unconfirmed_ok=True)
