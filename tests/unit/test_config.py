"""Configuration: each bad input gives a message that says what is wrong and what to do. No servers needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flusher.config import ConfigError, load_settings, settings_from_mapping
from flusher.registry import selected_tables

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        (None, {}, "lake"),
        (True, {}, "lake"),
        (False, {}, "off"),
        ("source", {}, "source"),
        (None, {"FLUSHER_FLUSH_CERTIFICATE": "false"}, "off"),  # the boolean it was still reads
        (None, {"FLUSHER_FLUSH_CERTIFICATE": "Source"}, "source"),
    ],
)
def test_the_certificate_is_lake_source_or_off_and_true_false_still_read(value, environ, expected):
    raw = GOOD if value is None else _with("flush", certificate=value)
    assert settings_from_mapping(raw, "test.yaml", environ).flush.certificate == expected


def test_an_unknown_certificate_mode_is_a_config_error_naming_the_choices():
    message = _error(_with("flush", certificate="hot"))
    assert "flush.certificate" in message and "'lake', 'source' or 'off'" in message


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
    settings = settings_from_mapping(
        raw, "t", {"FLUSHER_POSTGRES_PASSWORD": "from-env", "FLUSHER_DUCKLAKE_AWS_SECRET_ACCESS_KEY": "k"}
    )
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
    later = settings_from_mapping(
        _with("flush", tables=["ledgers_row_v2"], extra_tables=["token_transfers_stream_v1"]), "t", {}
    )
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
    assert len(unselected_tables(listed)) == 19 and "contract_creations_v1" in {
        t.name for t in unselected_tables(listed)
    }


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
    from flusher.app.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_with("service", flush_interval_minutes=3)))
    assert main(["flush", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid configuration") and "flush_interval_minutes" in err


# --- issue 14: config mistakes that crashed, and environment variables ------------------------------------------


def test_an_empty_section_means_its_defaults():
    settings = settings_from_mapping({**GOOD, "vacuum": None, "downstream": None, "service": None}, "t", {})
    assert settings.vacuum.enabled and settings.downstream == []
    assert settings_from_mapping({**GOOD, "flush": None}, "t", {"FLUSHER_FLUSH_RETRIES": "3"}).flush.retries == 3


@pytest.mark.parametrize("section, value", [("postgres", 5), ("vacuum", "abc"), ("flush", [1, 2])])
def test_a_section_that_is_not_a_mapping_is_named(section, value):
    raw = {**GOOD, section: value}
    assert _error(raw).count(section) >= 1 and f"{section}:" in _error(raw)
    assert f"{section}:" in _error(raw, {f"FLUSHER_{section.upper()}_ENABLED": "true"} if section == "vacuum" else {})


@pytest.mark.parametrize(
    "key, value",
    [
        ("snapshot_retention_days", 1e12),
        ("snapshot_retention_days", "inf"),
        ("snapshot_retention_days", "nan"),
        ("file_cleanup_age_hours", 1e300),
        ("orphan_file_age_hours", float("inf")),
    ],
)
def test_a_retention_too_large_for_a_date_is_refused_at_load(key, value):
    """1e12 days used to pass validation and crash maintenance (timedelta overflow)."""
    assert f"maintenance.{key}" in _error(_with("maintenance", **{key: value}))


def test_every_maintenance_cutoff_that_validates_can_be_computed():
    from flusher.maintenance import Cutoffs

    m = settings_from_mapping(
        _with(
            "maintenance", snapshot_retention_days=36500, file_cleanup_age_hours=876000, orphan_file_age_hours=876000
        ),
        "t",
        {},
    ).maintenance
    Cutoffs.from_settings(m.snapshot_retention_days, m.file_cleanup_age_hours, m.orphan_file_age_hours)


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("postgres", "statement_timeout_seconds", 10**7),
        ("postgres", "lock_timeout_seconds", 2**40),
        ("flush", "retry_delay_seconds", "inf"),
        ("flush", "lock_wait_seconds", 1e30),
        ("service", "shutdown_timeout_seconds", "nan"),
        ("ducklake", "data_inlining_row_limit", 2**40),
    ],
)
def test_numbers_past_what_the_servers_take_are_refused(section, key, value):
    assert f"{section}.{key}" in _error(_with(section, **{key: value}))


@pytest.mark.parametrize("value", ["512", "lots", "80%", "-1", "1.5 GBs"])
def test_a_memory_limit_duckdb_would_refuse_is_refused_at_load_with_the_sizing_rule(value):
    """Before, DuckDB refused it inside every flow run (when the lake session opened)."""
    message = _error(_with("ducklake", memory_limit=value))
    assert "ducklake.memory_limit" in message and "e.g. 512MB" in message and "budget" in message


@pytest.mark.parametrize("value", ["512MB", "1GB", "1.5 GiB", "768mib", "700M"])
def test_every_memory_limit_that_validates_opens_a_duckdb(value):
    import duckdb

    limit = settings_from_mapping(_with("ducklake", memory_limit=value), "t", {}).ducklake.memory_limit
    duckdb.connect(config={"memory_limit": limit}).close()


def test_an_empty_table_list_is_refused_not_a_flush_of_nothing():
    message = _error(_with("flush", tables=[]))
    assert "flush.tables: is empty" in message and "remove the key" in message


def test_a_list_and_null_from_the_environment():
    settings = settings_from_mapping(
        GOOD,
        "t",
        {
            "FLUSHER_FLUSH_TABLES": '["ledgers_row_v2", "trades_row_v1"]',
            "FLUSHER_FLUSH_EXTRA_TABLES": "[effects_row_v1]",
            "FLUSHER_DUCKLAKE_PARTITION_BY": "null",
            "FLUSHER_DUCKLAKE_THREADS": "~",
            "FLUSHER_DUCKLAKE_AWS_REGION": "",
        },
    )
    assert settings.flush.tables == ["ledgers_row_v2", "trades_row_v1"]
    assert settings.flush.extra_tables == ["effects_row_v1"]
    assert settings.ducklake.partition_by is None, "null unsets an optional key (it was the text 'null')"
    assert settings.ducklake.threads is None and settings.ducklake.aws_region is None
    numbers = settings_from_mapping(
        GOOD,
        "t",
        {
            "FLUSHER_FLUSH_CONCURRENCY": "5",
            "FLUSHER_VACUUM_ENABLED": "false",
            "FLUSHER_FLUSH_RETRY_DELAY_SECONDS": "0.5",
        },
    )
    assert (numbers.flush.concurrency, numbers.vacuum.enabled, numbers.flush.retry_delay_seconds) == (5, False, 0.5)


def test_text_from_the_environment_stays_text():
    """A password is never reinterpreted as YAML: 0123 stays 0123 (not octal 83), null stays 'null', yes stays 'yes'."""
    for value in ("0123", "null", "yes", "[a]", "'quoted'", "", " spaced "):
        settings = settings_from_mapping(GOOD, "t", {"FLUSHER_POSTGRES_PASSWORD": value})
        assert settings.postgres.password.get_secret_value() == value


@pytest.mark.parametrize("value", ["ledgers_row_v2", "[unclosed", "{a: 1}", "[[a]]", "5"])
def test_a_list_variable_that_is_no_list_is_named(value):
    message = _error(GOOD, {"FLUSHER_FLUSH_TABLES": value})
    assert "FLUSHER_FLUSH_TABLES: expects a list" in message


def test_a_bad_environment_value_names_the_key_and_the_variable():
    message = _error(GOOD, {"FLUSHER_FLUSH_CONCURRENCY": "many"})
    assert "flush.concurrency (from FLUSHER_FLUSH_CONCURRENCY)" in message and "'many'" in message
    assert "flush.tables.0 (from FLUSHER_FLUSH_TABLES)" in _error(GOOD, {"FLUSHER_FLUSH_TABLES": "[1]"})


@pytest.mark.parametrize(
    "name, suggestion",
    [
        ("FLUSHER_FLUSH_CONCURENCY", "FLUSHER_FLUSH_CONCURRENCY"),
        ("FLUSHER_POSTGRES_PASWORD", "FLUSHER_POSTGRES_PASSWORD"),
        ("FLUSHER_DUCKLAK_DATA_PATH", "FLUSHER_DUCKLAKE_DATA_PATH"),
        ("FLUSHER_DOWNSTREAM_0_PASWORD", "FLUSHER_DOWNSTREAM_0_PASSWORD"),
        ("FLUSHER_DOWNSTREAM_PASWORD", "FLUSHER_DOWNSTREAM_PASSWORD"),
        ("flusher_postgres_host", "FLUSHER_POSTGRES_HOST"),
        ("FLUSHER_CONFG", "FLUSHER_CONFIG"),
    ],
)
def test_a_misspelled_variable_is_refused_like_a_misspelled_key(name, suggestion):
    message = _error(GOOD, {name: "s3cr3t-value"})
    assert f"{name}:" in message and f"did you mean {suggestion}?" in message
    assert "s3cr3t-value" not in message, "the value of an unknown variable may be a secret"


def test_every_setting_and_the_projects_other_variables_are_accepted():
    from flusher.config import OTHER_ENV, settings_env_names

    names = settings_env_names()
    assert {
        "FLUSHER_POSTGRES_SCHEMA",
        "FLUSHER_POSTGRES_SCHEMA_NAME",
        "FLUSHER_DOWNSTREAM_PASSWORD",
        "FLUSHER_DUCKLAKE_AWS_SECRET_ACCESS_KEY",
    } <= set(names)
    others = {name: "x" for name in OTHER_ENV}
    settings = settings_from_mapping(
        GOOD, "t", {**others, "FLUSHER_POSTGRES_SCHEMA": "hot", "PATH": "/bin", "NOT_FLUSHER_X": "1"}
    )
    assert settings.postgres.schema_name == "hot"
    assert "FLUSHER_POSTGRES_SCHEMA_NAME" in _error(
        GOOD, {"FLUSHER_POSTGRES_SCHEMA": "a", "FLUSHER_POSTGRES_SCHEMA_NAME": "b"}
    )
    file_spelling = _with("postgres", schema_name="from_file")
    assert settings_from_mapping(file_spelling, "t", {"FLUSHER_POSTGRES_SCHEMA": "env"}).postgres.schema_name == "env"


def test_the_projects_flusher_variables_are_all_known():
    """Every FLUSHER_* name the repository mentions is a setting or in OTHER_ENV (so none is refused by mistake)."""
    import re

    from flusher.config import OTHER_ENV, settings_env_names

    known = set(settings_env_names()) | OTHER_ENV
    found = set()
    for path in [
        *ROOT.glob("*.md"),
        *ROOT.glob("*.example"),
        *ROOT.glob("*.yaml"),
        ROOT / "Makefile",
        *ROOT.glob("*/*.py"),
        *ROOT.glob("bench/**/*.py"),
    ]:
        if path.name not in ("test_config.py", "test_config_fuzz.py"):  # they misspell names on purpose
            text = "\n".join(line for line in path.read_text().splitlines() if "did you mean" not in line)
            found |= set(re.findall(r"\bFLUSHER_[A-Z0-9_]*[A-Z0-9]\b", text))
    placeholders = {"FLUSHER_SECTION_KEY", "FLUSHER_DOWNSTREAM_KEY"}
    unknown = {
        n
        for n in found - known - placeholders
        if not re.match(r"FLUSHER_DOWNSTREAM_\d+_", n) and not n.endswith(("_", "FLUSHER_DUCKLAKE_AWS"))
    }
    assert not unknown, unknown


def test_downstream_entries_from_the_environment():
    env = {
        "FLUSHER_DOWNSTREAM_0_DSN": "host=silver dbname=s password=pw0",
        "FLUSHER_DOWNSTREAM_0_QUERY": "SELECT 1",
        "FLUSHER_DOWNSTREAM_1_HOST": "gold",
        "FLUSHER_DOWNSTREAM_1_DATABASE": "g",
        "FLUSHER_DOWNSTREAM_1_TABLE": "cp",
        "FLUSHER_DOWNSTREAM_1_COLUMN": "ledger",
        "FLUSHER_DOWNSTREAM_1_PASSWORD": "pw1",
    }
    consumers = settings_from_mapping(GOOD, "t", env).downstream
    assert [c.describe() for c in consumers] == ["silver:5432/s", "gold:5432/g"]
    listed = {**GOOD, "downstream": [{"host": "h", "database": "d", "query": "SELECT 1"}]}
    assert (
        settings_from_mapping(listed, "t", {"FLUSHER_DOWNSTREAM_0_PASSWORD": "p"})
        .downstream[0]
        .password.get_secret_value()
        == "p"
    )
    assert "downstream is a list in the file" in _error(listed, {"FLUSHER_DOWNSTREAM_PASSWORD": "p"})
    assert "do not mix" in _error(GOOD, {"FLUSHER_DOWNSTREAM_HOST": "h", "FLUSHER_DOWNSTREAM_0_HOST": "h"})
    assert "downstream.0" in _error(GOOD, {"FLUSHER_DOWNSTREAM_0_PASSWORD": "p"}), "an entry with a password only"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: 2020-13-45", "not valid YAML"),
        ("a: !!int abc", "not valid YAML"),
        ("a: !!timestamp 2020-01-01x", "not valid YAML"),
        ("[" * 5000, "nested too deeply"),
    ],
)
def test_yaml_pyyaml_cannot_read_is_a_config_error(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_settings(path, environ={})


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"postgres:\n  password: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(path, environ={})


def test_a_block_over_a_section_that_is_not_a_mapping_is_named():
    from flusher.blocks.settings import with_block_section

    with pytest.raises(ConfigError, match="postgres: expected a mapping"):
        with_block_section({"postgres": 5}, "postgres", {"host": "h"}, "c.yaml")
    assert with_block_section({"postgres": None}, "postgres", {"host": "h"}, "c.yaml") == {"postgres": {"host": "h"}}


def test_a_catalog_path_libpq_cannot_parse_is_not_quoted():
    """libpq's parse error quotes the text ('missing "=" after "..."'), which may be the password."""
    message = _error(_with("ducklake", catalog_path="host=db dbname=c password=Zq9SECRET garbage"))
    assert "ducklake.catalog_path" in message and "Zq9SECRET" not in message and "garbage" not in message


def test_the_catalog_is_described_without_its_password():
    from flusher.config import describe_conninfo

    assert describe_conninfo("postgresql://bob:Zq9SECRET@db.example:6543/catalog") == "bob@db.example:6543/catalog"
    assert describe_conninfo("host=db dbname=c password='Zq 9SECRET'") == "db:5432/c"
    assert describe_conninfo("dbname=c") == "local socket:5432/c"
    assert "Zq9" not in describe_conninfo("not = a = dsn Zq9SECRET")


def test_cli_exit_2_for_a_misspelled_variable_and_a_list_from_the_environment(tmp_path, monkeypatch, capsys):
    from flusher.app.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    monkeypatch.setenv("FLUSHER_FLUSH_CONCURENCY", "3")
    assert main(["status", "--config", str(path)]) == 2
    assert "FLUSHER_FLUSH_CONCURENCY" in capsys.readouterr().err
    monkeypatch.delenv("FLUSHER_FLUSH_CONCURENCY")
    monkeypatch.setenv("FLUSHER_FLUSH_TABLES", "[ledgers_row_v9]")
    assert main(["status", "--config", str(path)]) == 2, "the list now parses; the unknown table is a ConfigError"
    assert "ledgers_row_v9" in capsys.readouterr().err
