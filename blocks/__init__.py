"""Prefect blocks that hold the flusher's credentials."""

from blocks.ducklake import DuckLakeBronze

__all__ = ["DuckLakeBronze"]
