"""Typed settings, loaded and validated once from YAML (the Go service's format) or from Prefect blocks."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import psycopg.conninfo
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from flusher import secrets
from flusher.storage import StorageKind, storage_kind

ENV_PREFIX = "FLUSHER_"
CONFIG_ENV = "FLUSHER_CONFIG"  # the config file of a run or a command that names none
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What DuckDB's memory_limit takes: a number and a unit (1000- or 1024-based), any case.
_MEMORY_LIMIT = re.compile(r"^\s*\d+(\.\d+)?\s*(b|bytes?|[kmgt]|[kmgt]i?b)\s*$", re.IGNORECASE)
# Upper bounds, so a value that validates also works where it goes: PostgreSQL's timeouts are int milliseconds,
# DuckDB's and PostgreSQL's counters int32/int64, and a retention is subtracted from today's date.
_INT32 = 2**31 - 1
_INT64 = 2**63 - 1
_PG_TIMEOUT_SECONDS = _INT32 // 1000
_DAY = 86_400
_CENTURY_DAYS = 36_500


# What every PostgreSQL session the flusher opens needs, whatever the role's, database's or server's defaults say
# (an operator's ALTER ROLE ... SET must not break a flush): UTC, so no value ever depends on a session zone, and no
# idle-in-transaction limit, since the snapshot-holding control session and DuckDB's scanner and catalog connections
# sit idle inside their transaction while other tables copy. All exist since PostgreSQL 9.6, so they go in libpq's
# `options` (a name the server does not know would refuse the connection).
SESSION_SETTINGS = {"TimeZone": "UTC", "idle_in_transaction_session_timeout": "0"}
# Settings that only PostgreSQL 14+ knows, set with SQL after connecting (flusher.hot.configure_session): the control
# session holds the flusher lock while idle between statements.
SESSION_SETTINGS_PG14 = {"idle_session_timeout": "0"}


def session_options(statement_timeout_seconds: int, existing: str | None = None) -> str:
    """libpq `options` with SESSION_SETTINGS and statement_timeout (0 = none), after any the user gave.

    PostgreSQL applies `-c` options in order, so ours, last, win over the same name in `existing`.
    """
    ours = {
        **SESSION_SETTINGS,
        "statement_timeout": f"{statement_timeout_seconds}s" if statement_timeout_seconds else "0",
    }
    mine = " ".join(f"-c {name}={value}" for name, value in ours.items())
    return f"{existing.strip()} {mine}" if existing and existing.strip() else mine


def with_session_options(conninfo: str, statement_timeout_seconds: int) -> str:
    """A libpq connection string (URI or key=value) with session_options merged into its own `options`."""
    parts = psycopg.conninfo.conninfo_to_dict(conninfo)
    parts["options"] = session_options(statement_timeout_seconds, parts.get("options"))
    return psycopg.conninfo.make_conninfo(**parts)


class ConfigError(secrets.MaskedMessage, ValueError):
    """A configuration value is wrong; the message says which and what to do (never a secret: it is masked)."""


class _Section(BaseModel):
    # No inf/nan: every number here ends up in a timedelta, a sleep or a server setting, where they crash.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a plain SQL identifier (letters, digits, underscore)")
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]


class ServiceSettings(_Section):
    name: str = "postgres-ducklake-flusher"
    health_port: int = Field(8089, ge=0, le=65535, description="/health and /metrics; 0 picks a free port.")
    health_host: str = Field(
        "127.0.0.1",
        description="Address /health and /metrics listen on: loopback by default (they have no authentication); "
        "0.0.0.0 (every interface) or a private address when probes or Prometheus come from elsewhere.",
    )
    probe_refresh_seconds: float = Field(
        5,
        ge=0.5,
        le=300,
        description="How often /health and /metrics re-read PostgreSQL, the catalog and the consumers in the "
        "background; requests answer from the last reading.",
    )
    unhealthy_after_failures: int = Field(
        3, ge=1, le=1000, description="/health is 503 after this many failed flushes in a row."
    )
    max_lag_ledgers: int = Field(
        1000, ge=1, le=_INT64, description="/health is 503 when the hot buffer is this far ahead."
    )
    shutdown_timeout_seconds: float = Field(
        600, ge=0, le=_DAY, description="How long shutdown waits for a flush in flight."
    )
    flush_interval_minutes: int = Field(10, description="Minutes between scheduled flushes (5-60).")

    @field_validator("flush_interval_minutes")
    @classmethod
    def _interval_in_range(cls, value: int) -> int:
        if not 5 <= value <= 60:
            raise ValueError("must be between 5 and 60 minutes")
        return value


class PostgresSettings(_Section):
    host: str = "localhost"
    port: int = Field(5432, ge=1, le=65535)
    database: str
    user: str = "postgres"
    password: SecretStr = SecretStr("")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "disable"
    schema_name: Identifier = Field("public", alias="schema", description="Schema of the hot tables.")
    pool_size: int = Field(4, ge=1, le=64)
    connect_timeout_seconds: int = Field(10, ge=1, le=3600)
    statement_timeout_seconds: int = Field(
        900,
        ge=1,
        le=_PG_TIMEOUT_SECONDS,
        description="statement_timeout of the flusher's own PostgreSQL statements (DELETE, VACUUM, state); "
        "the copy (DuckDB's scanner) and the catalog run without one.",
    )
    lock_timeout_seconds: int = Field(
        30, ge=1, le=_PG_TIMEOUT_SECONDS, description="How long a DELETE waits for row locks before giving up."
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    def conninfo(self, scanner: bool = False) -> str:
        """A libpq connection string (password included) with the flusher's session settings.

        psycopg sessions (state, deletes, VACUUM, the control session) run with statement_timeout_seconds; DuckDB's
        scanner (`scanner=True`) with none, since one table's copy is one long COPY statement, bounded by the run's
        size (flush.max_ledgers_per_run), and cutting it off would only repeat it on every run.
        """
        return with_session_options(self._base_conninfo(), 0 if scanner else self.statement_timeout_seconds)

    def _base_conninfo(self) -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.database,
            user=self.user,
            password=self.password.get_secret_value() or None,
            sslmode=self.sslmode,
            connect_timeout=self.connect_timeout_seconds,
            application_name="postgres-ducklake-flusher",
            # A SQL_ASCII server would otherwise hand psycopg bytes instead of text.
            client_encoding="UTF8",
        )

    def describe(self) -> str:
        """Where this points, without secrets, for messages."""
        return f"{self.user}@{self.host}:{self.port}/{self.database}"


class DuckLakeSettings(_Section):
    # The descriptions are also the DuckLake Bronze block's (flusher.blocks.ducklake): one text, in the UI and here.
    catalog_path: SecretStr = Field(description="PostgreSQL catalog: libpq 'host=... dbname=...' or postgresql:// URI.")
    data_path: str = Field(description="Where Parquet files go: a local folder or s3://bucket/prefix/.")
    catalog_name: Identifier = Field("bronze_catalog", description="Alias of the attached lake inside DuckDB.")
    schema_name: Identifier = Field("bronze", description="Schema of the Bronze tables in the lake.")
    metadata_schema: Identifier = Field(
        "bronze_meta", description="PostgreSQL schema of DuckLake's own catalog tables (METADATA_SCHEMA)."
    )
    aws_access_key_id: SecretStr | None = Field(None, description="S3/B2/MinIO key id (for an s3:// data path).")
    aws_secret_access_key: SecretStr | None = Field(
        None, description="S3/B2/MinIO secret key (for an s3:// data path)."
    )
    aws_region: str | None = Field(None, description="S3 region, e.g. us-east-1, or us-west-004 for B2.")
    aws_endpoint: str | None = Field(None, description="host[:port] of an S3-compatible service (B2, MinIO).")
    aws_url_style: Literal["vhost", "path"] = Field(
        "vhost", description="S3 addressing: vhost (AWS, B2) or path (MinIO)."
    )
    aws_use_ssl: bool = Field(True, description="HTTPS to the S3 endpoint; false only for a plain-HTTP MinIO.")
    threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="DuckDB threads shared by all table flushes; null: the cores the concurrent flushes leave, "
        "plus one.",
    )
    memory_limit: str = Field(
        "512MB",
        description="DuckDB memory_limit, e.g. 512MB; the process peaks about 250-400 MiB above it (Python, Prefect).",
    )
    allow_catalog_migration: bool = Field(False, description="Let DuckLake migrate an older catalog format.")
    partition_by: Identifier | None = Field(
        "ledger_range", description="Column the Bronze tables are partitioned by; null leaves partitioning alone."
    )
    parquet_compression: Literal["snappy", "zstd", "lz4", "lz4_raw", "gzip", "brotli", "uncompressed"] | None = Field(
        None,
        description="Compression of the Parquet files the flusher writes; null keeps the lake's (DuckLake: snappy).",
    )
    parquet_row_group_size: int | None = Field(
        32768,
        ge=2048,
        le=_INT32,
        description="Rows per Parquet row group; null keeps the lake's (DuckLake: 122880). 32768 flushed 2.2M rows "
        "in 26.7 s against 32.9 s, with files of the same size (bench/results/parquet-large.md).",
    )
    data_inlining_row_limit: int | None = Field(
        None,
        ge=0,
        le=_INT32,
        description="Inserts of fewer rows go into the catalog, not a file (0 = never; null = DuckLake's 10).",
    )

    @field_validator("memory_limit")
    @classmethod
    def _memory_limit_duckdb_takes(cls, value: str) -> str:
        # Refused here (exit 2 at load), not by DuckDB inside every flow run.
        if not _MEMORY_LIMIT.match(value):
            raise ValueError(
                f"{value!r} is not a size DuckDB takes; write e.g. 512MB or 1GiB (KB, MB, GB, TB or KiB, MiB, GiB, "
                "TiB). Peak RSS is about 250-400 MiB above it: for a budget B, set B minus ~400 MiB"
            )
        return value.strip()

    @field_validator("catalog_path")
    @classmethod
    def _catalog_is_postgres(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value().removeprefix("ducklake:").removeprefix("postgres:")
        try:
            parts = psycopg.conninfo.conninfo_to_dict(raw)
        except psycopg.ProgrammingError:  # libpq's reason quotes the string, password included: never shown
            raise ValueError(
                "not a PostgreSQL connection string; use 'host=... dbname=...' (a value with spaces in single "
                "quotes) or postgresql://user@host/dbname (percent-encode @ : / in a password)"
            ) from None
        if not parts.get("dbname"):
            raise ValueError("names no database; add dbname=... (or /dbname to the URI)")
        if problem := secrets.uri_userinfo_problem(raw):
            raise ValueError(problem)
        return SecretStr(raw)

    @field_validator("data_path")
    @classmethod
    def _data_path_usable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty; give a local folder or s3://bucket/prefix/")
        storage_kind(value)  # raises UnsupportedStorage (a ValueError) for a scheme other than s3://
        return value if value.endswith("/") else value + "/"

    @property
    def storage(self) -> StorageKind:
        """Local folder or S3-compatible object store (validation refused anything else)."""
        return storage_kind(self.data_path)

    @property
    def is_remote(self) -> bool:
        return self.storage.remote

    def catalog_conninfo(self) -> str:
        """The catalog's connection string with the flusher's session settings (its own `options` kept, ours last).

        No statement_timeout: DuckLake's catalog statements are short, and a role's limit must never fail a lake commit.
        """
        return with_session_options(self.catalog_path.get_secret_value(), 0)

    def describe_catalog(self) -> str:
        """Where the catalog is, for messages: user@host:port/dbname, never the password."""
        return describe_conninfo(self.catalog_path.get_secret_value())


def connection_reason(exc: BaseException) -> str:
    """libpq's reason for a failed connection in one line, with the server it tried (libpq names host and port,
    never the password): 'connection to server at "db", port 5432 failed: Connection refused; Is the server ...'.
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if not isinstance(exc, psycopg.OperationalError):  # an SQL error's further lines quote the statement
        return lines[0]
    return "; ".join(lines).removeprefix("connection failed: ")


