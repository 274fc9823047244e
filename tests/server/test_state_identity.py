"""C10: a state schema that is new, recreated or restored never deletes lake commits it cannot prove are its own.

Each scenario lets a flush die right after a lake commit and runs again: that second run is the one whose undo of
"unconfirmed earlier commits" used to match a long-confirmed commit of another (or an older) state by batch id.
"""

from __future__ import annotations

import signal

import pytest
from psycopg import sql

from flusher.hot import make_pool
from flusher.state import StateStore
from tests.helpers import ENABLED, write_config

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

KILL = "after_lake_commit:transactions_row_v2=kill"
STATE = "flusher_state"


def _flush_ok(hot) -> None:
    result = hot.run_cli("flush")
    assert result.returncode == 0, result.stdout + result.stderr


def _assert_refused(result, *mentions: str) -> None:
    """The flush failed with the takeover message (no traceback), naming what it found."""
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out, out
    assert "postgres-ducklake-flusher takeover --config" in result.stderr and "--dry-run" in result.stderr, out
    assert "nothing was flushed or deleted" in result.stderr.lower(), out
    for mention in mentions:
        assert mention in result.stderr, f"{mention!r} not in: {result.stderr}"


def _kill_then_rerun(hot, first_ledger: int) -> tuple:
    """New ledgers, a flush killed after one lake commit, and the next flush."""
    hot.load(first_ledger, 5)
    killed = hot.run_cli("flush", failpoints=KILL)
    again = hot.run_cli("flush")
    return killed, again


def _store(hot, schema: str = STATE):
    settings = hot.settings()
    pool = make_pool(settings.postgres)
    return pool, StateStore(pool, schema)


def test_a_fresh_state_schema_over_a_lake_with_history_refuses_and_deletes_nothing(hot):
    hot.load(1, 10)
    _flush_ok(hot)
    lake_before = hot.lake_keys(ENABLED)
    hot.config = write_config(hot, flush={"state_schema": "flusher_state_new"})
    killed, again = _kill_then_rerun(hot, 11)
    hot.assert_exactly_once(unconfirmed_ok=True)  # the old code lost transactions_row_v2's ledgers 1..10 here
    _assert_refused(killed, "did not write")
    _assert_refused(again)
    assert hot.lake_keys(ENABLED) == lake_before, "the lake must be exactly as the first state left it"
    assert hot.hot_count_at_or_below("ledgers_row_v2", 15) == 5, "the new rows stay in PostgreSQL"
    status = hot.run_cli("status")
    assert status.returncode == 0 and "takeover required" in status.stdout, status.stdout + status.stderr


def test_an_adopted_new_state_undoes_only_its_own_commits(hot):
    """Past detection (as after a takeover), the undo still matches only commits labelled with this state's id."""
    hot.load(1, 10)
    _flush_ok(hot)
    hot.config = write_config(hot, flush={"state_schema": "flusher_state_new"})
    pool, store = _store(hot, "flusher_state_new")
    with pool:
        store.ensure()
        assert store.adopted() is None
        store.mark_adopted("takeover")  # how the takeover command finishes
        assert store.adopted() is True
    killed, again = _kill_then_rerun(hot, 11)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert again.returncode == 0, again.stdout + again.stderr
    counts = hot.assert_exactly_once()
    assert counts["transactions_row_v2"] == 15 * 2


def test_a_dropped_and_recreated_state_schema_refuses_and_deletes_nothing(hot):
    hot.load(1, 10)
    _flush_ok(hot)
    lake_before = hot.lake_keys(ENABLED)
    hot.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(STATE)))
    killed, again = _kill_then_rerun(hot, 11)
    hot.assert_exactly_once(unconfirmed_ok=True)
    _assert_refused(killed, "did not write")
    _assert_refused(again)
    assert hot.lake_keys(ENABLED) == lake_before


def _backup_state(hot, into: str) -> dict[str, tuple[int, bool]]:
    """Copy every state table into schema `into`; return the sequences' positions (a backup of the state)."""
    tables = [
        r[0]
        for r in hot.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            (STATE,),
        )
    ]
    hot.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(into)))
    for table in tables:
        hot.execute(
            sql.SQL("CREATE TABLE {} AS TABLE {}").format(sql.Identifier(into, table), sql.Identifier(STATE, table))
        )
    return {
        name: (last, called)
        for name, last, called in hot.execute(
            "SELECT sequencename, coalesce(last_value, 1), last_value IS NOT NULL "
            "FROM pg_sequences WHERE schemaname = %s",
            (STATE,),
        )
    }


