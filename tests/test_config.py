"""Configuration: each bad input gives a message that says what is wrong and what to do. No servers needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flusher.config import ConfigError, load_settings, settings_from_mapping
from flusher.registry import selected_tables

ROOT = Path(__file__).resolve().parent.parent
GOOD = {
    "postgres": {"host": "db", "database": "stellar_hot", "user": "stellar", "password": "pw"},
    "ducklake": {"catalog_path": "host=db dbname=catalog user=stellar", "data_path": "s3://bronze/lake"},
}


def _with(section: str, **values) -> dict:
    raw = {k: dict(v) for k, v in GOOD.items()}
    raw.setdefault(section, {}).update(values)
    return raw


def _error(raw: dict, environ: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(raw, "test.yaml", environ or {})
    return str(info.value)


def test_the_example_config_is_valid_and_keeps_the_go_services_defaults():
    settings = load_settings(ROOT / "config.yaml.example", environ={})
    assert settings.service.health_port == 8089
    assert settings.service.flush_interval_minutes == 10
    assert settings.vacuum.enabled and settings.vacuum.every_n_flushes == 10
    assert settings.postgres.sslmode == "disable"
    assert settings.ducklake.metadata_schema == "bronze_meta"
    assert len(selected_tables(settings.flush)) == 21, "every known table, like the Go service's 21"


def test_flush_concurrency_defaults_to_one_table_per_core_within_2_to_4(monkeypatch):
    for cores, expected in ((1, 2), (2, 2), (3, 3), (16, 4), (None, 2)):
        monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
        assert settings_from_mapping(GOOD, "test.yaml", {}).flush.concurrency == expected
    assert settings_from_mapping(_with("flush", concurrency=8), "test.yaml", {}).flush.concurrency == 8


def test_duckdb_threads_default_to_the_cores_the_queries_at_once_leave(monkeypatch):
    from flusher.config import default_threads

    for cores, at_once, expected in ((2, 2, 1), (8, 4, 5), (4, 8, 1), (None, 2, 1), (2, 1, 2), (8, 1, 8)):
        monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
        assert default_threads(at_once) == expected
    assert settings_from_mapping(GOOD, "test.yaml", {}).ducklake.threads is None  # resolved where DuckDB starts
    assert settings_from_mapping(_with("ducklake", threads=3), "test.yaml", {}).ducklake.threads == 3


@pytest.mark.parametrize("minutes", [0, 4, 61, 1440])
def test_flush_interval_outside_5_to_60_is_rejected(minutes):
    message = _error(_with("service", flush_interval_minutes=minutes))
    assert "service.flush_interval_minutes" in message and "5" in message and str(minutes) in message


def test_unknown_keys_are_named():
    message = _error(_with("vacuum", every_n_flushs=3))
    assert "vacuum.every_n_flushs: unknown key" in message
    assert "unknown key" in _error({**GOOD, "servce": {}})


def test_missing_required_values_are_named():
    raw = _with("postgres")
    del raw["postgres"]["database"]
    assert "postgres.database: required value is missing" in _error(raw)
    assert "ducklake: required value is missing" in _error({"postgres": GOOD["postgres"]})


@pytest.mark.parametrize("path", ["host=db user=x", "not a = valid = dsn", "postgresql://db:5432"])
def test_a_bad_catalog_path_is_rejected_without_echoing_it(path):
    message = _error(_with("ducklake", catalog_path=path))
    assert "ducklake.catalog_path" in message
    assert path not in message, "the catalog path may hold a password"


def test_a_data_path_with_an_unsupported_scheme_is_rejected():
    assert "unsupported scheme" in _error(_with("ducklake", data_path="ftp://host/lake"))


def test_identifiers_must_be_plain():
    assert "plain SQL identifier" in _error(_with("ducklake", schema_name="bronze; DROP SCHEMA x"))


def test_secrets_come_from_the_environment_and_never_print():
    raw = _with("postgres", password="in-file")
    settings = settings_from_mapping(raw, "t", {"FLUSHER_POSTGRES_PASSWORD": "from-env", "FLUSHER_DUCKLAKE_AWS_SECRET_ACCESS_KEY": "k"})
    assert settings.postgres.password.get_secret_value() == "from-env"
    assert settings.ducklake.aws_secret_access_key.get_secret_value() == "k"
    assert "from-env" not in repr(settings) and "from-env" not in str(settings.model_dump())


def test_environment_overrides_are_validated_too():
    assert "service.flush_interval_minutes" in _error(GOOD, {"FLUSHER_SERVICE_FLUSH_INTERVAL_MINUTES": "2"})


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("service: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text(yaml.safe_dump(["a", "b"]))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_settings(listing)


def test_unknown_tables_and_subsets_are_explained():
    settings = settings_from_mapping(_with("flush", tables=["ledgers_row_v2", "ledgers_row_v9"]), "t", {})
    with pytest.raises(ConfigError, match="ledgers_row_v9.*not in the registry.*known tables: ledgers_row_v2, "):
        selected_tables(settings.flush)
    settings = settings_from_mapping(_with("flush", tables=["ledgers_row_v2"]), "t", {})
    with pytest.raises(ConfigError, match="not among the configured tables"):
        selected_tables(settings.flush, ["token_transfers_stream_v1"])
    with pytest.raises(ConfigError, match="trades_row_v9.*known tables"):
        selected_tables(settings_from_mapping(GOOD, "t", {}).flush, ["trades_row_v9"])
    later = settings_from_mapping(_with("flush", tables=["ledgers_row_v2"], extra_tables=["token_transfers_stream_v1"]),
                                  "t", {})
    assert [t.name for t in selected_tables(later.flush)] == ["ledgers_row_v2", "token_transfers_stream_v1"]


def test_by_default_every_known_table_is_flushed_and_a_list_reports_what_it_leaves_out():
    from flusher.registry import is_default_selection, registry, unselected_tables

    default = settings_from_mapping(GOOD, "t", {}).flush
    names = [t.name for t in selected_tables(default)]
    assert names == list(registry()) and {"contract_creations_v1", "token_transfers_stream_v1"} <= set(names)
    assert is_default_selection(default) and unselected_tables(default) == []
    assert not is_default_selection(default, ["ledgers_row_v2"]), "a table a run names must exist"
    listed = settings_from_mapping(_with("flush", tables=["ledgers_row_v2", "trades_row_v1"]), "t", {}).flush
    assert not is_default_selection(listed)
    assert len(unselected_tables(listed)) == 19 and "contract_creations_v1" in {t.name for t in unselected_tables(listed)}


# The Go service's config at HEAD (obsrvr-lake/postgres-ducklake-flusher, config.yaml): its sections, keys and values.
GO_CONFIG = """\
service:
  name: postgres-ducklake-flusher
  health_port: 8089
  flush_interval_minutes: 10