def sentence(text: str) -> str:
    """`text` ending with a full stop (or its own ? or !), so a hint can follow."""
    return text if text.endswith((".", "?", "!")) else text + "."


def describe_conninfo(conninfo: str) -> str:
    """user@host:port/dbname of a libpq connection string (key=value or URI), for messages: never its password.

    Unset parts show libpq's defaults (a local socket, 5432); a string libpq cannot parse is "an unparsable DSN".
    """
    try:
        parts = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "an unparsable DSN"
    host = parts.get("host") or parts.get("hostaddr") or "local socket"
    where = f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or '?'}"
    return f"{parts['user']}@{where}" if parts.get("user") else where


class VacuumSettings(_Section):
    enabled: bool = True
    every_n_flushes: int = Field(10, ge=1, le=1_000_000)


# How a flush certifies a batch (flusher/certificate.py): read back from the lake, hashed from the source, or not.
CertificateMode = Literal["lake", "source", "off"]
_CERTIFICATE_WORDS = {"true": "lake", "yes": "lake", "on": "lake", "false": "off", "no": "off"}


def default_concurrency() -> int:
    """One table flush per core, 2 to 4: on 2 cores, 4 at once moved 2.2M rows 25% slower than 2 (bench/README)."""
    return min(4, max(2, os.cpu_count() or 2))


