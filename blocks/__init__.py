"""Prefect blocks that hold the flusher's credentials (ducklake.py), and a run's settings from blocks (settings.py).

Nothing is imported here: `flusher.blocks.settings` is imported by every command, and Prefect and DuckDB load only
when a block is used. Register the block type with `prefect block register -m flusher.blocks.ducklake`.
"""
