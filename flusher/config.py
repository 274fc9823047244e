"""Typed settings, loaded and validated once from YAML (the Go service's format) or from Prefect blocks."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg.conninfo
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

ENV_PREFIX = "FLUSHER_"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(ValueError):
    """A configuration value is wrong; the message says which and what to do."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a plain SQL identifier (letters, digits, underscore)")
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]


class ServiceSettings(_Section):
    name: str = "postgres-ducklake-flusher"
    health_port: int = Field(8089, ge=0, le=65535, description="/health and /metrics; 0 picks a free port.")
    health_host: str = Field("0.0.0.0", description="Address the health server binds.")
    unhealthy_after_failures: int = Field(3, ge=1, description="/health is 503 after this many failed flushes in a row.")
    max_lag_ledgers: int = Field(1000, ge=1, description="/health is 503 when the hot buffer is this far ahead.")
    shutdown_timeout_seconds: float = Field(600, ge=0, description="How long shutdown waits for a flush in flight.")
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
    connect_timeout_seconds: int = Field(10, ge=1)
    statement_timeout_seconds: int = Field(900, ge=1, description="Bound on any one DELETE/VACUUM statement.")
    lock_timeout_seconds: int = Field(30, ge=1, description="How long a DELETE waits for row locks before giving up.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    def conninfo(self) -> str:
        """A libpq connection string (password included) for psycopg and DuckDB."""
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
    catalog_path: SecretStr = Field(description="PostgreSQL catalog: libpq 'host=... dbname=...' or postgresql:// URI.")
    data_path: str = Field(description="Where Parquet files go: a local folder or s3://bucket/prefix/.")
    catalog_name: Identifier = "bronze_catalog"
    schema_name: Identifier = "bronze"
    metadata_schema: Identifier = "bronze_meta"
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_region: str | None = None
    aws_endpoint: str | None = Field(None, description="host[:port] of an S3-compatible service (B2, MinIO).")
    aws_url_style: Literal["vhost", "path"] = "vhost"
    aws_use_ssl: bool = True
    threads: int | None = Field(
        None, ge=1, le=256,
        description="DuckDB threads shared by all table flushes; null: the cores the concurrent flushes leave, plus one.",
    )
    memory_limit: str = Field(
        "512MB", description="DuckDB memory_limit, e.g. 512MB; the process peaks about 350 MiB above it (Python, Prefect)."
    )
    allow_catalog_migration: bool = Field(False, description="Let DuckLake migrate an older catalog format.")
    partition_by: Identifier | None = Field(
        "ledger_range", description="Column the Bronze tables are partitioned by; null leaves partitioning alone."
    )
    parquet_compression: Literal["snappy", "zstd", "lz4", "lz4_raw", "gzip", "brotli", "uncompressed"] | None = Field(
        None, description="Compression of the Parquet files the flusher writes; null keeps the lake's (DuckLake: snappy)."
    )
    parquet_row_group_size: int | None = Field(
        32768, ge=2048,
        description="Rows per Parquet row group; null keeps the lake's (DuckLake: 122880). 32768 flushed 2.2M rows "
                    "in 26.7 s against 32.9 s, with files of the same size (bench/results/parquet-large.md).",
    )
    data_inlining_row_limit: int | None = Field(
        None, ge=0, description="Inserts of fewer rows go into the catalog, not a file (0 = never; null = DuckLake's 10)."
    )

    @field_validator("catalog_path")
    @classmethod
    def _catalog_is_postgres(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value().removeprefix("ducklake:").removeprefix("postgres:")
        try:
            parts = psycopg.conninfo.conninfo_to_dict(raw)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"not a PostgreSQL connection string ({exc}); use 'host=... dbname=...'") from None
        if not parts.get("dbname"):
            raise ValueError("names no database; add dbname=... (or /dbname to the URI)")
        return SecretStr(raw)

    @field_validator("data_path")
    @classmethod
    def _data_path_usable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty; give a local folder or s3://bucket/prefix/")
        if "://" in value and not value.startswith(("s3://", "r2://", "gcs://", "gs://")):
            raise ValueError(f"{value!r} has an unsupported scheme; use a local folder or s3://bucket/prefix/")
        return value if value.endswith("/") else value + "/"

    @property
    def is_remote(self) -> bool:
        return "://" in self.data_path

    def catalog_conninfo(self) -> str:
        return self.catalog_path.get_secret_value()


class VacuumSettings(_Section):
    enabled: bool = True
    every_n_flushes: int = Field(10, ge=1)


def default_concurrency() -> int:
    """One table flush per core, 2 to 4: on 2 cores, 4 at once moved 2.2M rows 25% slower than 2 (bench/README)."""
    return min(4, max(2, os.cpu_count() or 2))


class FlushSettings(_Section):
    concurrency: int = Field(
        default_factory=default_concurrency, ge=1, le=32,
        description="Tables flushed at once; default one per core (2-4). More helps when storage is remote.",
    )
    retries: int = Field(2, ge=0, le=10)
    retry_delay_seconds: float = Field(2.0, ge=0, description="First retry delay; doubles on each further retry.")
    max_ledgers_per_run: int = Field(0, ge=0, description="Cap per run for catch-up; 0 means no cap.")
    lock_wait_seconds: float = Field(0, ge=0, description="Wait this long for a running flush, then skip.")
    state_schema: Identifier = "flusher_state"
    tables: list[str] | None = Field(
        None, description="Tables to flush; default: every registry table that exists in the hot buffer. With a list, "
                          "a known table left out that has rows is reported by status, /health and /metrics.",
    )
    extra_tables: list[str] = Field(
        default_factory=list, description="Added to an explicit `tables` list; redundant with the default (all known)."
    )


class MaintenanceSettings(_Section):
    enabled: bool = Field(
        False, description="The Go service's meaning: run maintenance right after every Nth completed flush, in the "
                           "same flow run, under the flush lock (the bronze-maintenance deployment runs regardless).",
    )
    every_n_flushes: int = Field(6, ge=1, description="With enabled: maintain after every Nth completed flush (Go: 6).")
    snapshot_retention_days: float = Field(7, gt=0, description="Snapshots younger than this are never expired.")
    file_cleanup_age_hours: float = Field(
        24, ge=0, description="Files freed by expired snapshots are deleted once scheduled this long ago."
    )
    orphan_file_age_hours: float = Field(
        24, ge=1, description="Files no snapshot knows are deleted only once this old (never all at once)."
    )
    max_compacted_files: int = Field(50, ge=2, description="Bound on the files one merge reads (memory).")


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


def _apply_env(raw: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """Override `section.key` with FLUSHER_SECTION_KEY, so secrets need not live in the file."""
    merged = {section: dict(values or {}) for section, values in raw.items()}
    for section, model in Settings.model_fields.items():
        annotation = model.annotation
        if not isinstance(annotation, type) or not issubclass(annotation, BaseModel):
            continue
        for key, field in annotation.model_fields.items():
            for name in {key, field.alias or key}:
                value = environ.get(f"{ENV_PREFIX}{section}_{name}".upper())
                if value is not None:
                    merged.setdefault(section, {})[name] = value
    return merged


_SECRET_KEYS = {"password", "catalog_path", "aws_access_key_id", "aws_secret_access_key"}


def _explain(exc: ValidationError, source: str) -> ConfigError:
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key (check the spelling against config.yaml.example)")
        elif error["type"] == "missing":
            lines.append(f"{where}: required value is missing")
        else:
            line = f"{where}: {error['msg'].removeprefix('Value error, ')}"
            if not _SECRET_KEYS & {str(p) for p in error["loc"]}:  # never echo a secret back
                line += f" (got {error.get('input')!r})"
            lines.append(line)
    return ConfigError(f"invalid configuration in {source}:\n  " + "\n  ".join(lines))


def settings_from_mapping(raw: dict[str, Any], source: str = "config", environ: dict[str, str] | None = None) -> Settings:
    """Validate a parsed config mapping (plus environment overrides) into Settings."""
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration in {source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Settings.model_validate(_apply_env(raw, dict(os.environ if environ is None else environ)))
    except ValidationError as exc:
        raise _explain(exc, source) from None


def load_settings(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Settings:
    """Read and validate a YAML config file."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}; pass --config with an existing file") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {file} is not valid YAML: {exc}") from None
    return settings_from_mapping(raw, str(file), environ)
