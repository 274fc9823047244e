"""The container image's recipe (issue 13), read without Docker: what a reviewer would check by eye, checked always."""

from __future__ import annotations

import re
import tomllib

import pytest

from flusher.config import settings_env_names
from tests.layers import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    """The arguments of every `NAME ...` instruction (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(name + " ")]


def test_the_image_runs_as_a_non_root_user():
    users = _instructions("USER")
    assert users and users[-1].strip() not in ("root", "0"), "the last USER must not be root"


def test_dependencies_are_the_locked_versions_and_the_package_is_complete():
    runs = " ".join(_instructions("RUN"))
    assert "--constraint requirements.lock" in runs
    copied = " ".join(_instructions("COPY"))
    mapped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    for folder in ["flusher", *mapped]:
        assert re.search(rf"\b{folder}\b", copied), f"the image does not copy {folder}/, which the package maps"


def test_the_healthcheck_asks_health_and_the_probes_can_reach_it():
    (check,) = _instructions("HEALTHCHECK")
    assert "/health" in check and "timeout" in check
    assert "8089" in " ".join(_instructions("EXPOSE"))


@pytest.mark.parametrize("line", _instructions("ENV"))
def test_every_flusher_variable_the_image_sets_is_one_the_config_reads(line):
    """The config refuses a misspelled FLUSHER_ variable; the image must not ship one."""
    for name in re.findall(r"\b(FLUSHER_[A-Z0-9_]+)=", line):
        assert name in settings_env_names() or name == "FLUSHER_CONFIG", name
