"""Storage kind (one decision from data_path) and statuses (enums whose values are the stored strings). No servers."""

from __future__ import annotations

import pytest

from flusher.config import ConfigError, settings_from_mapping
from flusher.statuses import OPEN_BATCH_STATUSES, BatchStatus, LineStatus, RunStatus
from flusher.storage import StorageKind, UnsupportedStorage, storage_kind

GOOD = {
    "postgres": {"host": "db", "database": "stellar_hot"},
    "ducklake": {"catalog_path": "host=db dbname=catalog", "data_path": "s3://bronze/lake"},
}


def _settings(data_path: str):
    return settings_from_mapping({**GOOD, "ducklake": {**GOOD["ducklake"], "data_path": data_path}}, "t.yaml", {})


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("s3://bucket/prefix/", StorageKind.S3),
        ("s3://bucket", StorageKind.S3),
        ("/var/lib/lake", StorageKind.LOCAL),
        ("lake", StorageKind.LOCAL),
        ("./data/s3:/x", StorageKind.LOCAL),  # a colon is no scheme; only "x://" is
    ],
)
def test_storage_kind_is_decided_from_the_data_path(path, kind):
    assert storage_kind(path) is kind
    settings = _settings(path)
    assert settings.ducklake.storage is kind
    assert settings.ducklake.is_remote is (kind is StorageKind.S3)


@pytest.mark.parametrize("path", ["gs://bucket/x", "gcs://bucket/x", "r2://bucket/x", "ftp://host/x", "S3://bucket/x"])
def test_an_unsupported_scheme_is_refused_at_validation_saying_what_to_use(path):
    with pytest.raises(UnsupportedStorage):
        storage_kind(path)
    with pytest.raises(ConfigError) as info:
        _settings(path)
    message = str(info.value)
    scheme = path.split("://")[0]
    assert f"unsupported scheme {scheme}://" in message and "ducklake.data_path" in message
    assert "s3://bucket/prefix/" in message and "aws_endpoint" in message, "says what to use instead"


def test_only_s3_is_remote():
    assert [k for k in StorageKind if k.remote] == [StorageKind.S3]


def test_status_values_are_the_strings_stored_and_shown():
    # Written to runs.status / table_batches.status and read by the query API, dashboards and operators: fixed.
    assert {s.name: str(s) for s in RunStatus} == {
        "RUNNING": "running",
        "COMPLETED": "completed",
        "FAILED": "failed",
        "ABANDONED": "abandoned",
        "EMPTY": "empty",
        "DRY_RUN": "dry-run",
        "SKIPPED": "skipped",
    }
    assert {s.name: str(s) for s in BatchStatus} == {
        "PENDING": "pending",
        "COMMITTED": "committed",
        "CONFIRMED": "confirmed",
        "FAILED": "failed",
        "UNDONE": "undone",
    }
    assert {s.name: str(s) for s in LineStatus} == {
        "FLUSHED": "flushed",
        "EMPTY": "empty",
        "FAILED": "failed",
        "DEFERRED": "deferred",
    }
    assert RunStatus.COMPLETED == "completed" and f"{BatchStatus.CONFIRMED}" == "confirmed"


def test_open_batches_match_the_partial_index_in_the_state_schema():
    from importlib import resources

    ddl = resources.files("flusher.schema").joinpath("flusher_state.sql").read_text()
    statuses = ", ".join(f"'{s}'" for s in OPEN_BATCH_STATUSES)
    assert f"WHERE status IN ({statuses})" in ddl


def test_only_flushed_and_empty_lines_are_ok():
    assert {s for s in LineStatus if s.ok} == {LineStatus.FLUSHED, LineStatus.EMPTY}