class FlushSettings(_Section):
    concurrency: int = Field(
        default_factory=default_concurrency,
        ge=1,
        le=32,
        description="Tables flushed at once; default one per core (2-4). Each concurrent flush needs its share of "
        "ducklake.memory_limit: 8 at once at 512MB ran out of memory (bench/results/remote-30ms.md).",
    )
    retries: int = Field(2, ge=0, le=10)
    certificate: CertificateMode = Field(
        "lake",
        description="Each table's completeness certificate (row count and digest of the batch) for `verify`: lake "
        "(true) reads the rows back inside the lake transaction, ~9-20% of a large flush on 2 cores "
        "(bench/results/cert-large.md, loopback-large-cert.md); source hashes the same values from the hot rows "
        "instead, which spares a catalog across the network a chain of lookups per table; off (false) records none, "
        "and verify then checks those batches by counts, keys and gaps only.",
    )
    commit_groups: int = Field(
        0,
        ge=0,
        le=32,
        description="0: one lake commit per table. N: the tables are split by size into N groups, each copied in one "
        "DuckDB transaction and ONE lake commit, the N groups at once: far fewer catalog round trips when the catalog "
        "is across the network (bench/results/remote-30ms.md); 1 gives readers one snapshot across all tables. A "
        "table that cannot join (missing, a refused type) flushes on its own; if a group's commit fails, its tables "
        "are flushed one by one instead, in the same run.",
    )
    retry_delay_seconds: float = Field(
        2.0, ge=0, le=3600, description="First retry delay; doubles on each further retry."
    )
    max_ledgers_per_run: int = Field(0, ge=0, le=_INT64, description="Cap per run for catch-up; 0 means no cap.")
    lock_wait_seconds: float = Field(0, ge=0, le=_DAY, description="Wait this long for a running flush, then skip.")
    state_schema: Identifier = "flusher_state"
    tables: list[str] | None = Field(
        None,
        description="Tables to flush; default: every registry table that exists in the hot buffer. With a list, "
        "a known table left out that has rows is reported by status, /health and /metrics.",
    )
    extra_tables: list[str] = Field(
        default_factory=list, description="Added to an explicit `tables` list; redundant with the default (all known)."
    )

    @field_validator("certificate", mode="before")
    @classmethod
    def _certificate_words(cls, value: Any) -> Any:
        """true and false (the setting was a boolean) mean lake and off."""
        if isinstance(value, bool):
            return "lake" if value else "off"
        if isinstance(value, str):
            return _CERTIFICATE_WORDS.get(value.strip().lower(), value.strip().lower())
        return value

    @field_validator("tables")
    @classmethod
    def _tables_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value == []:  # the watermark would advance while nothing moves
            raise ValueError(
                "is empty, so nothing would be flushed; remove the key to flush every known table, or list at least one"
            )
        return value


