"""The DuckDB side: one in-memory DuckDB per run with the hot buffer and the DuckLake catalog attached."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from importlib import resources

import duckdb

from flusher.config import Settings
from flusher.extensions import load_extensions
from flusher.quoting import qualified, quote_ident, quote_literal

HOT = "hot"  # alias of the attached hot-buffer database inside DuckDB
COMMIT_AUTHOR = "postgres-ducklake-flusher"


class LakeError(RuntimeError):
    """DuckDB could not reach or use the hot buffer or the lake; the message says which and why."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str


def redact(message: str, *secrets: str | None) -> str:
    """Remove passwords and keys from an error message before it is logged or shown."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "********")
    return re.sub(r"(password=)(\S+)", r"\1********", message)


def _extensions_for(settings: Settings) -> tuple[str, ...]:
    """httpfs only for a remote data path: loading it costs 0.1-0.2 s per run and a local lake never uses it."""
    base = ("postgres_scanner", "ducklake")
    return base + ("httpfs",) if settings.ducklake.is_remote else base


class LakeSession:
    """A DuckDB database with `hot` (PostgreSQL, read-only) and the lake attached; one cursor per thread of work."""

    def __init__(self, settings: Settings, attach_hot: bool = True) -> None:
        self.settings = settings
        self.lake = settings.ducklake.catalog_name
        self.schema = settings.ducklake.schema_name
        self._lock = threading.Lock()
        self._db = duckdb.connect(
            config={"threads": settings.ducklake.threads, "memory_limit": settings.ducklake.memory_limit}
        )
        try:
            load_extensions(self._db, _extensions_for(settings))
            # Hot timestamps are TIMESTAMPTZ; the lake stores UTC wall time.
            self._db.execute("SET TimeZone = 'UTC'")
            self._create_s3_secret()
            if attach_hot:
                self._attach_hot()
            self._attach_lake()
        except BaseException:
            self._db.close()
            raise

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own (own transaction) on the shared database."""
        with self._lock:
            return self._db.cursor()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LakeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def table(self, name: str) -> str:
        return qualified(self.lake, self.schema, name)

    def hot_table(self, name: str) -> str:
        return qualified(HOT, self.settings.postgres.schema_name, name)

    def _secrets(self) -> tuple[str | None, ...]:
        lake = self.settings.ducklake
        return (
            self.settings.postgres.password.get_secret_value(),
            lake.aws_secret_access_key.get_secret_value() if lake.aws_secret_access_key else None,
        )

    def _run(self, what: str, statement: str, hint: str) -> None:
        try:
            self._db.execute(statement)
        except duckdb.Error as exc:
            raise LakeError(f"{what}: {redact(str(exc), *self._secrets())}. {hint}") from None

    def _create_s3_secret(self) -> None:
        lake = self.settings.ducklake
        if not lake.data_path.startswith("s3://"):
            return
        options = {"TYPE": "s3", "URL_STYLE": lake.aws_url_style, "USE_SSL": lake.aws_use_ssl}
        for key, value in (
            ("KEY_ID", lake.aws_access_key_id),
            ("SECRET", lake.aws_secret_access_key),
            ("REGION", lake.aws_region),
            ("ENDPOINT", lake.aws_endpoint),
        ):
            if value is not None:
                options[key] = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        body = ", ".join(
            f"{k} {str(v).lower() if isinstance(v, bool) else quote_literal(str(v))}" for k, v in options.items()
        )
        self._run("cannot configure S3 credentials", f"CREATE OR REPLACE SECRET flusher_s3 ({body}, SCOPE {quote_literal(lake.data_path)})",
                  "Check the aws_* settings.")

    def _attach_hot(self) -> None:
        pg = self.settings.postgres
        self._run(
            f"cannot attach the hot buffer PostgreSQL {pg.describe()}",
            f"ATTACH {quote_literal(pg.conninfo())} AS {HOT} (TYPE postgres, READ_ONLY)",
            "Check the postgres settings and that the server is running.",
        )

    def _attach_lake(self) -> None:
        lake = self.settings.ducklake
        options = [f"DATA_PATH {quote_literal(lake.data_path)}", f"METADATA_SCHEMA {quote_literal(lake.metadata_schema)}"]
        if lake.allow_catalog_migration:
            options.append("AUTOMATIC_MIGRATION true")
        self._run(
            f"cannot attach the DuckLake catalog (metadata schema {lake.metadata_schema}, data path {lake.data_path})",
            f"ATTACH {quote_literal('ducklake:postgres:' + lake.catalog_conninfo())} AS {quote_ident(self.lake)} "
            f"({', '.join(options)})",
            "Check ducklake.catalog_path (a PostgreSQL you can write to) and ducklake.data_path.",
        )

    def ensure_tables(self, names: list[str]) -> list[str]:
        """Create the lake schema and any missing Bronze table; never drop or alter an existing one."""
        cur = self.cursor()
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {qualified(self.lake, self.schema)}")
        existing = set(self.columns_by_table(self.lake, self.schema))
        ddl = bronze_ddl()
        created = []
        for name in names:
            if name in existing:
                continue
            if name not in ddl:
                raise LakeError(f"no Bronze DDL for table {name!r} in schema/bronze_schema.sql; add it there")
            cur.execute(f"USE {qualified(self.lake, self.schema)}")
            cur.execute(ddl[name])
            created.append(name)
        return created

    def columns_by_table(self, database: str, schema: str) -> dict[str, list[Column]]:
        """Columns of every table in database.schema, in physical order, as DuckDB types."""
        rows = self.cursor().execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() "
            "WHERE database_name = ? AND schema_name = ? ORDER BY table_name, column_index",
            [database, schema],
        ).fetchall()
        out: dict[str, list[Column]] = {}
        for table, column, type_ in rows:
            out.setdefault(table, []).append(Column(column, type_))
        return out


_CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS\s+(\"?[A-Za-z_][A-Za-z0-9_]*\"?)\s*\(", re.IGNORECASE)


def bronze_ddl() -> dict[str, str]:
    """Table name -> its CREATE TABLE IF NOT EXISTS statement, from schema/bronze_schema.sql."""
    text = resources.files("schema").joinpath("bronze_schema.sql").read_text()
    statements = {}
    for statement in text.split(";"):
        body = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--")).strip()
        match = _CREATE.search(body)
        if match:
            statements[match.group(1).strip('"')] = body
    return statements
