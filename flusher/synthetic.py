"""Synthetic Hubble rows for the hot buffer, generated in SQL from each table's live column list."""

import re
import zlib

import psycopg
from psycopg import sql

# Rows per ledger by table; tables not listed get 1 (50 rows per ledger over the 21 tables).
DEFAULT_ROWS_PER_LEDGER: dict[str, int] = {
    "ledgers_row_v2": 1,
    "transactions_row_v2": 4,
    "operations_row_v2": 8,
    "effects_row_v1": 12,
    "trades_row_v1": 1,
    "accounts_snapshot_v1": 3,
    "trustlines_snapshot_v1": 2,
    "contract_events_stream_v1": 6,
}

_COLUMNS = sql.SQL("""
SELECT c.column_name, c.udt_name, c.is_nullable = 'YES', k.column_name IS NOT NULL
FROM information_schema.columns c
LEFT JOIN information_schema.table_constraints t
  ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.constraint_type = 'PRIMARY KEY'
LEFT JOIN information_schema.key_column_usage k
  ON k.constraint_schema = t.constraint_schema AND k.constraint_name = t.constraint_name
  AND k.column_name = c.column_name
WHERE c.table_schema = %s AND c.table_name = %s
ORDER BY c.ordinal_position
""")

_INSERT = sql.SQL(
    "INSERT INTO {table} ({columns}) SELECT {values}"
    " FROM generate_series(%s::bigint, %s::bigint) AS l(ledger) CROSS JOIN generate_series(%s::int, %s::int) AS r(idx)"
    " WHERE mod(ledger, %s) = 0"
)

# Value expressions see `ledger` (bigint) and `idx` (the row index within its ledger).
_HASH = "md5(ledger || '/' || idx || '/' || %s)"  # parameter: the column name
_MIX = "(ledger * 7 + idx * 13 + %s)"  # parameter: the column's salt
_NULL_ROW = "mod(ledger + idx + %s, 7) = 0"  # parameter: the column's salt
_ACCOUNT = re.compile(r"(account|account_id|issuer|address|destination|trustor|signer|sponsor|holder|from|to)$")
_AMOUNT = re.compile(r"(amount|balance|limit|liabilities|price)$")
# Encoded XDR blobs: the widest text in real Hubble rows (envelopes, results, metas, events, ledger entries).
_XDR = re.compile(r"(_xdr|^tx_envelope|^tx_result|^tx_meta|^tx_fee_meta|^ledger_header)$")
_ARRAY_ELEMENT = 'auth "v2", signed'


def _salt(column: str) -> int:
    """Return a small stable number that varies values and NULL positions between columns."""
    return zlib.crc32(column.encode()) % 1000


def _xdr(column: str, chars: int) -> tuple[str, list[object]]:
    """Hex text of `chars` characters from distinct hashes, so it compresses about as badly as real XDR."""
    parts = -(-chars // 32)
    hashes = " || ".join(["md5(ledger || '/' || idx || '/' || %s || '/' || %s)"] * parts)
    return f"left({hashes}, {int(chars)})", [arg for part in range(parts) for arg in (column, part)]


def _value(column: str, udt: str, is_key: bool, xdr_chars: int = 0) -> tuple[str, list[object]] | None:
    """Return the SQL expression of a column's value and its parameters; None for an unsupported type."""
    salt = _salt(column)
    if udt in ("int2", "int4", "int8"):
        if is_key:
            return "idx", []
        return (f"{_MIX} * 1000", [salt]) if udt == "int8" else (f"mod({_MIX}, 1000)", [salt])
    if udt in ("float4", "float8", "numeric"):
        return f"{_MIX} / 7.0", [salt]
    if udt == "bool":
        return "mod(ledger + idx + %s, 2) = 0", [salt]
    if udt == "timestamptz":
        return "to_timestamp(1735689600 + ledger * 5)", []
    if udt in ("timestamp", "date"):
        return "to_timestamp(1735689600 + ledger * 5) AT TIME ZONE 'UTC'", []
    if udt in ("json", "jsonb"):
        return "jsonb_build_object('ledger', ledger, 'idx', idx, 'column', %s::text)", [column]
    if udt in ("_text", "_varchar"):
        return f"ARRAY[%s, {_HASH}]", [_ARRAY_ELEMENT, column]
    if udt not in ("text", "varchar"):
        return None
    if xdr_chars > 0 and _XDR.search(column):
        return _xdr(column, xdr_chars)
    if column.endswith("contract_id"):
        return f"'C' || upper(left(repeat({_HASH}, 2), 55))", [column]
    if _ACCOUNT.search(column):
        return f"'G' || upper(left(repeat({_HASH}, 2), 55))", [column]
    if column.endswith("_json"):
        return "jsonb_build_object('ledger', ledger, 'idx', idx, 'column', %s::text)::text", [column]
    if _AMOUNT.search(column):
        return f"({_MIX} * 10007)::text", [salt]
    return _HASH, [column]


def load_synthetic(
    conn: psycopg.Connection,
    tables: dict[str, str],
    first_ledger: int,
    n_ledgers: int,
    rows_per_ledger: dict[str, int] | None = None,
    schema: str = "public",
    first_row: int = 0,
    every_n_ledgers: dict[str, int] | None = None,
    xdr_chars: int = 0,
) -> dict[str, int]:
    """Insert n_ledgers ledgers' worth of rows into each table; return rows inserted per table.

    Row indexes within a ledger start at first_row, so a later call with a higher first_row adds late rows to
    ledgers already written without colliding with their keys. `every_n_ledgers` makes a table sparse (rows only
    in ledgers divisible by n); `xdr_chars` > 0 widens XDR columns to that many characters (0: a 32-char hash).
    """
    rows = DEFAULT_ROWS_PER_LEDGER | (rows_per_ledger or {})
    inserted: dict[str, int] = {}
    with conn.cursor() as cur:
        for table, ledger_column in tables.items():
            columns = cur.execute(_COLUMNS, [schema, table]).fetchall()
            if not columns:
                raise ValueError(f"table {schema}.{table} not found")
            names: list[sql.Identifier] = []
            values: list[sql.SQL] = []
            params: list[object] = []
            for column, udt, nullable, is_key in columns:
                if column == ledger_column:
                    expr, args = "ledger", []
                elif column == "ledger_range":
                    expr, args = "ledger / 10000 * 10000", []
                elif (value := _value(column, udt, is_key, xdr_chars)) is None:
                    continue  # left to its default; a NOT NULL one fails loudly
                elif nullable and not is_key:
                    expr, args = f"CASE WHEN {_NULL_ROW} THEN NULL ELSE {value[0]} END", [_salt(column), *value[1]]
                else:
                    expr, args = value
                names.append(sql.Identifier(column))
                values.append(sql.SQL(expr))
                params += args
            query = _INSERT.format(
                table=sql.Identifier(schema, table),
                columns=sql.SQL(", ").join(names),
                values=sql.SQL(", ").join(values),
            )
            per_ledger = rows.get(table, 1)
            stride = (every_n_ledgers or {}).get(table, 1)
            last_ledger = first_ledger + n_ledgers - 1
            cur.execute(query, [*params, first_ledger, last_ledger, first_row, first_row + per_ledger - 1, stride])
            inserted[table] = cur.rowcount
    return inserted
