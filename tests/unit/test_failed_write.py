"""What a failed local write leaves behind, without a disk: remote paths are left alone, only ENOSPC is reworded.
The full-disk runs are in tests/server/test_disk_full.py."""

from __future__ import annotations

import time
from types import SimpleNamespace

from flusher.failed_write import explain_disk_full, remove_failed_write

TABLE = "transactions_row_v2"


def test_remote_data_path_is_left_alone() -> None:
    session = SimpleNamespace(settings=SimpleNamespace(ducklake=SimpleNamespace(data_path="s3://b/p/", is_remote=True)))
    assert remove_failed_write(session, TABLE, time.time()) is None  # type: ignore[arg-type]


def test_only_a_full_disk_is_reworded() -> None:
    assert explain_disk_full("IO Error: permission denied", "/lake/") == "IO Error: permission denied"
    reworded = explain_disk_full('IO Error: Could not write file "x": No space left on device', "/lake/")
    assert reworded.startswith("the lake's data path /lake/ is out of space")
    assert reworded.endswith("No space left on device")
