"""Finding the column and ledgers behind an error DuckDB reports without naming them (invalid UTF-8)."""

from __future__ import annotations

from flusher.lake import HOT, Column, LakeSession
from flusher.quoting import qualified, quote_ident, quote_literal
from flusher.registry import TableSpec


def is_invalid_unicode(message: str) -> bool:
    return "Invalid unicode" in message or "invalid byte sequence" in message.lower()


def invalid_utf8(session: LakeSession, spec: TableSpec, columns: list[Column], watermark: int) -> list[str]:
    """'column c: N rows, ledgers a..b' for each text column holding bytes that are not UTF-8 (rows <= watermark).

    The raw bytes are read with convert_to(…, 'SQL_ASCII') in PostgreSQL (a no-op conversion, so nothing is
    rejected on the way) and checked with DuckDB's decode(), which fails exactly where the lake would.
    """
    text = [c.name for c in columns if c.type == "VARCHAR"]
    if not text:
        return []
    ledger = quote_ident(spec.ledger_column)
    source = qualified(session.settings.postgres.schema_name, spec.name)
    raw = ", ".join(f"convert_to({quote_ident(c)}, 'SQL_ASCII') AS {quote_ident(c)}" for c in text)
    inner = f"SELECT {ledger} AS ledger, {raw} FROM {source} WHERE {ledger} <= {int(watermark)}"
    checks = ", ".join(
        f"count(*) FILTER (WHERE {quote_ident(c)} IS NOT NULL AND try(decode({quote_ident(c)})) IS NULL), "
        f"min(ledger) FILTER (WHERE {quote_ident(c)} IS NOT NULL AND try(decode({quote_ident(c)})) IS NULL), "
        f"max(ledger) FILTER (WHERE {quote_ident(c)} IS NOT NULL AND try(decode({quote_ident(c)})) IS NULL)"
        for c in text
    )
    with session.cursor() as cur:
        row = cur.execute(
            f"SELECT {checks} FROM postgres_query({quote_literal(HOT)}, {quote_literal(inner)})"
        ).fetchone()
    found = []
    for i, column in enumerate(text):
        count, low, high = row[3 * i : 3 * i + 3]
        if count:
            found.append(f"column {column}: {count} row(s), ledgers {low}..{high}")
    return found
