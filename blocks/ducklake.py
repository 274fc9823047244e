"""The DuckLake Bronze block: where the lake is and its credentials; it builds the lake's settings and session.

Like Prefect's own integrations (prefect-sqlalchemy's `SqlAlchemyConnector.get_engine()`, prefect-aws'
`AwsCredentials.get_boto3_session()`), the block builds what it holds: `get_settings()` gives the validated
`DuckLakeSettings` (secrets stay `SecretStr`), `open_lake(postgres)` an open `LakeSession`. Its fields are described
once, in `DuckLakeSettings` (flusher/config.py): the block takes their descriptions and defaults from there.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from flusher.config import ConfigError, DuckLakeSettings, PostgresSettings, Settings, validate_section
from flusher.lake import LakeSession

# DuckLakeSettings fields the block does not hold, and why. A new settings field must be added to the block or here
# (tests/unit/test_blocks.py checks it).
NOT_IN_BLOCK = {
    name: "run tuning, not where the lake is nor a credential: it stays in the config file (a block's value would "
    "override the file's)"
    for name in (
        "threads",
        "memory_limit",
        "allow_catalog_migration",
        "partition_by",
        "parquet_compression",
        "parquet_row_group_size",
        "data_inlining_row_limit",
    )
}


def _setting(name: str, title: str) -> Any:
    """A block field with the DuckLakeSettings field's description and default (required if it is required there)."""
    source = DuckLakeSettings.model_fields[name]
    default = ... if source.is_required() else source.default
    return Field(default, title=title, description=source.description)


class DuckLakeBronze(Block):
    """Where the Bronze layer lives: a DuckLake catalog in PostgreSQL and Parquet files on disk, S3, B2 or MinIO.

    The catalog DSN and the S3 keys are secrets: the UI and the API show them as `********`.

    Examples:
        Load a saved block and get the lake's validated settings, or open the lake:
        ```python
        from flusher.blocks.ducklake import DuckLakeBronze
        from flusher.config import PostgresSettings

        ducklake_bronze = DuckLakeBronze.load("BLOCK_NAME")
        settings = ducklake_bronze.get_settings()
        print(settings.data_path, settings.describe_catalog())

        with ducklake_bronze.open_lake(PostgresSettings(database="hot")) as lake:
            print(lake.cursor().execute(f"SELECT count(*) FROM {lake.table('ledgers_row_v2')}").fetchone())
        ```
    """

    _block_type_name = "DuckLake Bronze"
    _block_type_slug = "ducklake-bronze"
    _description = (
        "A DuckLake catalog (PostgreSQL) and data path (local folder or s3://) with its S3/B2 credentials, "
        "for postgres-ducklake-flusher."
    )
    _documentation_url = "https://ducklake.select/docs/stable/duckdb/introduction"
    # DuckDB's logo from its repository, at a fixed commit so the address never moves.
    _logo_url = (
        "https://raw.githubusercontent.com/duckdb/duckdb/0c84c145cc5a6c012db896b41d88367e3090ec86/logo/duckdb-logo.png"
    )

    catalog_path: SecretStr = _setting("catalog_path", "Catalog DSN")
    data_path: str = _setting("data_path", "Data path")
    catalog_name: str = _setting("catalog_name", "Catalog alias")
    schema_name: str = _setting("schema_name", "Schema")
    metadata_schema: str = _setting("metadata_schema", "Metadata schema")
    aws_access_key_id: SecretStr | None = _setting("aws_access_key_id", "S3 key id")
    aws_secret_access_key: SecretStr | None = _setting("aws_secret_access_key", "S3 secret key")
    aws_region: str | None = _setting("aws_region", "S3 region")
    aws_endpoint: str | None = _setting("aws_endpoint", "S3 endpoint")
    aws_url_style: Literal["vhost", "path"] = _setting("aws_url_style", "S3 URL style")
    aws_use_ssl: bool = _setting("aws_use_ssl", "S3 over HTTPS")

    @classmethod
    def lake_fields(cls) -> tuple[str, ...]:
        """The DuckLakeSettings fields this block holds (all but NOT_IN_BLOCK)."""
        return tuple(name for name in DuckLakeSettings.model_fields if name in cls.model_fields)

    @classmethod
    def from_settings(cls, settings: DuckLakeSettings) -> DuckLakeBronze:
        """A block holding the lake fields of `settings` (what the `blocks` command saves); secrets stay SecretStr."""
        return cls(**settings.model_dump(include=set(cls.lake_fields())))

    def get_settings(self, **tuning: Any) -> DuckLakeSettings:
        """The lake's validated settings: this block's fields, with `tuning` for the fields it does not hold
        (NOT_IN_BLOCK, e.g. memory_limit="1GB"; their defaults otherwise).

        Secrets stay SecretStr. A bad value is a ConfigError naming the block and the field, never showing a secret.
        """
        held = sorted(set(tuning) & set(self.lake_fields()))
        if held:
            raise ConfigError(f"{', '.join(held)}: held by the {self._describe()}; change the block instead")
        values = {name: getattr(self, name) for name in self.lake_fields() if getattr(self, name) is not None}
        return validate_section(DuckLakeSettings, {**tuning, **values}, self._describe())

    def open_lake(
        self, postgres: PostgresSettings, *, attach_hot: bool = True, threads: int | None = None, **tuning: Any
    ) -> LakeSession:
        """A LakeSession on this lake, with the hot buffer (`postgres`) attached read-only unless attach_hot=False.

        Close it (or use it as a context manager). `threads` and `tuning` as for LakeSession and get_settings.
        """
        settings = Settings(postgres=postgres, ducklake=self.get_settings(**tuning))
        return LakeSession(settings, attach_hot=attach_hot, threads=threads)

    def _describe(self) -> str:
        name = getattr(self, "_block_document_name", None)
        return f"{self._block_type_name} block {name!r}" if name else f"{self._block_type_name} block (not saved)"
