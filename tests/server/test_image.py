"""The container image builds and runs as a non-root user (skipped where no Docker daemon answers)."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from tests.layers import ROOT


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not _docker_answers(), reason="no Docker daemon answers here; the image is not built")
def test_the_image_builds_prints_its_version_and_is_not_root():
    tag = f"postgres-ducklake-flusher-test:{uuid.uuid4().hex[:8]}"
    try:
        built = subprocess.run(["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=1200)
        assert built.returncode == 0, built.stderr[-3000:]
        version = subprocess.run(
            ["docker", "run", "--rm", tag, "--version"], capture_output=True, text=True, timeout=120
        )
        assert version.stdout.startswith("postgres-ducklake-flusher "), version.stderr
        uid = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True, timeout=120
        )
        assert uid.stdout.strip() == "10001"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)
