"""`verify` and the completeness certificate: a clean lake passes; an injected lake duplicate, a lost data file, an
altered value and a ledger gap each fail and name the range; certificates survive a maintenance merge."""

from __future__ import annotations

import json

import pytest

from flusher.app.cli import main
from flusher.flows.maintenance import bronze_maintenance
from flusher.flows.verify import bronze_verify
from flusher.lake import LakeSession
from tests.helpers import flush, write_config

pytestmark = pytest.mark.usefixtures("prefect_api")

TABLES = ["ledgers_row_v2", "transactions_row_v2", "operations_row_v2", "trades_row_v1"]


def _verify(hot, capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["verify", "--config", str(hot.config), "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def _findings(result: dict) -> list[tuple[str, str, int | None, int | None]]:
    return [
        (f["table"], f["kind"], f["first_ledger"], f["last_ledger"]) for t in result["tables"] for f in t["findings"]
    ]


def _lake_sql(hot, statement: str) -> None:
    with LakeSession(hot.settings(), attach_hot=False) as lake:
        lake.cursor().execute(statement.format(**{t: lake.table(t) for t in TABLES}))


def _alter_one_operation(hot, ledger: int) -> None:
    """Rewrite one lake operation of `ledger`: its batch's certificate no longer matches."""
    _lake_sql(
        hot,
        f"UPDATE {{operations_row_v2}} SET type_string = 'altered' WHERE ledger_sequence = {int(ledger)} AND rowid = "
        f"(SELECT min(rowid) FROM {{operations_row_v2}} WHERE ledger_sequence = {int(ledger)})",
    )


def _flushes(hot, *spans: tuple[int, int]) -> None:
    for first, n in spans:
        hot.load(first, n, tables=TABLES)
        state = flush(hot, tables=TABLES)
        assert state.is_completed(), state.message


def test_verify_passes_a_clean_lake_and_names_the_range_of_each_injected_fault(hot, capsys):
    hot.config = write_config(hot, ducklake={"data_inlining_row_limit": 0, "partition_by": None})
    _flushes(hot, (1, 20), (21, 20))  # two batches per table: ledgers 1..20 and 21..40
    hot.load(41, 3, tables=TABLES)  # not flushed: hot rows above the lake's

    code, clean = _verify(hot, capsys)
    assert code == 0 and clean["ok"], _findings(clean)
    by_table = {t["table"]: t for t in clean["tables"] if t["table"] in TABLES}
    assert all(t["batches_certified"] == 2 and t["hot_rows"] > 0 and t["lake_rows"] > 0 for t in by_table.values())
    assert all(t["lake_duplicates"] == 0 and t["in_both"] == 0 for t in by_table.values())

    # A lake duplicate: trades of ledger 7 inserted a second time (a hand edit).
    _lake_sql(hot, "INSERT INTO {trades_row_v1} SELECT * FROM {trades_row_v1} WHERE ledger_sequence = 7")
    code, result = _verify(hot, capsys, "--tables", "trades_row_v1")
    assert code == 1 and ("trades_row_v1", "lake duplicate", 7, 7) in _findings(result)

    # A lost file: the catalog forgets the data file of transactions' second batch (ledgers 21..40).
    hot.execute(
        "DELETE FROM bronze_meta.ducklake_data_file WHERE data_file_id = (SELECT max(f.data_file_id) "
        "FROM bronze_meta.ducklake_data_file f JOIN bronze_meta.ducklake_table t USING (table_id) "
        "WHERE t.table_name = 'transactions_row_v2')"
    )
    code, result = _verify(hot, capsys, "--tables", "transactions_row_v2")
    assert code == 1 and [f[:2] for f in _findings(result)] == [("transactions_row_v2", "certificate")]
    first, last = _findings(result)[0][2:]
    assert 21 <= first <= last <= 40

    # An altered value: one operation of ledger 12 rewritten (first batch, ledgers 1..20).
    _alter_one_operation(hot, 12)
    code, result = _verify(hot, capsys, "--tables", "operations_row_v2")
    assert code == 1 and [f[:2] for f in _findings(result)] == [("operations_row_v2", "certificate")]
    first, last = _findings(result)[0][2:]
    assert 1 <= first <= 12 <= last <= 20

    # A gap: ledger 30 deleted from the lake; named as a gap and as its batch's (21..40) certificate.
    _lake_sql(hot, "DELETE FROM {ledgers_row_v2} WHERE sequence = 30")
    code, result = _verify(hot, capsys, "--tables", "ledgers_row_v2", "--from", "25", "--to", "35")
    assert code == 1
    assert set(_findings(result)) == {
        ("ledgers_row_v2", "ledger gap", 30, 30),
        ("ledgers_row_v2", "certificate", 21, 40),
    }, _findings(result)

    # The flow fails naming every range; an unknown table is a configuration error.
    state = bronze_verify(config_path=str(hot.config), tables=TABLES, return_state=True)
    assert state.is_failed() and "ledger gap at ledger 30" in state.message, state.message
    assert "trades_row_v1: lake duplicate at ledger 7" in state.message
    assert main(["verify", "--config", str(hot.config), "--tables", "no_such_table"]) == 2


def test_certificates_survive_a_maintenance_merge(hot, capsys):
    hot.config = write_config(hot, ducklake={"data_inlining_row_limit": 0, "partition_by": None})
    _flushes(hot, (1, 2), (3, 2), (5, 2))
    files = "SELECT count(*) FROM bronze_meta.ducklake_data_file f JOIN bronze_meta.ducklake_table t USING (table_id) "
    files += "WHERE t.table_name = 'operations_row_v2' AND f.end_snapshot IS NULL"
    assert hot.execute(files)[0][0] == 3
    state = bronze_maintenance(config_path=str(hot.config), return_state=True)
    assert state.is_completed(), state.message
    assert hot.execute(files)[0][0] == 1  # merged into one file

    code, result = _verify(hot, capsys)
    assert code == 0, _findings(result)
    certified = {t["table"]: t["batches_certified"] for t in result["tables"]}
    assert all(certified[t] == 3 for t in TABLES), certified


def test_flushes_without_certificates_when_told_and_verify_still_checks_counts(hot, capsys):
    hot.config = write_config(hot, flush={"certificate": False})
    _flushes(hot, (1, 5))
    assert hot.execute("SELECT count(*) FROM flusher_state.table_batches WHERE certificate_digest IS NOT NULL") == [
        (0,)
    ]
    code, result = _verify(hot, capsys)
    assert code == 0, _findings(result)
    by_table = {t["table"]: t for t in result["tables"] if t["table"] in TABLES}
    assert all(t["batches_certified"] == 0 and t["batches_uncertified"] == 1 for t in by_table.values()), by_table
    assert all(t["lake_rows"] > 0 for t in by_table.values())


def test_certificates_from_the_source_match_the_lake_and_catch_an_altered_value(hot, capsys):
    hot.config = write_config(
        hot, flush={"certificate": "source"}, ducklake={"data_inlining_row_limit": 0, "partition_by": None}
    )
    _flushes(hot, (1, 5), (6, 5))
    assert hot.execute(
        "SELECT count(*) FROM flusher_state.table_batches WHERE certificate_digest IS NOT NULL "
        "AND table_name = ANY(%s)",
        (TABLES,),
    ) == [(2 * len(TABLES),)]
    code, clean = _verify(hot, capsys)
    assert code == 0, _findings(clean)
    by_table = {t["table"]: t for t in clean["tables"] if t["table"] in TABLES}
    assert all(t["batches_certified"] == 2 for t in by_table.values()), by_table

    # One value altered in the lake since: the batch's figures no longer match the source's.
    _alter_one_operation(hot, 7)
    code, result = _verify(hot, capsys, "--tables", "operations_row_v2")
    assert code == 1 and [f[:2] for f in _findings(result)] == [("operations_row_v2", "certificate")]
