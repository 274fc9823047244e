"""The harness layer writes where the test session says (a temporary PREFECT_HOME), never under the user's ~."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def test_prefect_under_the_harness_writes_in_temporary_folders_only(prefect_harness):
    home = Path.home().resolve()
    temp = Path(tempfile.gettempdir()).resolve()
    assert prefect_harness["PREFECT_HOME"].resolve() == Path(os.environ["PREFECT_HOME"]).resolve()
    assert "database" in prefect_harness, "the harness must run its API on its own SQLite file"
    for name, path in prefect_harness.items():
        assert path.resolve().is_relative_to(temp), f"Prefect's {name} is outside {temp}: {path}"
        assert not path.resolve().is_relative_to(home), f"Prefect's {name} is under ~: {path}"
