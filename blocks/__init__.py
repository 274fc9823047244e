"""Prefect blocks that hold the flusher's credentials."""

from flusher.blocks.ducklake import DuckLakeBronze

__all__ = ["DuckLakeBronze"]
