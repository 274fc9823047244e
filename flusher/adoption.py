"""Does this state own the lake? Checked at every flush, under the flusher lock, before anything changes the lake.

A flush undoes earlier lake commits it believes are its own unconfirmed ones. That belief is only sound when the
state schema has seen every commit of ours in the lake: a brand-new, recreated or restored state, or a second flusher
with another state schema on the same lake, has not. So:

- a state that has not adopted the lake yet adopts an empty one, and refuses a lake that already holds rows;
- a takeover that started and did not finish refuses;
- a commit by our author after the last one the state accounted for (`known_snapshot`) must carry this state's id
  and a batch the state has a record of; anything else (another state id, a batch the state never allocated as
  far as it knows) refuses.

A refusal is a TakeoverRequired: nothing was flushed or deleted, and the message says what to run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import duckdb
from psycopg import sql

from flusher.lake import COMMIT_AUTHOR, LakeSession
from flusher.quoting import quote_ident, quote_literal
from flusher.secrets import MaskedMessage
from flusher.state import StateIdentity, StateStore
from flusher.transfer import LabelOwner

TAKEOVER_HINT = (
    "Run `postgres-ducklake-flusher takeover --config FILE --dry-run` to see what a takeover would copy and delete, "
    "then `postgres-ducklake-flusher takeover --config FILE`. Nothing was flushed or deleted."
)
_SHOWN = 10  # snapshots and batches named in a message, at most


class TakeoverRequired(MaskedMessage, RuntimeError):
    """The lake holds data or commits this state did not write; flushing could delete or duplicate them."""


@dataclass(frozen=True)
class LakeCommit:
    """One lake commit by our author, as its label describes it."""

    snapshot_id: int
    state: str | None
    tables: tuple[str, ...]  # one table, or several sharing one commit (flush.commit_groups)
    batch: int | None


def label_owner(identity: StateIdentity) -> LabelOwner:
    """Whose commits a flush of this state may undo."""
    return LabelOwner(identity.state_id, identity.legacy_labels_upto)


def parse_label(snapshot_id: int, extra_info: str | None) -> LakeCommit:
    """A commit's label; fields it lacks (or cannot be read) are None."""
    try:
        info = json.loads(extra_info) if extra_info else {}
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    batch = info.get("batch")
    tables = info.get("tables") if isinstance(info.get("tables"), list) else []
    if info.get("table") is not None:
        tables = [info["table"]]
    return LakeCommit(
        snapshot_id,
        str(info["state"]) if info.get("state") is not None else None,
        tuple(str(t) for t in tables if t is not None),
        batch if isinstance(batch, int) and not isinstance(batch, bool) else None,
    )


def lake_head(session: LakeSession, cur: duckdb.DuckDBPyConnection | None = None) -> int:
    """The lake's latest snapshot id (as `cur`'s transaction sees it, if given)."""
    with session.cursor_for(cur) as cur:
        row = cur.execute(f"SELECT max(snapshot_id) FROM {session.metadata('ducklake_snapshot')}").fetchone()
    return row[0] if row and row[0] is not None else 0


def _catalog_query(session: LakeSession, cur: duckdb.DuckDBPyConnection, query: str) -> list[tuple]:
    """Run `query` in the catalog PostgreSQL as it is: one statement, however many catalog tables it reads.

    Reading a lake table through DuckLake costs ~25 catalog statements (snapshot, stats, files, tags, inlined
    data...), each a network round trip to a remote catalog; asking the catalog tables directly costs one.
    """
    database = f"__ducklake_metadata_{session.lake}"
    return cur.execute(f"SELECT * FROM postgres_query({quote_literal(database)}, {quote_literal(query)})").fetchall()


def tables_that_may_hold_rows(session: LakeSession, cur: duckdb.DuckDBPyConnection | None = None) -> list[str]:
    """Tables of the Bronze schema with a live data file or live inlined rows, from the catalog tables (2 queries).

    A table with neither holds no row; one with either may (its files' rows may all be deleted), which
    tables_with_rows then reads.
    """
    meta = quote_ident(session.settings.ducklake.metadata_schema)
    live = (
        f"SELECT t.table_name, EXISTS (SELECT 1 FROM {meta}.ducklake_data_file f "
        "WHERE f.table_id = t.table_id AND f.end_snapshot IS NULL), "
        f"ARRAY(SELECT i.table_name FROM {meta}.ducklake_inlined_data_tables i WHERE i.table_id = t.table_id) "
        f"FROM {meta}.ducklake_table t JOIN {meta}.ducklake_schema s ON s.schema_id = t.schema_id "
        f"WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL AND s.schema_name = {quote_literal(session.schema)}"
    )
    with session.cursor_for(cur) as cur:
        tables = _catalog_query(session, cur, live)
        may = {name for name, has_file, _ in tables if has_file}
        inlined = [
            f"SELECT {quote_literal(name)} WHERE EXISTS (SELECT 1 FROM {meta}.{quote_ident(inline)} "
            "WHERE end_snapshot IS NULL)"
            for name, has_file, inlines in tables
            if not has_file
            for inline in inlines or []
        ]
        if inlined:
            may |= {row[0] for row in _catalog_query(session, cur, " UNION ALL ".join(inlined))}
    return sorted(may)


def tables_with_rows(session: LakeSession, cur: duckdb.DuckDBPyConnection | None = None) -> list[str]:
    """Tables of the Bronze schema that hold at least one row (read once, when a new state decides on adoption).

    Only the tables the catalog says may hold rows are read: on an empty lake, that is none.
    """
    with session.cursor_for(cur) as cur:
        return [
            name
            for name in tables_that_may_hold_rows(session, cur)
            if cur.execute(f"SELECT 1 FROM {session.table(name)} LIMIT 1").fetchone()
        ]