class MaintenanceSettings(_Section):
    enabled: bool = Field(
        False,
        description="The Go service's meaning: run maintenance right after every Nth completed flush, in the "
        "same flow run, under the flush lock (the bronze-maintenance deployment runs regardless).",
    )
    every_n_flushes: int = Field(
        6, ge=1, le=1_000_000, description="With enabled: maintain after every Nth completed flush (Go: 6)."
    )
    snapshot_retention_days: float = Field(
        7, gt=0, le=_CENTURY_DAYS, description="Snapshots younger than this are never expired."
    )
    file_cleanup_age_hours: float = Field(
        24,
        ge=0,
        le=_CENTURY_DAYS * 24,
        description="Files freed by expired snapshots are deleted once scheduled this long ago.",
    )
    orphan_file_age_hours: float = Field(
        24,
        ge=1,
        le=_CENTURY_DAYS * 24,
        description="Files no snapshot knows are deleted only once this old (never all at once).",
    )
    max_compacted_files: int = Field(50, ge=2, le=1_000_000, description="Bound on the files one merge reads (memory).")


_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class DownstreamConsumer(_Section):
    """A reader of the hot buffer whose checkpoint (a ledger) rows must pass before they may leave PostgreSQL.

    Connection: a `dsn`, or `host`/`port`/`database`/`user`/`password`/`sslmode` (the Go service's form), or the name
    of a prefect-sqlalchemy `block` (resolved into those fields before validation, by flusher.blocks.settings).
    Checkpoint: `table` and `column` (read as max(column)), or a `query` returning one integer.
    """

    name: str | None = Field(None, description="Label in messages and metrics; default: user@host:port/database.")
    dsn: SecretStr | None = Field(None, description="libpq 'host=... dbname=...' or postgresql:// URI.")
    block: str | None = Field(None, description="A prefect-sqlalchemy SqlAlchemyConnector block name.")
    host: str | None = None
    port: int = Field(5432, ge=1, le=65535)
    database: str | None = None
    user: str | None = None
    password: SecretStr = SecretStr("")
    sslmode: SslMode = Field("require", description="The Go service's default for downstream.")
    table: str | None = Field(None, description="Checkpoint table, optionally schema-qualified (schema.table).")
    column: Identifier | None = None
    query: str | None = Field(None, description="Instead of table/column: SQL returning one integer.")
    connect_timeout_seconds: int = Field(10, ge=1, le=300, description="Bound on connecting and on the query.")
    max_lag_ledgers: int | None = Field(
        None,
        ge=1,
        le=_INT64,
        description="/health is 503 when the hot maximum is this far past the checkpoint; "
        "default service.max_lag_ledgers.",
    )

    @field_validator("table")
    @classmethod
    def _table_is_plain(cls, value: str | None) -> str | None:
        if value is not None and not _DOTTED.match(value):
            raise ValueError(f"{value!r} is not a table name (table or schema.table, letters, digits, underscore)")
        return value

    @field_validator("dsn")
    @classmethod
    def _dsn_parses(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            psycopg.conninfo.conninfo_to_dict(value.get_secret_value())
        except psycopg.ProgrammingError:
            raise ValueError(
                "is not a PostgreSQL connection string; use 'host=... dbname=...' or postgresql://..."
            ) from None
        if problem := secrets.uri_userinfo_problem(value.get_secret_value()):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_connection_one_checkpoint(self) -> DownstreamConsumer:
        forms = [f for f in ("dsn", "host", "block") if getattr(self, f)]
        if len(forms) != 1:
            raise ValueError(
                "needs exactly one of dsn, host (with database, user, password) or block; got "
                + (", ".join(forms) or "none")
            )
        if self.host and not self.database:
            raise ValueError("host is set but database is missing")
        if (self.query is None) == (self.table is None):
            raise ValueError("needs either table and column, or query (not both)")
        if self.table and not self.column:
            raise ValueError("table is set but column is missing")
        return self

    def conninfo(self, timeout_seconds: int | None = None) -> str:
        """libpq connection string, password included, with a bounded connect and statement time."""
        timeout = min(self.connect_timeout_seconds, timeout_seconds or self.connect_timeout_seconds)
        extra = {
            "connect_timeout": timeout,
            "application_name": "postgres-ducklake-flusher",
            "options": f"-c statement_timeout={timeout * 1000}",
        }
        if self.dsn is not None:
            return psycopg.conninfo.make_conninfo(self.dsn.get_secret_value(), **extra)
        if self.block:
            raise ConfigError(f"downstream block {self.block!r} was not resolved (use flusher.blocks.settings)")
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.database,
            user=self.user or None,
            password=self.password.get_secret_value() or None,
            sslmode=self.sslmode,
            **extra,
        )

    def secrets(self) -> list[str]:
        """Values to scrub from any message about this consumer."""
        found = [self.password.get_secret_value()]
        if self.dsn is not None:
            found.append(self.dsn.get_secret_value())
            found.append(psycopg.conninfo.conninfo_to_dict(self.dsn.get_secret_value()).get("password") or "")
        return [s for s in found if s]

    def describe(self) -> str:
        """Who this is, without secrets."""
        if self.name:
            return self.name
        if self.block:
            return f"block {self.block}"
        if self.dsn is not None:
            parts = psycopg.conninfo.conninfo_to_dict(self.dsn.get_secret_value())
            where = f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '?')}"
            return f"{parts['user']}@{where}" if parts.get("user") else where
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}/{self.database}"


