"""verify's pure logic: naming ledger ranges, edge gaps, judging a batch's certificate; the in-transaction digest."""

from __future__ import annotations

import duckdb
import pytest

from flusher import certificate as cert
from flusher import verify_report as vr
from flusher.extensions import load_extensions


def test_ranges_collapse_sorted_contiguous_ledgers():
    assert vr.ranges([10, 9, 1, 2, 3, 7, 3]) == [(1, 3), (7, 7), (9, 10)]
    assert vr.ranges([]) == []


def test_edge_gaps_only_for_an_explicit_range():
    assert vr.edge_gaps((5, 8), 1, 10) == [(1, 4), (9, 10)]
    assert vr.edge_gaps((1, 10), 1, 10) == []
    assert vr.edge_gaps(None, 3, 4) == [(3, 4)]
    assert vr.edge_gaps((5, 8), None, 10) == []


@pytest.mark.parametrize(
    ("found", "words"),
    [
        (vr.BatchFigures(9, 1), "1 of its 10 rows lost"),
        (None, "10 of its 10 rows lost"),
        (vr.BatchFigures(11, 1), "1 rows more than the 10 it committed (duplicated)"),
        (vr.BatchFigures(10, 2), "digest differs (rows altered)"),
    ],
)
def test_a_certificate_that_disagrees_names_the_batch_and_its_ledgers(found, words):
    finding = vr.judge_certificate("t", 7, 42, (100, 120), vr.BatchFigures(10, 1), found)
    assert finding is not None and finding.kind == vr.CERTIFICATE
    assert words in finding.detail and "batch 7 (lake snapshot 42)" in finding.detail
    assert "ledgers 100..120" in finding.describe()


def test_a_matching_certificate_is_no_finding():
    assert vr.judge_certificate("t", 7, 42, (1, 2), vr.BatchFigures(10, 5), vr.BatchFigures(10, 5)) is None


def test_the_report_fails_on_any_finding_and_lists_it():
    clean = vr.VerifyReport(1, 9, [vr.TableCheck("a", hot_rows=1, lake_rows=2)])
    assert clean.ok and "OK: no discrepancy" in clean.render() and clean.to_json()["ok"]
    bad = vr.VerifyReport(None, None, [vr.TableCheck("a", findings=[vr.Finding("a", "ledger gap", 4, 4, "no ledger")])])
    assert not bad.ok
    assert "DISCREPANCY a: ledger gap at ledger 4: no ledger" in bad.render()
    assert bad.artifact_rows()[0]["discrepancies"] == "ledger gap at ledger 4"


def _lake(tmp_path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    load_extensions(con, ("ducklake",))
    con.execute(f"ATTACH 'ducklake:{tmp_path}/c.ducklake' AS lk (DATA_PATH '{tmp_path}/d', DATA_INLINING_ROW_LIMIT 0)")
    con.execute("CREATE TABLE lk.t (l BIGINT, v VARCHAR)")
    con.execute("INSERT INTO lk.t SELECT i, 'old' || i FROM range(5) r(i)")
    return con


def test_the_digest_covers_only_the_open_transaction_and_matches_after_commit(tmp_path):
    con = _lake(tmp_path)
    cur = con.cursor()
    cur.execute("BEGIN")
    cur.execute("INSERT INTO lk.t SELECT i, 'new' || i FROM range(10, 13) r(i)")
    made = cert.certify_transaction(cur, "t", "lk.t", ["l", "v"], 3)
    with pytest.raises(cert.CertificateMismatch, match="holds 3 new rows but the flush copied 4; not committed"):
        cert.certify_transaction(cur, "t", "lk.t", ["l", "v"], 4)
    cur.execute("COMMIT")
    (snapshot,) = con.execute("SELECT max(snapshot_id) FROM lk.t").fetchone()
    again = cert.snapshot_digests(con, "lk.t", ["l", "v"], "l", [snapshot])
    assert again == {snapshot: (3, made.digest, 10, 12)}
    assert made.algorithm == cert.ALGORITHM and made.columns == ("l", "v")
