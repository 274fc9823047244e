"""The DuckDB side: one in-memory DuckDB per run with the hot buffer and the DuckLake catalog attached."""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb

from flusher.catalog_link import CatalogLink
from flusher.config import Settings, default_threads, sentence
from flusher.extensions import load_extensions
from flusher.quoting import qualified, quote_ident, quote_literal
from flusher.secrets import MaskedMessage, mask, remember_settings
from flusher.storage import StorageKind

HOT = "hot"  # alias of the attached hot-buffer database inside DuckDB
COMMIT_AUTHOR = "postgres-ducklake-flusher"
DUCKLAKE_ROW_GROUP_ROWS = 122_880  # DuckLake's Parquet row group size when the lake sets none
PREFLIGHT_PROBE = ".flusher-preflight*"  # a listing prefix no real file has, so the check stays cheap


_POOL_CONNECTIONS = 4  # the extension's default pool size


def pool_settings(flush_concurrency: int) -> list[str]:
    """The postgres extension's pool settings for this run (set before any ATTACH: they apply to databases attached
    after them): two pooled connections per concurrent table flush (its copy, and its commit's retry or the lookup
    after it). With fewer, every flush above the pool size opened and closed its own catalog connections (72 at
    flush.concurrency 8, each several round trips to a remote catalog; bench/remote.py).

    The pool's health check (`SELECT 1` when a connection is taken and given back) stays on although it is most of
    the statements a remote catalog sees: it is what replaces a pooled connection the server closed while idle (a
    database or role `idle_session_timeout`, which libpq options cannot turn off on servers older than 14; without
    the check the next lake step failed the run: tests/server/test_session_settings.py).
    """
    return [f"SET GLOBAL pg_pool_max_connections = {max(_POOL_CONNECTIONS, 2 * int(flush_concurrency))}"]


_UNREACHABLE = "Unable to connect to Postgres at"  # DuckDB's postgres extension, when libpq cannot connect


class LakeError(MaskedMessage, RuntimeError):
    """DuckDB could not reach or use the hot buffer or the lake; the message says which and why."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str


def redact(message: str, *secrets: str | None) -> str:
    """Remove passwords and keys from an error message before it is logged or shown (flusher.secrets.mask)."""
    return mask(message, *secrets)


def _extensions_for(settings: Settings) -> tuple[str, ...]:
    """httpfs only for a remote data path: loading it costs 0.1-0.2 s per run and a local lake never uses it."""
    base = ("postgres_scanner", "ducklake")
    return base + ("httpfs",) if settings.ducklake.is_remote else base


def spill_directory() -> Path:
    """A new, private folder for one DuckDB's spill files, in the system's temporary folder ($TMPDIR).

    DuckDB's default is `.tmp` in the working directory, with the same file names in every process
    (duckdb_temp_storage_DEFAULT-0.tmp): two DuckDBs spilling from one working directory (a flush and a maintenance
    run of one worker, the catch-up beside the service) wrote into each other's files, and the first to close
    deleted the other's, which then failed ("Cannot open file .tmp/duckdb_temp_storage_...") or crashed. A flush
    spills whenever its batch outgrows memory_limit, so this is what keeps a large batch within memory_limit.
    """
    return Path(tempfile.mkdtemp(prefix="flusher-duckdb-spill-"))


def partition_flush_rows(row_group_size: int | None) -> int:
    """Rows a partitioned insert holds per thread before it writes them out: one Parquet row group.

    DuckDB's default (partitioned_write_flush_threshold, 524,288 rows) holds every partition's rows until one reaches
    it; the Bronze tables are partitioned by ledger_range (10,000 ledgers), so a batch's partitions rarely do and a
    table's whole batch stayed in memory (or spilled to disk) until the end of its INSERT: memory grew with the
    batch. Writing a row group's worth at a time bounds it by threads x one row group.
    """
    return row_group_size or DUCKLAKE_ROW_GROUP_ROWS


def connect_duckdb(
    threads: int, memory_limit: str, spill_to: Path, flush_rows: int = DUCKLAKE_ROW_GROUP_ROWS
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose every connection (cursor) works in UTC, whatever the host's time zone, which
    spills to `spill_to` (see spill_directory) and writes partitioned inserts out every `flush_rows` rows (see
    partition_flush_rows).

    A plain `SET TimeZone` holds only for the connection that ran it: cursors start from the global value, which
    DuckDB takes from the host (TZ). The TimeZone config key cannot be given to connect() either (ICU is not loaded
    yet then), so it is set globally before the first cursor exists.
    """
    db = duckdb.connect(
        config={
            "threads": threads,
            "memory_limit": memory_limit,
            "temp_directory": str(spill_to),
            "partitioned_write_flush_threshold": flush_rows,
        }
    )
    try:
        db.execute("SET GLOBAL TimeZone = 'UTC'")
    except BaseException:
        db.close()
        raise
    return db