def _go_downstream_unset(entry: dict[str, Any]) -> bool:
    """The Go service's `downstream:` counts as configured only with host, table and column (IsConfigured)."""
    return not any(entry.get(k) for k in ("host", "dsn", "block", "table", "column", "query"))


def default_threads(queries_at_once: int) -> int:
    """DuckDB threads so that queries running at once use each core once (all cores for one query at a time).

    Each querying thread works on its own query, and DuckDB adds threads - 1 workers shared by all of them. On 2 cores
    with 2 table flushes, 1 thread moved 2.2M rows in 27.2 s against 31.0 s with 2, using less CPU (bench/README).
    """
    return max(1, (os.cpu_count() or 2) - queries_at_once + 1)


class Settings(_Section):
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    postgres: PostgresSettings
    ducklake: DuckLakeSettings
    vacuum: VacuumSettings = Field(default_factory=VacuumSettings)
    flush: FlushSettings = Field(default_factory=FlushSettings)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    downstream: list[DownstreamConsumer] = Field(
        default_factory=list,
        description="Readers of the hot buffer: one mapping (the Go service's form) or a list; a run's watermark "
        "never passes the lowest checkpoint.",
    )

    @field_validator("downstream", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, dict):  # the Go service's single section; an all-empty one means "none"
            return [] if _go_downstream_unset(value) else [value]
        return value


