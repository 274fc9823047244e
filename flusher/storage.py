"""Where the lake's Parquet files live, decided once from `ducklake.data_path` (no I/O here)."""

from __future__ import annotations

from enum import StrEnum

S3_SCHEME = "s3://"
# What to tell someone whose path names a scheme DuckLake could reach but the flusher does not set up (no secret,
# no preflight listing, no cleanup rules): every S3-compatible service goes through s3:// with an endpoint.
SUPPORTED = (
    "use a local folder or s3://bucket/prefix/ (Backblaze B2, Cloudflare R2, MinIO and Google Cloud Storage through "
    "s3:// with ducklake.aws_endpoint set to their S3-compatible endpoint, e.g. storage.googleapis.com with HMAC keys)"
)


class StorageKind(StrEnum):
    LOCAL = "local"  # a folder on this host
    S3 = "s3"  # an S3-compatible object store (AWS S3, B2, R2, MinIO) with the ducklake.aws_* settings

    @property
    def remote(self) -> bool:
        """Reached over the network (httpfs, a secret, a preflight listing); a local folder is none of that."""
        return self is not StorageKind.LOCAL


class UnsupportedStorage(ValueError):
    """The data path names a scheme the flusher cannot configure; the message says what to use instead."""


def storage_kind(data_path: str) -> StorageKind:
    """The kind of storage `data_path` names: a URL scheme (`x://`) must be s3://, anything else is a local folder.

    Case-sensitive, as DuckDB's secret scopes are: `S3://` is refused rather than silently left without credentials.
    """
    if data_path.startswith(S3_SCHEME):
        return StorageKind.S3
    if "://" in data_path:
        scheme = data_path.split("://", 1)[0]
        raise UnsupportedStorage(f"unsupported scheme {scheme}://; {SUPPORTED}")
    return StorageKind.LOCAL