class LakeSession:
    """A DuckDB database with `hot` (PostgreSQL, read-only) and the lake attached; one cursor per thread of work."""

    def __init__(
        self, settings: Settings, attach_hot: bool = True, threads: int | None = None, read_only: bool = False
    ) -> None:
        """`threads`: DuckDB's threads, as a flush run's plan resolved them (flusher.plan.Parallelism); by default
        ducklake.threads, else every core (one query at a time). `read_only`: attach the lake READ_ONLY (readers)."""
        self.read_only = read_only
        self.settings = remember_settings(settings)  # however it was made, its secrets are masked from now on
        self.lake = settings.ducklake.catalog_name
        self.schema = settings.ducklake.schema_name
        self._lock = threading.Lock()
        self.catalog = CatalogLink(settings.ducklake)  # direct reads of the catalog database, one round trip each
        if threads is None:
            threads = settings.ducklake.threads or default_threads(1)
        self.spill_dir = spill_directory()
        try:
            self._db = connect_duckdb(
                threads,
                settings.ducklake.memory_limit,
                self.spill_dir,
                partition_flush_rows(settings.ducklake.parquet_row_group_size),
            )
        except BaseException:
            shutil.rmtree(self.spill_dir, ignore_errors=True)
            raise
        try:
            load_extensions(self._db, _extensions_for(settings))
            for statement in pool_settings(settings.flush.concurrency):
                self._db.execute(statement)
            self._create_s3_secret()
            self._check_data_path()
            if attach_hot:
                self._attach_hot()
            self._attach_lake()
        except BaseException:
            self.close()
            raise

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own (own transaction) on the shared database."""
        with self._lock:
            return self._db.cursor()

    def close(self) -> None:
        try:
            self._db.close()
        finally:
            self.catalog.close()
            shutil.rmtree(
                self.spill_dir, ignore_errors=True
            )  # spill files are scratch: nothing in them outlives the run

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
            lake.catalog_path.get_secret_value(),
            lake.aws_secret_access_key.get_secret_value() if lake.aws_secret_access_key else None,
        )

    def _run(self, what: str, statement: str, hint: str) -> None:
        try:
            self._db.execute(statement)
        except duckdb.Error as exc:
            raise LakeError(f"{what}: {redact(str(exc), *self._secrets())}. {hint}") from None

    def _create_s3_secret(self) -> None:
        lake = self.settings.ducklake
        if lake.storage is not StorageKind.S3:
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
        self._run(
            "cannot configure S3 credentials",
            f"CREATE OR REPLACE SECRET flusher_s3 ({body}, SCOPE {quote_literal(lake.data_path)})",
            "Check the aws_* settings.",
        )

    def _check_data_path(self) -> None:
        """List the data path once, so bad credentials or a missing bucket stop the run before anything moves."""
        lake = self.settings.ducklake
        if not lake.is_remote:
            return
        # A prefix-bounded listing: S3 returns (almost) nothing however big the lake is, but checks bucket and keys.
        try:
            self._db.execute("SELECT count(*) FROM glob(?)", [lake.data_path + PREFLIGHT_PROBE]).fetchone()
        except duckdb.Error as exc:
            raise LakeError(
                storage_error(lake.data_path, lake.aws_endpoint, redact(str(exc), *self._secrets()))
            ) from None

    def _attach_hot(self) -> None:
        pg = self.settings.postgres
        self._run(
            f"cannot attach the hot buffer PostgreSQL {pg.describe()}",
            f"ATTACH {quote_literal(pg.conninfo(scanner=True))} AS {HOT} (TYPE postgres, READ_ONLY)",
            "Check the postgres settings and that the server is running.",
        )

    def _attach_lake(self) -> None:
        lake = self.settings.ducklake
        options = [
            f"DATA_PATH {quote_literal(lake.data_path)}",
            f"METADATA_SCHEMA {quote_literal(lake.metadata_schema)}",
        ]
        if self.read_only:
            options.append("READ_ONLY")
        elif lake.allow_catalog_migration:
            options.append("AUTOMATIC_MIGRATION true")
        if lake.data_inlining_row_limit is not None:
            options.append(f"DATA_INLINING_ROW_LIMIT {int(lake.data_inlining_row_limit)}")
        statement = (
            f"ATTACH {quote_literal('ducklake:postgres:' + lake.catalog_conninfo())} AS {quote_ident(self.lake)} "
            f"({', '.join(options)})"
        )
        try:
            self._db.execute(statement)
        except duckdb.Error as exc:
            message = redact(str(exc), *self._secrets())
            if "version mismatch" in message or "AUTOMATIC_MIGRATION" in message:
                raise LakeError(
                    f"the DuckLake catalog (metadata schema {lake.metadata_schema}) has another format version than "
                    f"this DuckLake extension and was NOT migrated: {message.splitlines()[0]}. Migrating changes the "
                    "catalog for every reader and writer: back it up, upgrade them together, then set "
                    "ducklake.allow_catalog_migration: true for one run."
                ) from None
            where = lake.describe_catalog()
            if _UNREACHABLE in message:  # DuckDB quotes the whole connection string; libpq's reason is after it
                reason = "; ".join(line.strip() for line in message.rsplit('": ', 1)[-1].splitlines() if line.strip())
                raise LakeError(
                    f"cannot connect to the DuckLake catalog {where}: {sentence(reason)} Check ducklake.catalog_path "
                    "and that the server is running."
                ) from None
            raise LakeError(
                f"cannot attach the DuckLake catalog {where} (metadata schema {lake.metadata_schema}, data path "
                f"{lake.data_path}): {message}. Check ducklake.catalog_path (a PostgreSQL you can write to) and "
                "ducklake.data_path."
            ) from None

    def ensure_tables(self, names: list[str]) -> list[str]:
        """Create the lake schema and missing Bronze tables, and partition unpartitioned ones; never drop anything.
        Returns the tables created."""
        return self._ensure(names)[0]

    def prepare_tables(self, names: list[str]) -> dict[str, list[Column]]:
        """ensure_tables, then every lake table's columns (read again only when tables were created)."""
        return self._ensure(names)[1]

    def _ensure(self, names: list[str]) -> tuple[list[str], dict[str, list[Column]]]:
        """The tables created, and the lake's columns after.

        What the lake has (schema, columns, partitioning, write options) is read in ONE transaction (see
        `transaction`); read one by one they cost ~1.3 s of a 10 s seed flush with the catalog 30 ms away.

        Every table created or partitioned here changes in ONE lake commit, so they share one schema version. Created
        one commit each (as before), every table had two versions of its own, each with an inlined-data table, and a
        process's first read of a table through DuckLake (the certificate's read-back, verify, readers) loaded the
        whole catalog as of each version: ~30 catalog round trips per table, 12 s of a 32 s seed flush with the
        catalog 30 ms away (bench/results/remote-30ms-before.md). Lakes made before keep their versions.
        """
        has_schema, existing, partitioned = self._read_layout()
        if not has_schema:
            with self.cursor() as cur:
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {qualified(self.lake, self.schema)}")
        ddl = bronze_ddl()
        created = [name for name in names if name not in existing]
        for name in created:
            if name not in ddl:
                raise LakeError(f"no Bronze DDL for table {name!r} in schema/bronze_schema.sql; add it there")
        to_partition = self._unpartitioned(names, created, existing, partitioned)
        if created or to_partition:
            self._create_and_partition(ddl, created, to_partition)
        if created:
            existing = self.columns_by_table(self.lake, self.schema)
        return created, existing

    def _read_layout(self) -> tuple[bool, dict[str, list[Column]], dict[str, list[str]]]:
        """In one transaction: whether the Bronze schema exists, its tables' columns and partition columns; the
        lake-wide write options are set where they differ (ensure_write_options)."""
        with self.transaction() as cur:
            has_schema = bool(
                cur.execute(
                    "SELECT count(*) FROM duckdb_schemas() WHERE database_name = ? AND schema_name = ?",
                    [self.lake, self.schema],
                ).fetchone()[0]
            )
            existing = self.columns_by_table(self.lake, self.schema, cur) if has_schema else {}
            wanted = has_schema and self.settings.ducklake.partition_by is not None
            partitioned = self.partition_columns(cur) if wanted else {}
            self.ensure_write_options(cur)
        return has_schema, existing, partitioned

    def _unpartitioned(
        self,
        names: list[str],
        created: list[str],
        existing: dict[str, list[Column]],
        partitioned: dict[str, list[str]],
    ) -> list[str]:
        """Of `names`, those to partition by ducklake.partition_by: new ones, and existing ones with no partitioning
        (`partitioned` lists those with some) that have the column (an existing choice, even another column, is the
        operator's)."""
        column = self.settings.ducklake.partition_by
        if column is None:
            return []
        return [
            name
            for name in names
            if name not in partitioned and (name in created or column in {c.name for c in existing.get(name, [])})
        ]

    def _create_and_partition(self, ddl: dict[str, str], created: list[str], to_partition: list[str]) -> None:
        """One lake commit: CREATE the `created` tables, then partition `to_partition` (those that have the column)."""
        column = self.settings.ducklake.partition_by
        with self.transaction() as cur:
            cur.execute(f"USE {qualified(self.lake, self.schema)}")
            for name in created:
                cur.execute(ddl[name])
            has_column = self._tables_with_column(cur, column) if column is not None else set()
            for name in to_partition:
                if name in has_column:
                    cur.execute(f"ALTER TABLE {self.table(name)} SET PARTITIONED BY ({quote_ident(column)})")

    def _tables_with_column(self, cur: duckdb.DuckDBPyConnection, column: str) -> set[str]:
        """Tables of the Bronze schema with `column`, as `cur`'s transaction sees them (its own new tables too)."""
        rows = cur.execute(
            "SELECT table_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? AND column_name = ?",
            [self.lake, self.schema, column],
        ).fetchall()
        return {r[0] for r in rows}

    def ensure_write_options(self, cur: duckdb.DuckDBPyConnection | None = None) -> dict[str, str]:
        """Set the lake-wide Parquet options the config names, where the lake has another value; returns those set.
        `cur`: an open transaction to do it in (else one of its own).

        They live in the catalog (every writer of the lake uses them), and setting one commits no snapshot.
        """
        lake = self.settings.ducklake
        wanted = {
            "parquet_compression": lake.parquet_compression,
            "parquet_row_group_size": lake.parquet_row_group_size,
        }
        wanted = {name: str(value) for name, value in wanted.items() if value is not None}
        if not wanted:
            return {}
        with self.cursor_for(cur) as cur:
            current = dict(
                cur.execute(
                    f"SELECT option_name, value FROM {quote_ident(self.lake)}.options() WHERE scope = 'GLOBAL'"
                ).fetchall()
            )
            changed = {name: value for name, value in wanted.items() if current.get(name) != value}
            for name, value in changed.items():
                cur.execute(f"CALL {quote_ident(self.lake)}.set_option(?, ?)", [name, value])
        return changed

    @contextlib.contextmanager
    def cursor_for(self, cur: duckdb.DuckDBPyConnection | None) -> Iterator[duckdb.DuckDBPyConnection]:
        """`cur` as it is (a caller's open transaction), or a cursor of its own, closed after."""
        if cur is not None:
            yield cur
            return
        with self.cursor() as own:
            yield own

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor in one transaction, committed when the block ends (rolled back if it raises).

        Reads that share it share one catalog connection and snapshot: each transaction of its own costs ~7 round
        trips to the catalog (a pooled connection's checks, BEGIN, the snapshot lookup, COMMIT), 0.2 s with the
        catalog 30 ms away.
        """
        with self.cursor() as cur:
            cur.execute("BEGIN")
            try:
                yield cur
            except BaseException:
                with contextlib.suppress(duckdb.Error):  # the error that got here is the one to report
                    cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def metadata(self, table: str) -> str:
        """A DuckLake catalog table (e.g. ducklake_data_file), as DuckDB exposes the catalog database."""
        return qualified(f"__ducklake_metadata_{self.lake}", self.settings.ducklake.metadata_schema, table)

    def partition_columns(self, cur: duckdb.DuckDBPyConnection | None = None) -> dict[str, list[str]]:
        """Table -> its current partition columns, for the tables of the Bronze schema that are partitioned (in `cur`'s
        transaction, if given)."""
        with self.cursor_for(cur) as cur:
            rows = cur.execute(
                f"SELECT t.table_name, c.column_name FROM {self.metadata('ducklake_table')} t "
                f"JOIN {self.metadata('ducklake_schema')} s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL "
                f"JOIN {self.metadata('ducklake_partition_info')} p "
                "  ON p.table_id = t.table_id AND p.end_snapshot IS NULL "
                f"JOIN {self.metadata('ducklake_partition_column')} pc "
                "  ON pc.partition_id = p.partition_id AND pc.table_id = t.table_id "
                f"JOIN {self.metadata('ducklake_column')} c "
                "  ON c.column_id = pc.column_id AND c.table_id = t.table_id AND c.end_snapshot IS NULL "
                "WHERE t.end_snapshot IS NULL AND s.schema_name = ? ORDER BY t.table_name, pc.partition_key_index",
                [self.schema],
            ).fetchall()
        out: dict[str, list[str]] = {}
        for table, column in rows:
            out.setdefault(table, []).append(column)
        return out

    def columns_by_table(
        self, database: str, schema: str, cur: duckdb.DuckDBPyConnection | None = None
    ) -> dict[str, list[Column]]:
        """Columns of every table in database.schema, in physical order, as DuckDB types (in `cur`'s transaction,
        if given)."""
        with self.cursor_for(cur) as cur:
            rows = cur.execute(
                "SELECT table_name, column_name, data_type FROM duckdb_columns() "
                "WHERE database_name = ? AND schema_name = ? ORDER BY table_name, column_index",
                [database, schema],
            ).fetchall()
        out: dict[str, list[Column]] = {}
        for table, column, type_ in rows:
            out.setdefault(table, []).append(Column(column, type_))
        return out


def storage_error(data_path: str, endpoint: str | None, reason: str) -> str:
    """A message for a failed listing of the data path: where, why (first line of DuckDB's error) and what to check."""
    bucket = data_path.split("://", 1)[1].split("/", 1)[0]
    where = f"bucket {bucket!r} at endpoint {endpoint or 'the default AWS S3 endpoint'}"
    first = reason.splitlines()[0] if reason else "unknown error"
    detail = " ".join(line.strip() for line in reason.splitlines()[1:3] if line.strip())
    if (
        "403" in reason
        or "AccessDenied" in reason
        or "InvalidAccessKeyId" in reason
        or "SignatureDoesNotMatch" in reason
    ):
        hint = (
            "the credentials were rejected: check ducklake.aws_access_key_id, aws_secret_access_key and aws_region "
            "(for B2, an application key that may use this bucket)"
        )
    elif "NoSuchBucket" in reason or "404" in reason:
        hint = (
            "the bucket does not exist there: create it, or fix the bucket in ducklake.data_path or "
            "ducklake.aws_endpoint"
        )
    else:
        hint = (
            "the endpoint did not answer: check ducklake.aws_endpoint, aws_use_ssl and aws_url_style (path for MinIO)"
        )
    return (
        f"cannot list the lake's data path {data_path} ({where}): {hint}. Nothing was flushed or deleted. "
        f"DuckDB said: {first} {detail}".strip()
    )


_CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS\s+(\"?[A-Za-z_][A-Za-z0-9_]*\"?)\s*\(", re.IGNORECASE)


def bronze_ddl() -> dict[str, str]:
    """Table name -> its CREATE TABLE IF NOT EXISTS statement, from schema/bronze_schema.sql."""
    text = resources.files("flusher.schema").joinpath("bronze_schema.sql").read_text()
    statements = {}
    for statement in text.split(";"):
        body = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--")).strip()
        match = _CREATE.search(body)
        if match:
            statements[match.group(1).strip('"')] = body
    return statements