# FLUSHER_* variables the project reads that are not settings: never reported as misspelled settings.
OTHER_ENV = frozenset(
    {
        CONFIG_ENV,
        "FLUSHER_CONFIG_DIR",  # where a run's config_path may point
        "FLUSHER_FAILPOINTS",  # crash tests (flusher.failpoints)
        "FLUSHER_TEST_PG_URI",  # the test suite's PostgreSQL (tests/conftest.py)
        "FLUSHER_TEST_PREFECT_DB",  # the database of the test and benchmark Prefect servers (tests/prefect_database.py)
        "FLUSHER_ALERT_WEBHOOK_URL",  # the alert webhook's address (`alerts`)
    }
)
# What YAML reads as null: an optional key set to one of these is unset (None).
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_DOWNSTREAM_ENTRY = re.compile(r"^FLUSHER_DOWNSTREAM_(\d+)_(\w+)$")
_Loc = tuple[Any, ...]


class _EnvProblem(ValueError):
    """One environment variable that cannot be used; the message names it (never its value)."""


def _field_names(model: type[BaseModel]) -> dict[str, tuple[str, FieldInfo]]:
    """KEY (upper case, as in FLUSHER_SECTION_KEY) -> (field name, field), for each field and each alias."""
    names = {}
    for key, field in model.model_fields.items():
        for name in {key, field.alias or key}:
            names[name.upper()] = (key, field)
    return names


def _section_models() -> dict[str, type[BaseModel]]:
    """The sections that are one mapping (all but `downstream`, which may be a list)."""
    return {
        name: f.annotation
        for name, f in Settings.model_fields.items()
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
    }


def settings_env_names() -> dict[str, tuple[str, str]]:
    """Every FLUSHER_SECTION_KEY variable -> (section, field); downstream's list form is FLUSHER_DOWNSTREAM_<i>_KEY."""
    names = {
        f"{ENV_PREFIX}{section.upper()}_{key}": (section, name)
        for section, model in _section_models().items()
        for key, (name, _) in _field_names(model).items()
    }
    names.update(
        {
            f"{ENV_PREFIX}DOWNSTREAM_{key}": ("downstream", name)
            for key, (name, _) in _field_names(DownstreamConsumer).items()
        }
    )
    return names


def _env_value(name: str, raw: str, field: FieldInfo) -> Any:
    """An environment value for `field`: text stays text (a password is never reinterpreted), YAML's null unsets an
    optional key, a list is a YAML or JSON flow sequence; pydantic converts numbers and booleans and names any misfit.
    """
    annotation = field.annotation
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    if type(None) in options and raw.strip() in _NULLS:
        return None
    if any(get_origin(option) is list for option in options):
        try:
            value = yaml.safe_load(raw)
        except Exception:  # noqa: BLE001 - any parser failure is "not a list"; the message says what to write
            value = None
        if not isinstance(value, list) or any(isinstance(item, (list, dict)) for item in value):
            raise _EnvProblem(
                f"{name}: expects a list of names such as '[trades_row_v1, effects_row_v1]' "
                "(a YAML or JSON flow sequence)"
            )
        return value
    return raw


def _unknown_variable(name: str, candidates: set[str]) -> str:
    upper = name.upper()
    if upper in candidates:
        return f"{name}: environment variable names are upper case; did you mean {upper}?"
    close = difflib.get_close_matches(upper, sorted(candidates), n=1, cutoff=0.8)
    hint = f"did you mean {close[0]}? " if close else ""
    return (
        f"{name}: unknown environment variable ({hint}settings are FLUSHER_<SECTION>_<KEY> with a key of "
        "config.yaml.example; FLUSHER_DOWNSTREAM_<i>_<KEY> for downstream list entry i)"
    )


