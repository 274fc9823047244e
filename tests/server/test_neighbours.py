"""The Go service's neighbours: the query API's hot/cold split (cold_flusher_checkpoint) and downstream retention."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from psycopg import sql

from flusher.embedded import create_database
from tests.helpers import ENABLED, flush, write_config

# prefect_api per test: reading /health and /metrics needs no Prefect server.
PREFECT = pytest.mark.usefixtures("prefect_api")

# Exactly what stellar-query-api/go/network_stats.go runs on the hot database (unqualified: the default search_path).
GO_QUERY_API_SQL = "SELECT last_flushed_watermark FROM cold_flusher_checkpoint WHERE id = 1"
# The Go service's DDL and first row, as it runs them at start-up.
GO_DDL = """CREATE TABLE IF NOT EXISTS cold_flusher_checkpoint (
    id INTEGER PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    last_flushed_watermark BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
)"""
GO_FIRST_ROW = (
    "INSERT INTO cold_flusher_checkpoint (id, last_flushed_watermark) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
)
SECRET = "sekret-downstream-pw"


def _split(hot) -> int:
    return hot.execute(GO_QUERY_API_SQL)[0][0]


def _hot_counts(hot) -> dict[str, int]:
    return {t: hot.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t)))[0][0] for t in ENABLED}


# --- item 7: cold_flusher_checkpoint -------------------------------------------------------------------------------


@PREFECT
def test_the_query_api_split_advances_after_a_clean_run(hot):
    hot.load(1, 10)
    assert flush(hot).is_completed()
    assert _split(hot) == 10
    columns = hot.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'cold_flusher_checkpoint' ORDER BY ordinal_position"
    )
    assert columns == [
        ("id", "integer"),
        ("last_flushed_watermark", "bigint"),
        ("updated_at", "timestamp with time zone"),
    ]


@PREFECT
def test_a_failed_table_holds_the_split_back_until_a_good_run(hot, monkeypatch):
    hot.config = write_config(hot, flush={"tables": ENABLED})  # named tables: a missing one fails, not skipped
    hot.load(1, 10)
    assert flush(hot).is_completed()
    hot.load(11, 10)
    monkeypatch.setenv("FLUSHER_FAILPOINTS", "after_lake_commit:trades_row_v1=raise")
    assert flush(hot).is_failed()
    assert hot.hot_count_at_or_below("ledgers_row_v2", 20) == 0, "the other tables moved"
    assert _split(hot) == 10, "trades_row_v1 still holds ledgers 11..20 in PostgreSQL only"
    monkeypatch.delenv("FLUSHER_FAILPOINTS")
    hot.load(21, 5)
    hot.execute("DROP TABLE offers_snapshot_v1")  # a missing (named) table holds it back, at what it had confirmed
    assert flush(hot).is_failed()
    assert _split(hot) == 20, "trades_row_v1 caught up to 25; offers_snapshot_v1 was confirmed up to 20 only"
    hot.execute("CREATE TABLE offers_snapshot_v1 (LIKE audit.offers_snapshot_v1)")
    assert flush(hot).is_completed()
    assert _split(hot) == 25
    hot.assert_exactly_once([t for t in ENABLED if t != "offers_snapshot_v1"])


@PREFECT
def test_an_existing_go_checkpoint_table_is_reused_and_never_lowered(hot):
    hot.execute(GO_DDL)
    hot.execute(GO_FIRST_ROW)
    hot.execute("UPDATE cold_flusher_checkpoint SET last_flushed_watermark = 1000, updated_at = '2020-01-01Z'")
    hot.load(1, 10)
    assert flush(hot).is_completed()
    assert _split(hot) == 1000, "a higher value (the Go service's) is kept"
    assert hot.execute("SELECT updated_at < '2021-01-01Z' FROM cold_flusher_checkpoint")[0][0]
    hot.execute("UPDATE cold_flusher_checkpoint SET last_flushed_watermark = 5")
    hot.load(11, 5)
    assert flush(hot).is_completed()
    assert _split(hot) == 15
    assert hot.execute("SELECT count(*) FROM cold_flusher_checkpoint")[0][0] == 1


# --- item 8: downstream retention ----------------------------------------------------------------------------------


@pytest.fixture
def consumer(pg_admin_uri, hot):
    """A second database in the same server, like silver_hot, with the silver transformer's checkpoint table."""
    name = f"silver_{uuid.uuid4().hex[:10]}"
    create_database(pg_admin_uri, name)
    uri = psycopg.conninfo.make_conninfo(pg_admin_uri, dbname=name)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE realtime_transformer_checkpoint (id int PRIMARY KEY, last_ledger_sequence bigint)")
        conn.execute("INSERT INTO realtime_transformer_checkpoint VALUES (1, 0)")
    yield Consumer(uri, name, hot.params)
    with psycopg.connect(pg_admin_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class Consumer:
    def __init__(self, uri: str, database: str, params: dict[str, str]) -> None:
        self.uri, self.database, self.params = uri, database, params

    def set(self, value: int | None) -> None:
        with psycopg.connect(self.uri, autocommit=True) as conn:
            conn.execute("UPDATE realtime_transformer_checkpoint SET last_ledger_sequence = %s", (value,))

    def go_section(self, **overrides) -> dict:
        """The Go service's `downstream:` keys."""
        return {
            "host": self.params["host"],
            "port": int(self.params["port"]),
            "database": self.database,
            "user": self.params["user"],
            "password": "",
            "sslmode": "disable",
            "table": "realtime_transformer_checkpoint",
            "column": "last_ledger_sequence",
            **overrides,
        }


def _with_downstream(hot, downstream, **service) -> None:
    hot.config = write_config(hot, downstream=downstream, **({"service": service} if service else {}))


@PREFECT
def test_the_watermark_stops_at_the_consumer_checkpoint_and_moves_on_with_it(hot, consumer):
    consumer.set(6)
    _with_downstream(hot, consumer.go_section())
    hot.load(1, 10)
    state = flush(hot)
    assert state.is_completed(), state.message
    assert "watermark 6" in state.message
    for table in ENABLED:
        assert hot.hot_count_at_or_below(table, 6) == 0
        assert hot.hot_count_at_or_below(table, 10) > 0, f"{table}: ledgers 7..10 are kept for the consumer"
    hot.assert_exactly_once()
    assert _split(hot) == 6
    consumer.set(9)
    assert flush(hot).is_completed()
    assert hot.hot_count_at_or_below("ledgers_row_v2", 10) == 1 and _split(hot) == 9
    hot.assert_exactly_once()


@PREFECT
def test_two_consumers_the_lowest_checkpoint_wins(hot, consumer):
    consumer.set(8)
    dsn = consumer.uri  # a DSN (secret), and a query instead of table/column
    _with_downstream(
        hot,
        [
            consumer.go_section(name="silver"),
            {"name": "analytics", "dsn": dsn, "query": "SELECT 4::bigint"},
        ],
    )
    hot.load(1, 10)
    state = flush(hot)
    assert state.is_completed() and "watermark 4" in state.message, state.message
    assert hot.hot_count_at_or_below("ledgers_row_v2", 10) == 6
    hot.assert_exactly_once()


@PREFECT
@pytest.mark.parametrize("value", [0, None, -3])
def test_a_checkpoint_at_or_below_zero_or_null_skips_the_run(hot, consumer, value):
    consumer.set(value)
    _with_downstream(hot, consumer.go_section(name="silver"))
    hot.load(1, 10)
    before = _hot_counts(hot)
    state = flush(hot)
    assert state.is_completed() and state.name == "Skipped", state
    shown = "NULL" if value is None else str(value)
    assert f"downstream consumer silver: checkpoint is {shown}" in state.message
    assert _hot_counts(hot) == before and sum(hot.lake_keys(["ledgers_row_v2"])["ledgers_row_v2"].values()) == 0
    assert hot.execute("SELECT status FROM flusher_state.runs ORDER BY batch_id DESC LIMIT 1")[0][0] == "skipped"


@PREFECT
def test_an_unreachable_consumer_skips_the_run_and_never_shows_its_password(hot, consumer):
    _with_downstream(hot, consumer.go_section(host="127.0.0.1", port=1, password=SECRET))
    hot.load(1, 10)
    before = _hot_counts(hot)
    result = hot.run_cli("flush")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Skipped" in result.stdout and "unreachable" in result.stdout, output
    assert f"@127.0.0.1:1/{consumer.database}" in result.stdout, "the consumer is named"
    assert SECRET not in output
    assert _hot_counts(hot) == before
    message = hot.execute("SELECT message FROM flusher_state.runs ORDER BY batch_id DESC LIMIT 1")[0][0]
    assert "unreachable" in message and SECRET not in message
    assert hot.run_cli("status").returncode == 0


def _probe(settings):
    from flusher.app.health import HealthProbe
    from flusher.hot import make_pool

    probe = HealthProbe(settings, make_pool(settings.postgres), lambda: None, interval_seconds=600)
    probe.refresh()  # read now: the server reads in the background, these tests ask right after a change
    return probe


def _metrics(probe) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    from flusher.app.health import StateCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(probe))
    return generate_latest(registry).decode()


