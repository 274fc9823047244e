"""The DuckLake Bronze block: catalog DSN, data path, names and S3/B2 credentials (secrets masked in the UI)."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class DuckLakeBronze(Block):
    """Where the Bronze layer lives: a DuckLake catalog in PostgreSQL and Parquet files on disk, S3 or B2."""

    _block_type_name = "DuckLake Bronze"
    _block_type_slug = "ducklake-bronze"
    _description = "A DuckLake catalog (PostgreSQL) and data path (local or s3://) for postgres-ducklake-flusher."
    _documentation_url = "https://ducklake.select/docs/stable/duckdb/introduction"

    catalog_path: SecretStr = Field(description="Catalog database: libpq 'host=... dbname=...' or postgresql:// URI.")
    data_path: str = Field(description="Local folder or s3://bucket/prefix/ for the Parquet files.")
    catalog_name: str = Field("bronze_catalog", description="Alias of the attached lake in DuckDB.")
    schema_name: str = Field("bronze", description="Schema of the Bronze tables.")
    metadata_schema: str = Field("bronze_meta", description="Schema of DuckLake's catalog tables.")
    aws_access_key_id: SecretStr | None = Field(None, description="S3/B2 key id.")
    aws_secret_access_key: SecretStr | None = Field(None, description="S3/B2 secret key.")
    aws_region: str | None = Field(None, description="e.g. us-east-1, or us-west-004 for B2.")
    aws_endpoint: str | None = Field(None, description="host[:port] of an S3-compatible service (B2, MinIO).")
    aws_url_style: Literal["vhost", "path"] = "vhost"
    aws_use_ssl: bool = True

    def as_settings(self) -> dict:
        """The `ducklake` section of the flusher's settings, secrets revealed for validation."""
        values = self.model_dump(include=set(type(self).model_fields) - {"block_type_slug"})
        return {k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in values.items() if v is not None}