def _restore_state(hot, backup: str, sequences: dict[str, tuple[int, bool]]) -> None:
    """Put the state back as the backup had it: same rows, same sequence positions."""
    tables = [
        r[0] for r in hot.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (backup,))
    ]
    with hot.connect() as conn, conn.transaction():
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(STATE, t) for t in tables)))
        for table in ("runs", *sorted(set(tables) - {"runs"})):  # table_batches references runs
            conn.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
                    sql.Identifier(STATE, table), sql.Identifier(backup, table)
                )
            )
        for name, (last, called) in sequences.items():
            conn.execute("SELECT setval(%s, %s, %s)", (f"{STATE}.{name}", last, called))


def test_a_state_restored_from_an_older_backup_refuses_and_deletes_nothing(hot):
    hot.load(1, 10)
    _flush_ok(hot)
    sequences = _backup_state(hot, "state_backup")
    hot.load(11, 10)
    _flush_ok(hot)
    hot.load(21, 10)
    _flush_ok(hot)
    lake_before = hot.lake_keys(ENABLED)
    _restore_state(hot, "state_backup", sequences)
    killed, again = _kill_then_rerun(hot, 31)
    hot.assert_exactly_once(unconfirmed_ok=True)  # the old code lost transactions_row_v2's ledgers 11..20 here
    _assert_refused(killed, "batches 2, 3", "snapshots")
    _assert_refused(again)
    assert hot.lake_keys(ENABLED) == lake_before


def test_a_brand_new_state_over_an_empty_lake_adopts_silently(hot):
    pool, store = _store(hot)
    with pool:
        store.ensure()
        assert store.adopted() is None
        state_id = store.state_id()
        hot.load(1, 5)
        _flush_ok(hot)
        assert store.adopted() is True
        assert store.state_id() == state_id
        assert hot.execute(sql.SQL("SELECT adopted_how FROM {}").format(sql.Identifier(STATE, "state_identity"))) == [
            ("empty lake",)
        ]
    killed, again = _kill_then_rerun(hot, 6)
    assert killed.returncode == -signal.SIGKILL and again.returncode == 0, again.stdout + again.stderr
    assert hot.assert_exactly_once()["ledgers_row_v2"] == 10
    status = hot.run_cli("status")
    assert f"state {state_id}: adopted (empty lake)" in status.stdout, status.stdout


def test_a_takeover_started_but_not_finished_refuses(hot):
    pool, store = _store(hot)
    with pool:
        store.ensure()
        store.begin_adoption("takeover")
        assert store.adopted() is False
    hot.load(1, 3)
    _assert_refused(hot.run_cli("flush"), "did not finish")
    assert hot.hot_count_at_or_below("ledgers_row_v2", 3) == 3


def test_a_state_from_before_state_ids_is_upgraded_and_undoes_its_own_unlabelled_commits(hot):
    """Runs but no identity row: adopted as 'upgrade'; its commits labelled without a state id stay undoable."""
    hot.load(1, 10)
    _flush_ok(hot)
    hot.load(11, 5)
    assert hot.run_cli("flush", failpoints=KILL).returncode == -signal.SIGKILL
    # Make it look like the previous version wrote all this: no identity row, labels without a state id.
    hot.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(STATE, "state_identity")))
    hot.execute(
        "UPDATE bronze_meta.ducklake_snapshot_changes SET commit_extra_info = "
        "(commit_extra_info::jsonb - 'state')::text WHERE author = 'postgres-ducklake-flusher'"
    )
    again = hot.run_cli("flush")
    assert again.returncode == 0, again.stdout + again.stderr
    assert hot.assert_exactly_once()["transactions_row_v2"] == 15 * 2
    assert hot.execute(
        sql.SQL("SELECT adopted_how, legacy_labels_upto FROM {}").format(sql.Identifier(STATE, "state_identity"))
    ) == [("upgrade", 2)]
