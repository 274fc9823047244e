"""Blocks saved to and loaded from a Prefect API (the in-process harness): secrets masked, settings resolved from them.

The end-to-end flush from blocks (the `blocks` CLI command, then a run from the blocks alone) is in
tests/server/test_blocks.py: it needs a real PostgreSQL.
"""

from __future__ import annotations

import pytest
import yaml
from prefect.client.orchestration import get_client

from flusher.app.register_blocks import save_blocks
from flusher.blocks.ducklake import DuckLakeBronze
from flusher.blocks.settings import resolve_settings
from flusher.config import ConfigError, settings_from_mapping

pytestmark = pytest.mark.usefixtures("prefect_harness")

PG_PASSWORD = "pw-hot-h4rn3ss"
CATALOG_PASSWORD = "pw-catalog-h4rn3ss"
KEY_ID = "key-id-h4rn3ss"
SECRET_KEY = "sk-h4rn3ss-bronze"
CATALOG = f"host=catalog-db port=5433 dbname=catalog user=lake password={CATALOG_PASSWORD}"
SECRETS = (PG_PASSWORD, CATALOG_PASSWORD, KEY_ID, SECRET_KEY)


def stored(name: str, slug: str) -> str:
    """The block document as the API returns it to the UI (secrets not included)."""
    with get_client(sync_client=True) as client:
        return str(client.read_block_document_by_name(name, slug, include_secrets=False).data)


def a_lake_block(**fields) -> DuckLakeBronze:
    values = {
        "catalog_path": CATALOG,
        "data_path": "s3://bronze/lake/",
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET_KEY,
        "aws_region": "us-west-004",
        "aws_endpoint": "s3.us-west-004.backblazeb2.com",
    }
    return DuckLakeBronze(**{**values, **fields})


def test_a_saved_block_is_masked_in_the_api_and_loads_back_its_settings():
    a_lake_block().save("harness-lake", overwrite=True)

    shown = stored("harness-lake", "ducklake-bronze")
    assert not [s for s in SECRETS if s in shown], shown
    assert "********" in shown and "s3.us-west-004.backblazeb2.com" in shown

    settings = DuckLakeBronze.load("harness-lake").get_settings()
    assert settings.catalog_path.get_secret_value() == CATALOG
    assert settings.aws_access_key_id.get_secret_value() == KEY_ID
    assert settings.aws_secret_access_key.get_secret_value() == SECRET_KEY
    assert (settings.data_path, settings.aws_region) == ("s3://bronze/lake/", "us-west-004")


def test_the_blocks_command_saves_blocks_a_run_resolves_to_the_same_settings(tmp_path):
    config = {
        "postgres": {"host": "hot-db", "port": 6543, "database": "hot", "user": "flusher", "password": PG_PASSWORD},
        "ducklake": {"catalog_path": CATALOG, "data_path": str(tmp_path / "lake"), "schema_name": "raw"},
    }
    settings = settings_from_mapping(config, "test", environ={})
    saved = save_blocks(settings, "harness-pg", "harness-lake-2")
    assert saved[0].startswith("saved sqlalchemy-connector/harness-pg (flusher@hot-db:6543/hot)"), saved
    assert stored("harness-pg", "sqlalchemy-connector").count(PG_PASSWORD) == 0
    assert CATALOG_PASSWORD not in stored("harness-lake-2", "ducklake-bronze")

    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump({"vacuum": {"enabled": False}}))
    resolved = resolve_settings(str(bare), "harness-pg", "harness-lake-2")
    assert resolved.postgres.password.get_secret_value() == PG_PASSWORD
    assert resolved.postgres.describe() == "flusher@hot-db:6543/hot"
    assert resolved.ducklake == settings.ducklake
    assert resolved.vacuum.enabled is False


def test_the_block_wins_for_where_the_lake_is_and_the_file_keeps_its_tuning(tmp_path, monkeypatch):
    a_lake_block(schema_name="bronze_b").save("harness-lake-3", overwrite=True)
    config = tmp_path / "c.yaml"
    file_catalog = "host=file-db dbname=other user=x password=pw-in-the-file"
    config.write_text(
        yaml.safe_dump(
            {
                "postgres": {"database": "hot"},
                "ducklake": {
                    "catalog_path": file_catalog,
                    "data_path": "/file/lake",
                    "memory_limit": "1GB",
                    "threads": 2,
                },
            }
        )
    )
    lake = resolve_settings(str(config), ducklake_block="harness-lake-3").ducklake
    assert lake.catalog_path.get_secret_value() == CATALOG
    assert (lake.data_path, lake.schema_name) == ("s3://bronze/lake/", "bronze_b")
    assert (lake.memory_limit, lake.threads) == ("1GB", 2)

    monkeypatch.setenv("FLUSHER_DUCKLAKE_AWS_REGION", "eu-central-003")  # the environment still wins over both
    assert resolve_settings(str(config), ducklake_block="harness-lake-3").ducklake.aws_region == "eu-central-003"


def test_a_bad_value_in_a_saved_block_is_refused_naming_the_block_never_its_secret(tmp_path):
    a_lake_block(catalog_path=f"host=db user=lake password={CATALOG_PASSWORD}").save("harness-bad", overwrite=True)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"postgres": {"database": "hot"}}))
    with pytest.raises(ConfigError) as refused:
        resolve_settings(str(config), ducklake_block="harness-bad")
    message = str(refused.value)
    assert "DuckLake Bronze block 'harness-bad'" in message and "catalog_path: names no database" in message
    assert CATALOG_PASSWORD not in message, message