def commits_since(session: LakeSession, known_snapshot: int | None, adopted_at: datetime | None) -> list[LakeCommit]:
    """Commits by our author after `known_snapshot` (or, when it is None, after `adopted_at`): every run asks, so
    the catalog database is asked directly (one round trip; through DuckDB, a transaction of ~6 statements)."""
    changes = session.catalog.table("ducklake_snapshot_changes")
    if known_snapshot is not None or adopted_at is None:
        query = sql.SQL(
            "SELECT snapshot_id, commit_extra_info FROM {} WHERE snapshot_id > %s AND author = %s ORDER BY snapshot_id"
        ).format(changes)
        params: list[object] = [known_snapshot if known_snapshot is not None else -1, COMMIT_AUTHOR]
    else:
        query = sql.SQL(
            "SELECT c.snapshot_id, c.commit_extra_info FROM {} c JOIN {} s ON s.snapshot_id = c.snapshot_id "
            "WHERE c.author = %s AND s.snapshot_time > %s ORDER BY c.snapshot_id"
        ).format(changes, session.catalog.table("ducklake_snapshot"))
        params = [COMMIT_AUTHOR, adopted_at]
    return [parse_label(snapshot_id, info) for snapshot_id, info in session.catalog.fetch_all(query, params)]


def _may_be_ours(identity: StateIdentity, commit: LakeCommit) -> bool:
    """The label names this state (or, for an upgraded state, is an old label without a state id of its batches)."""
    if commit.batch is None or not commit.tables:
        return False
    if commit.state is not None:
        return commit.state == identity.state_id
    return identity.legacy_labels_upto is not None and commit.batch <= identity.legacy_labels_upto


def unknown_commits(state: StateStore, identity: StateIdentity, commits: list[LakeCommit]) -> list[LakeCommit]:
    """The commits this state cannot prove are its own: another state's, or of batches it has no record of."""
    candidates = [c for c in commits if _may_be_ours(identity, c)]
    known = state.known_batches(sorted({(c.batch, t) for c in candidates for t in c.tables}))  # type: ignore[misc]
    return [c for c in commits if not (_may_be_ours(identity, c) and all((c.batch, t) in known for t in c.tables))]


def _listed(values: list, limit: int = _SHOWN) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def describe_unknown(identity: StateIdentity, commits: list[LakeCommit]) -> str:
    """Which snapshots and batches, grouped by the state their labels name."""
    groups: dict[str | None, list[LakeCommit]] = {}
    for commit in commits:
        groups.setdefault(commit.state, []).append(commit)
    parts = []
    for state, group in groups.items():
        batches = sorted({c.batch for c in group if c.batch is not None})
        snapshots = [c.snapshot_id for c in group]
        if state == identity.state_id:
            whose = f"labelled with this state's id {state}, of which it has no record"
        elif state is None:
            whose = "labelled without a state id (a flusher version before state ids), not this state's"
        else:
            whose = f"labelled with another state id {state}"
        parts.append(f"batches {_listed(batches)} {whose} (lake snapshots {_listed(snapshots)})")
    return "; ".join(parts)


def check_lake(state: StateStore, session: LakeSession) -> StateIdentity:
    """Raise TakeoverRequired unless this state provably owns every commit of ours in the lake; adopt an empty lake.

    Call under the flusher lock, after the lake is attached and before any flush task. Returns the identity. A new
    state reads the lake's head and its tables in one transaction (one catalog snapshot: LakeSession.transaction).
    """
    identity = state.identity()
    if identity.adopted is None:
        with session.transaction() as cur:  # the head and the tables' rows as of one catalog snapshot
            head = lake_head(session, cur)  # the snapshot the rows are read at: a commit after it is checked below
            holding = tables_with_rows(session, cur)
        if holding:
            raise TakeoverRequired(
                f"the lake {session.lake}.{session.schema} already holds data this state (id "
                f"{identity.state_id}, new) did not write: rows in {_listed(holding, 5)}. It is a lake written by "
                "the Go service, or by this flusher with another, a recreated or a restored state schema "
                f"(flush.state_schema); flushing now could delete or duplicate its rows. {TAKEOVER_HINT}"
            )
        state.mark_adopted("empty lake", head)
        identity = state.identity()
    if identity.adopted is False:
        raise TakeoverRequired(
            f"a takeover of the lake ({identity.adopted_how}) started for this state (id {identity.state_id}) and "
            f"did not finish. {TAKEOVER_HINT}"
        )
    # Read after the head (any later commit is in it too): our commits the state does not know of are refused.
    commits = commits_since(session, identity.known_snapshot, identity.adopted_at)
    unknown = unknown_commits(state, identity, commits)
    if unknown:
        raise TakeoverRequired(
            f"the lake has commits newer than this state (id {identity.state_id}, lake snapshots up to "
            f"{identity.known_snapshot if identity.known_snapshot is not None else 'its adoption'}) knows that it "
            f"did not write: {describe_unknown(identity, unknown)}. The state schema {state.schema_name} was "
            "restored from an older backup, or another flusher with another state schema writes this lake; "
            f"flushing now could delete rows those commits hold. {TAKEOVER_HINT}"
        )
    if commits:
        state.advance_known_snapshot(max(c.snapshot_id for c in commits))
    return identity
