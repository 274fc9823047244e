"""The DuckLake Bronze block without any Prefect API: described once, builds validated settings, refuses bad values."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from flusher.blocks.ducklake import NOT_IN_BLOCK, DuckLakeBronze
from flusher.config import ConfigError, DuckLakeSettings, load_settings

CATALOG_PASSWORD = "pw-catalog-8f3k"
SECRET_KEY = "sk-bronze-5d9x"
CATALOG = f"host=db port=5432 dbname=catalog user=lake password={CATALOG_PASSWORD}"


def a_block(**fields) -> DuckLakeBronze:
    values = {
        "catalog_path": CATALOG,
        "data_path": "s3://bronze/lake",
        "aws_access_key_id": "key-id-1234",
        "aws_secret_access_key": SECRET_KEY,
        "aws_region": "us-west-004",
    }
    return DuckLakeBronze(**{**values, **fields})


def block_fields() -> set[str]:
    return set(DuckLakeBronze.model_fields) - {"block_type_slug"}  # Prefect's own field on every block


def test_every_block_field_is_a_setting_with_its_description_and_default():
    settings = DuckLakeSettings.model_fields
    assert block_fields() == set(DuckLakeBronze.lake_fields())
    for name in block_fields():
        assert name in settings, f"block field {name} is no DuckLakeSettings field"
        field, source = DuckLakeBronze.model_fields[name], settings[name]
        assert field.description, f"DuckLakeSettings.{name} has no description"
        assert field.description == source.description, name
        assert field.title, name
        assert field.is_required() == source.is_required(), name
        if not source.is_required():
            assert field.default == source.default, name
        if "SecretStr" in str(source.annotation):  # masked in the UI and the API, as in the settings
            assert "SecretStr" in str(field.annotation), f"block field {name} must be a SecretStr"


def test_every_lake_setting_is_on_the_block_or_excluded_with_a_reason():
    settings = set(DuckLakeSettings.model_fields)
    missing = settings - block_fields() - set(NOT_IN_BLOCK)
    assert not missing, f"DuckLakeSettings fields neither on the block nor in NOT_IN_BLOCK: {sorted(missing)}"
    assert not set(NOT_IN_BLOCK) & block_fields(), "a field on the block is also excluded"
    assert set(NOT_IN_BLOCK) <= settings, "NOT_IN_BLOCK names fields DuckLakeSettings does not have"
    assert all(reason.strip() for reason in NOT_IN_BLOCK.values())


def test_get_settings_gives_the_validated_settings_with_secrets_kept_secret():
    settings = a_block().get_settings(memory_limit="1GB")
    assert isinstance(settings, DuckLakeSettings)
    assert isinstance(settings.catalog_path, SecretStr)
    assert isinstance(settings.aws_secret_access_key, SecretStr)
    assert settings.catalog_path.get_secret_value() == CATALOG
    assert settings.aws_secret_access_key.get_secret_value() == SECRET_KEY
    assert settings.data_path == "s3://bronze/lake/"  # normalised as the config file's would be
    assert settings.memory_limit == "1GB"
    assert settings.catalog_name == "bronze_catalog"
    assert CATALOG_PASSWORD not in repr(settings) and SECRET_KEY not in repr(settings)


def test_from_settings_and_get_settings_round_trip(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "postgres: {database: hot}\n"
        f"ducklake: {{catalog_path: '{CATALOG}', data_path: /lake, schema_name: raw, memory_limit: 2GB}}\n"
    )
    lake = load_settings(config, environ={}).ducklake
    block = DuckLakeBronze.from_settings(lake)
    assert isinstance(block.catalog_path, SecretStr)
    assert block.get_settings(memory_limit="2GB") == lake


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"catalog_path": f"host=db user=lake password={CATALOG_PASSWORD}"}, "catalog_path: names no database"),
        ({"catalog_path": f"host='db password={CATALOG_PASSWORD}"}, "catalog_path: not a PostgreSQL connection"),
        ({"catalog_path": f"postgresql://lake:{CATALOG_PASSWORD}/x@db/catalog"}, "catalog_path: the URI's password"),
        ({"data_path": "ftp://bronze/"}, "data_path: unsupported scheme ftp://"),
        ({"schema_name": "bronze; drop"}, "schema_name: 'bronze; drop' is not a plain SQL identifier"),
    ],
)
def test_a_bad_value_is_refused_naming_the_block_and_field_never_a_secret(fields, named):
    with pytest.raises(ConfigError) as refused:
        a_block(**fields).get_settings()
    message = str(refused.value)
    assert message.startswith("invalid configuration in DuckLake Bronze block (not saved):"), message
    assert named in message, message
    assert CATALOG_PASSWORD not in message and SECRET_KEY not in message, message


def test_tuning_cannot_override_what_the_block_holds():
    with pytest.raises(ConfigError, match="data_path: held by the DuckLake Bronze block"):
        a_block().get_settings(data_path="/elsewhere")