def test_health_and_metrics_show_each_consumer(hot, consumer):
    consumer.set(6)
    _with_downstream(
        hot,
        [
            consumer.go_section(name="silver", max_lag_ledgers=50),
            consumer.go_section(name="down", port=1, password=SECRET),
        ],
        max_lag_ledgers=100,
    )
    hot.load(1, 30)
    probe = _probe(hot.settings())
    try:
        status, body = probe.health()
        assert status == 200, body
        assert body["downstream"][0] == {"name": "silver", "checkpoint": 6, "lag_ledgers": 24, "problem": None}
        assert any(w.startswith("downstream consumer down: unreachable") for w in body["warnings"]), body
        assert SECRET not in json.dumps(body)
        text = _metrics(probe)
        for line in (
            'flusher_downstream_checkpoint{consumer="silver"} 6.0',
            'flusher_downstream_lag_ledgers{consumer="silver"} 24.0',
            'flusher_downstream_up{consumer="silver"} 1.0',
            'flusher_downstream_up{consumer="down"} 0.0',
        ):
            assert line in text, line
        assert SECRET not in text
        hot.load(31, 40)  # silver now 64 behind (> its 50); the flusher 70 behind with runs skipped (< 100)
        probe.refresh()
        status, body = probe.health()
        assert status == 503
        assert any("silver is 64 ledgers behind" in r for r in body["reasons"]), body
        hot.load(71, 40)  # 110 ledgers and no flush: the unreachable consumer turns into a reason too
        probe.refresh()
        status, body = probe.health()
        assert any(
            r.startswith("downstream consumer down: unreachable") and "exceeds 100" in r for r in body["reasons"]
        ), body
    finally:
        probe.reader.pool.close()
