"""The completeness certificate: per table and batch, the row count and an order-independent digest of the rows a
lake commit added, computed inside that commit's own transaction.

The digest is `sum(hash(c1, c2, ...))` over the lake rows of the open transaction (DuckLake gives rows not yet
committed a NULL `snapshot_id`), in a fixed column order that the certificate records. After the commit those rows
carry the commit's snapshot id, which maintenance keeps when it merges files, so `verify` can recompute the same
figures from the lake at any time: a row lost, duplicated or altered since changes the count or the digest.
DuckLake refuses INSERT ... RETURNING, hence the read-back; it reads the files this transaction just wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from flusher.quoting import quote_ident
from flusher.secrets import MaskedMessage

# The digest depends on DuckDB's hash function, which may change between versions: the name says which one.
ALGORITHM = f"sum-hash/duckdb-{duckdb.__version__}"
# DuckLake's virtual column: the snapshot that added a row, NULL for rows of the open transaction.
SNAPSHOT_COLUMN = "snapshot_id"


class CertificateMismatch(MaskedMessage, RuntimeError):
    """The rows the open lake transaction holds are not the rows the flush copied: the commit is refused."""


@dataclass(frozen=True)
class Certificate:
    rows: int
    digest: int  # a HUGEINT: sum of 64-bit hashes
    algorithm: str
    columns: tuple[str, ...]

    def label(self) -> dict[str, object]:
        """What the lake commit's extra info carries (the digest as text: JSON readers lose big integers)."""
        return {"rows": self.rows, "digest": str(self.digest), "hash": self.algorithm}


def digest_expressions(columns: Sequence[str]) -> str:
    """`count, digest` select items: the same text at flush time and in verify."""
    return digest_of_values([quote_ident(c) for c in columns])


def digest_of_values(values: Sequence[str]) -> str:
    """`count, digest` select items over value expressions, one per certified column, in the certificate's order."""
    if not values:
        raise ValueError("a certificate needs at least one column")
    return f"count(*), coalesce(sum(hash({', '.join(values)}))::HUGEINT, 0)"


def certify_transaction(
    cur: duckdb.DuckDBPyConnection, table: str, qualified_table: str, columns: Sequence[str], copied: int
) -> Certificate:
    """Count and digest the rows this open transaction added to `qualified_table`; refuse when they are not `copied`."""
    rows, digest = cur.execute(
        f"SELECT {digest_expressions(columns)} FROM {qualified_table} WHERE {SNAPSHOT_COLUMN} IS NULL"
    ).fetchone()
    if rows != copied:
        raise CertificateMismatch(
            f"{table}: the lake transaction holds {rows} new rows but the flush copied {copied}; not committed"
        )
    return Certificate(rows, int(digest), ALGORITHM, tuple(columns))


def certify_source(
    cur: duckdb.DuckDBPyConnection,
    table: str,
    source: str,
    where: str,
    values: Sequence[str],
    columns: Sequence[str],
    copied: int,
) -> Certificate:
    """The certificate from the source rows the open transaction copied: `values` are the INSERT's own expressions
    for `columns` (the lake values, computed from the hot rows `where` selects in the transaction's snapshot). It
    costs a second scan of the hot rows instead of a read-back through the lake, which is a chain of catalog round
    trips and object-storage reads per table (bench/results/remote-30ms-groups.md). `verify` recomputes the same
    figures from the lake: a row the lake lost, holds twice or holds altered since (or got altered on the way in)
    changes them. Refuses the commit when the count is not `copied`."""
    rows, digest = cur.execute(f"SELECT {digest_of_values(values)} FROM {source} WHERE {where}").fetchone()
    if rows != copied:
        raise CertificateMismatch(
            f"{table}: the source holds {rows} rows at or below the watermark but the flush copied {copied}; "
            "not committed"
        )
    return Certificate(rows, int(digest), ALGORITHM, tuple(columns))


def snapshot_digests(
    cur: duckdb.DuckDBPyConnection,
    qualified_table: str,
    columns: Sequence[str],
    ledger_column: str,
    snapshots: Sequence[int],
) -> dict[int, tuple[int, int, int | None, int | None]]:
    """Per lake snapshot of `snapshots`: (rows, digest, lowest ledger, highest ledger) of the rows it added that the
    lake still holds. A snapshot with no row left is absent."""
    if not snapshots:
        return {}
    ledger = quote_ident(ledger_column)
    rows = cur.execute(
        f"SELECT {SNAPSHOT_COLUMN}, {digest_expressions(columns)}, min({ledger}), max({ledger}) "
        f"FROM {qualified_table} WHERE {SNAPSHOT_COLUMN} IN (SELECT unnest(?::BIGINT[])) GROUP BY 1",
        [list(snapshots)],
    ).fetchall()
    return {r[0]: (r[1], int(r[2]), r[3], r[4]) for r in rows}
