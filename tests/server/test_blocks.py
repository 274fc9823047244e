"""Credentials in Prefect blocks: created from a config by the CLI, masked by the API, enough to run a flush."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers import write_config

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_blocks_hold_the_credentials_and_a_flush_runs_from_them(hot):
    hot.execute("ALTER USER postgres PASSWORD 'pw-in-block'")  # trust auth ignores it, but it is stored
    hot.config = write_config(hot, postgres={"password": "pw-in-block"})
    made = hot.run_cli("blocks", "--postgres-block", "test-pg", "--ducklake-block", "test-lake")
    assert made.returncode == 0, made.stderr
    assert "saved sqlalchemy-connector/test-pg" in made.stdout

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name("test-pg", "sqlalchemy-connector", include_secrets=False)
    assert "pw-in-block" not in str(document.data), "the API must not return the password"

    # A config with no postgres/ducklake sections: everything comes from the blocks.
    bare = hot.tmp / "bare.yaml"
    bare.write_text(yaml.safe_dump({"vacuum": {"enabled": False}}))
    hot.load(1, 5)
    from flusher.flows.bronze_flush import bronze_flush

    state = bronze_flush(config_path=str(bare), postgres_block="test-pg", ducklake_block="test-lake", return_state=True)
    assert state.is_completed(), state.message
    hot.assert_exactly_once()
