"""The Go service's `downstream:` section loads as it is (the runs against consumers are in
tests/server/test_neighbours.py)."""

from __future__ import annotations


def test_the_go_services_downstream_section_is_accepted_as_it_is():
    from flusher.config import settings_from_mapping

    go_config = {  # the Go service's keys (config.go DownstreamConfig), sslmode left to its default
        "service": {"name": "postgres-ducklake-flusher", "health_port": 8089, "flush_interval_minutes": 10},
        "postgres": {
            "host": "localhost",
            "port": 5434,
            "database": "stellar_hot",
            "user": "stellar",
            "password": "stellar_dev_password",
            "sslmode": "disable",
        },
        "ducklake": {
            "catalog_path": "postgresql://user:pass@host:5432/catalog_db",
            "data_path": "s3://bucket-name/path/",
            "catalog_name": "testnet_catalog",
            "schema_name": "bronze",
            "metadata_schema": "bronze_meta",
        },
        "vacuum": {"enabled": True, "every_n_flushes": 10},
        "downstream": {
            "host": "localhost",
            "port": 5434,
            "database": "silver_hot",
            "user": "stellar",
            "password": "stellar_dev_password",
            "table": "realtime_transformer_checkpoint",
            "column": "last_ledger_sequence",
        },
    }
    settings = settings_from_mapping(go_config, "go.yaml", {"FLUSHER_DOWNSTREAM_PASSWORD": "from-env"})
    [only] = settings.downstream
    assert only.sslmode == "require" and only.describe() == "stellar@localhost:5434/silver_hot"
    assert only.password.get_secret_value() == "from-env" and "from-env" not in repr(settings)
    unset = {**go_config, "downstream": {"host": "", "port": 0, "table": "", "column": ""}}
    assert settings_from_mapping(unset, "go.yaml", {}).downstream == [], "an empty Go section means no consumer"