postgres:
  host: localhost
  port: 5434
  database: stellar_hot
  user: stellar
  password: stellar_dev_password
  sslmode: disable

ducklake:
  catalog_path: "postgresql://user:pass@host:5432/catalog_db"
  data_path: "s3://bucket-name/path/"
  catalog_name: testnet_catalog
  schema_name: bronze
  metadata_schema: bronze_meta
  aws_access_key_id: "key"
  aws_secret_access_key: "secret"
  aws_region: us-west-004
  aws_endpoint: s3.us-west-004.backblazeb2.com

vacuum:
  enabled: true
  every_n_flushes: 10

maintenance:
  enabled: true
  every_n_flushes: 6
  max_compacted_files: 200
"""


def test_the_go_services_config_validates_with_its_maintenance_section(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(GO_CONFIG)
    settings = load_settings(path, environ={})
    m = settings.maintenance
    assert (m.enabled, m.every_n_flushes, m.max_compacted_files) == (True, 6, 200)
    assert settings.vacuum.every_n_flushes == 10 and settings.ducklake.catalog_name == "testnet_catalog"
    assert settings_from_mapping(GOOD, "t", {}).maintenance.enabled is False, "off unless asked, as in Go"
    assert "maintenance.every_n_flushes" in _error(_with("maintenance", every_n_flushes=0))


def test_cli_reports_config_errors_in_one_line_with_exit_2(tmp_path, capsys):
    from flusher.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_with("service", flush_interval_minutes=3)))
    assert main(["flush", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid configuration") and "flush_interval_minutes" in err