class _EnvOverlay:
    """The file's mapping with the FLUSHER_* variables on top, where each value came from, and what was wrong."""

    def __init__(self, raw: dict[Any, Any]) -> None:
        self.merged: dict[Any, Any] = {
            section: [dict(v) if isinstance(v, dict) else v for v in values]
            if isinstance(values, list)
            else dict(values)
            if isinstance(values, dict)
            else values
            if values is not None
            else {}
            for section, values in raw.items()  # an empty section (`vacuum:` with its keys commented out): defaults
        }
        self.origins: dict[_Loc, str] = {}  # (section, key) or ("downstream", i, key) -> the variable
        self.problems: list[str] = []

    def set(self, target: Any, loc: _Loc, field_name: str, field: FieldInfo, name: str, value: Any) -> None:
        if not isinstance(target, dict):
            return  # the section or entry is not a mapping: validation names it
        key = field.alias or field_name
        if loc + (key,) in self.origins:
            self.problems.append(f"{name}: {self.origins[loc + (key,)]} sets the same key; set only one of them")
            return
        for spelling in {field_name, key}:  # the file's spelling (schema or schema_name) must not win over ours
            target.pop(spelling, None)
        target[key] = value
        self.origins[loc + (key,)] = name

    def section(self, section: str, empty: Any) -> Any:
        if self.merged.get(section) is None:
            self.merged[section] = empty
        return self.merged[section]


def _apply_env(raw: dict[Any, Any], environ: Mapping[str, str]) -> _EnvOverlay:
    """Override `section.key` with FLUSHER_SECTION_KEY, so secrets need not live in the file; a FLUSHER_* name that
    is no setting (nor in OTHER_ENV) is a problem, as an unknown key in the file is.

    downstream: FLUSHER_DOWNSTREAM_KEY for the Go form (one mapping), FLUSHER_DOWNSTREAM_<i>_KEY for list entry i
    (entries the file lacks are added, so a list may come from the environment alone).
    """
    overlay = _EnvOverlay(raw)
    sections = {section: _field_names(model) for section, model in _section_models().items()}
    consumer = _field_names(DownstreamConsumer)
    known = {f"{ENV_PREFIX}{s.upper()}_{k}" for s, keys in sections.items() for k in keys}
    known |= {f"{ENV_PREFIX}DOWNSTREAM_{k}" for k in consumer} | OTHER_ENV
    single: dict[str, tuple[str, FieldInfo, Any]] = {}  # Go form, by variable
    entries: dict[int, dict[str, tuple[str, FieldInfo, Any]]] = {}
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name in OTHER_ENV:
            continue
        suffix = name[len(ENV_PREFIX) :]
        section, _, key = suffix.partition("_")
        entry = _DOWNSTREAM_ENTRY.match(name)
        try:
            if section.lower() in sections and section.isupper() and key in sections[section.lower()]:
                field_name, field = sections[section.lower()][key]
                value = _env_value(name, environ[name], field)
                overlay.set(overlay.section(section.lower(), {}), (section.lower(),), field_name, field, name, value)
            elif section == "DOWNSTREAM" and key in consumer:
                field_name, field = consumer[key]
                single[name] = (field_name, field, _env_value(name, environ[name], field))
            elif entry and entry[2] in consumer:
                field_name, field = consumer[entry[2]]
                value = _env_value(name, environ[name], field)
                entries.setdefault(int(entry[1]), {})[name] = (field_name, field, value)
            else:
                index = f"{ENV_PREFIX}DOWNSTREAM_{entry[1]}_" if entry else None
                candidates = known | ({index + k for k in consumer} if index else set())
                overlay.problems.append(_unknown_variable(name, candidates))
        except _EnvProblem as exc:
            overlay.problems.append(str(exc))
    _apply_downstream_env(overlay, single, entries)
    return overlay


def _apply_downstream_env(
    overlay: _EnvOverlay,
    single: dict[str, tuple[str, FieldInfo, Any]],
    entries: dict[int, dict[str, tuple[str, FieldInfo, Any]]],
) -> None:
    current = overlay.merged.get("downstream")
    if entries and (single or isinstance(current, dict)):
        names = ", ".join(sorted(single) + sorted(name for found in entries.values() for name in found))
        mapping = "" if single else " with the file's downstream mapping"
        overlay.problems.append(
            f"{names}: list entries (FLUSHER_DOWNSTREAM_<i>_<KEY>) do not mix with one mapping "
            f"(FLUSHER_DOWNSTREAM_<KEY>){mapping}; use one form"
        )
        return
    if single and isinstance(current, list):
        overlay.problems.append(
            f"{', '.join(sorted(single))}: downstream is a list in the file; use "
            "FLUSHER_DOWNSTREAM_<i>_<KEY> for list entry i"
        )
        return
    if single:
        target = overlay.section("downstream", {})
        for name, (field_name, field, value) in single.items():
            overlay.set(target, ("downstream",), field_name, field, name, value)
    if entries:
        target = overlay.section("downstream", [])
        if not isinstance(target, list):
            return  # not a list nor a mapping: validation names it
        target.extend({} for _ in range(len(target), max(entries) + 1))
        for index, found in entries.items():
            if isinstance(target[index], dict):
                target[index] = dict(target[index])
            for name, (field_name, field, value) in found.items():
                overlay.set(target[index], ("downstream", index), field_name, field, name, value)


