"""Quoting for the few DuckDB statements that take no bound parameters (LOAD, ATTACH, CREATE SECRET, DDL)."""


def quote_literal(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """A quoted SQL identifier (same rules in DuckDB and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


def qualified(*parts: str) -> str:
    """catalog.schema.table, each part quoted."""
    return ".".join(quote_ident(p) for p in parts)
