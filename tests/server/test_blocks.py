"""Credentials in Prefect blocks, end to end: created from a config by the CLI, enough to run a flush and open the lake.

Saving, masking and resolving blocks without PostgreSQL: tests/harness/test_blocks.py; the block alone:
tests/unit/test_blocks.py and tests/harness/test_blocks_standard.py.
"""

from __future__ import annotations

import pytest
import yaml

from flusher.config import load_settings
from tests.helpers import write_config

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_blocks_hold_the_credentials_and_a_flush_runs_from_them(hot):
    hot.execute("ALTER USER postgres PASSWORD 'pw-in-block'")  # trust auth ignores it, but it is stored
    hot.config = write_config(hot, postgres={"password": "pw-in-block"})
    made = hot.run_cli("blocks", "--postgres-block", "test-pg", "--ducklake-block", "test-lake")
    assert made.returncode == 0, made.stderr
    assert "saved sqlalchemy-connector/test-pg" in made.stdout

    # A config with no postgres/ducklake sections: everything comes from the blocks.
    bare = hot.tmp / "bare.yaml"
    bare.write_text(yaml.safe_dump({"vacuum": {"enabled": False}}))
    loaded = hot.load(1, 5)
    from flusher.flows.bronze_flush import bronze_flush

    state = bronze_flush(config_path=str(bare), postgres_block="test-pg", ducklake_block="test-lake", return_state=True)
    assert state.is_completed(), state.message
    hot.assert_exactly_once()

    # The block opens the lake it describes, as SqlAlchemyConnector.get_engine() opens its database.
    from flusher.blocks.ducklake import DuckLakeBronze

    with DuckLakeBronze.load("test-lake").open_lake(load_settings(hot.config).postgres) as lake:
        table = "ledgers_row_v2"
        count = lake.cursor().execute(f"SELECT count(*) FROM {lake.table(table)}").fetchone()[0]
        hot_count = lake.cursor().execute(f"SELECT count(*) FROM {lake.hot_table(table)}").fetchone()[0]
    assert (count, hot_count) == (loaded[table], 0)