_SECRET_KEYS = {"password", "catalog_path", "aws_access_key_id", "aws_secret_access_key", "dsn"}
SectionT = TypeVar("SectionT", bound=BaseModel)


def _explain(exc: ValidationError, source: str, origins: Mapping[_Loc, str] | None = None) -> ConfigError:
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        where = ".".join(_shown_key(p) for p in loc)
        variable = next((origins[loc[:n]] for n in (3, 2) if origins and loc[:n] in origins), None)
        if variable:
            where += f" (from {variable})"
        if error["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key (check the spelling against config.yaml.example)")
        elif error["type"] == "missing":
            lines.append(f"{where}: required value is missing")
        else:
            line = f"{where}: {error['msg'].removeprefix('Value error, ')}"
            # never echo a secret back, nor a whole section (it may hold one)
            if not _SECRET_KEYS & {str(p) for p in loc} and not isinstance(error.get("input"), (dict, list)):
                line += f" (got {error.get('input')!r})"
            lines.append(line)
    return ConfigError(f"invalid configuration in {source}:\n  " + "\n  ".join(lines))


def _shown_key(part: Any) -> str:
    """A key as an error message may show it: a plain name or a list index; anything else might be a file's content."""
    return str(part) if isinstance(part, int) or _IDENTIFIER.match(str(part)) else "<a key that is not a plain name>"


def _check_is_config(raw: dict[str, Any], source: str) -> None:
    """Refuse a document none of whose top-level keys is a known section, without echoing any of it.

    A file that is not a flusher config (a run parameter may name any path) must not have its lines shown back as
    "unknown key"s.
    """
    if raw and not set(map(str, raw)) & set(Settings.model_fields):
        raise ConfigError(
            f"{source} is not a flusher configuration: none of its top-level keys is a known section "
            f"({', '.join(Settings.model_fields)}); nothing of it is shown"
        )


def settings_from_mapping(raw: Any, source: str = "config", environ: Mapping[str, str] | None = None) -> Settings:
    """Validate a parsed config mapping (plus environment overrides) into Settings, or raise a ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"invalid configuration in {source}: expected a mapping of sections, got {type(raw).__name__}"
        )
    _check_is_config(raw, source)
    overlay = _apply_env(raw, os.environ if environ is None else environ)
    if overlay.problems:
        raise ConfigError("invalid configuration in the environment:\n  " + "\n  ".join(overlay.problems))
    secrets.remember_mapping(overlay.merged)  # before validation: a refused secret is masked in the error naming it
    try:
        return secrets.remember_settings(Settings.model_validate(overlay.merged))
    except ValidationError as exc:
        raise _explain(exc, source + (" and the environment" if overlay.origins else ""), overlay.origins) from None


def validate_section(model: type[SectionT], values: Mapping[str, Any], source: str) -> SectionT:
    """One section (e.g. DuckLakeSettings) validated on its own, or a ConfigError naming `source` and each refused key.

    Its secret values are remembered first, so that no message shows them, not even one refusing them.
    """
    secrets.remember_mapping(values)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _explain(exc, source) from None


def read_config_file(path: str | os.PathLike[str]) -> Any:
    """The parsed YAML of a config file (not validated yet)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {file}: {exc.strerror}; pass --config with an existing file"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {file} is not UTF-8 text; pass --config with a YAML file") from None
    return parse_config_text(text, str(file))


def parse_config_text(text: str, source: str = "config") -> Any:
    """The parsed YAML of a config's text (not validated yet); a ConfigError for anything PyYAML cannot read."""
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:  # its message quotes the offending line: only the position is shown
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or ""
        why = f": {problem}" if problem and not set(problem) & set("'\"`") else ""  # quotes would quote the file
        raise ConfigError(f"config file {source} is not valid YAML{where}{why}") from None
    except RecursionError:
        raise ConfigError(f"config file {source} is not a config: its YAML is nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - PyYAML raises ValueError, AttributeError... for bad tags and dates
        raise ConfigError(
            f"config file {source} is not valid YAML: a value it cannot read "
            f"({type(exc).__name__}); check tagged values (!!...) and dates"
        ) from None


def load_settings(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Settings:
    """Read and validate a YAML config file."""
    return settings_from_mapping(read_config_file(path), str(Path(path)), environ)
