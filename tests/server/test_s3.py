"""The lake on S3-compatible storage (a moto server with real key checking): flush, crash, and a bad data path."""

from __future__ import annotations

import re
import signal

import pytest

from flusher.lake import LakeError, LakeSession
from tests.helpers import ENABLED, flush, write_config

# prefect_api per test: the tests that only open the lake need no Prefect server.
PREFECT = pytest.mark.usefixtures("prefect_api")


def _use_s3(hot, s3, **overrides) -> str:
    prefix = hot.database
    hot.config = write_config(hot, ducklake=s3.ducklake(prefix, **overrides))
    return prefix


@PREFECT
def test_a_flush_to_s3_moves_every_row_exactly_once_into_ledger_range_partitions(hot, s3):
    prefix = _use_s3(hot, s3, data_inlining_row_limit=0)  # every insert to a file, however small
    hot.load(9995, 10)  # crosses the ledger_range boundary at 10000
    state = flush(hot)
    assert state.is_completed(), state.message
    counts = hot.assert_exactly_once()
    assert counts["ledgers_row_v2"] == 10
    keys = [k for k in s3.keys(prefix) if "/ledgers_row_v2/" in k]
    assert {re.search(r"ledger_range=(\d+)/", k).group(1) for k in keys} == {"0", "10000"}, keys
    assert all(hot.hot_count_at_or_below(t, 10004) == 0 for t in ENABLED)


@PREFECT
@pytest.mark.slow
def test_sigkill_after_a_lake_commit_on_s3_converges(hot, s3):
    _use_s3(hot, s3)
    hot.load(1, 15)
    killed = hot.run_cli("flush", failpoints="after_lake_commit:transactions_row_v2=kill")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    hot.assert_exactly_once(unconfirmed_ok=True)
    hot.load(16, 3)
    again = hot.run_cli("flush")
    assert again.returncode == 0, again.stdout + again.stderr
    assert hot.assert_exactly_once()["transactions_row_v2"] == 18 * 2


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"aws_secret_access_key": "not-the-secret-key"}, "the credentials were rejected"),
        ({"aws_access_key_id": "AKIANOSUCHKEY0000000"}, "the credentials were rejected"),
        ({"data_path": "s3://no-such-bucket/bronze/"}, "the bucket does not exist"),
        ({"aws_endpoint": "127.0.0.1:1"}, "the endpoint did not answer"),
    ],
    ids=["wrong-secret", "unknown-key", "missing-bucket", "no-endpoint"],
)
def test_opening_the_lake_checks_the_data_path_and_says_what_to_fix(hot, s3, overrides, expected):
    _use_s3(hot, s3, **overrides)
    with pytest.raises(LakeError) as raised:
        LakeSession(hot.settings(), attach_hot=False).close()
    message = str(raised.value)
    bucket = overrides.get("data_path", f"s3://{s3.bucket}/").split("/")[2]
    endpoint = overrides.get("aws_endpoint", s3.endpoint)
    assert expected in message and f"bucket {bucket!r}" in message and endpoint in message, message
    assert s3.secret not in message and "not-the-secret-key" not in message


@PREFECT
def test_wrong_s3_credentials_fail_the_run_before_anything_is_deleted(hot, s3):
    _use_s3(hot, s3, aws_secret_access_key="not-the-secret-key")
    loaded = hot.load(1, 5)
    state = flush(hot)
    assert state.is_failed()
    assert "the credentials were rejected" in state.message and "not-the-secret-key" not in state.message
    assert {t: hot.hot_count_at_or_below(t, 5) for t in ENABLED} == loaded
    assert not hot.execute("SELECT 1 FROM flusher_state.table_batches"), "no table was even started"
