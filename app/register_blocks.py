"""Create or update the flusher's Prefect blocks from validated settings."""

from __future__ import annotations

from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector

from flusher.blocks.ducklake import DuckLakeBronze
from flusher.config import Settings


def save_blocks(settings: Settings, postgres_block: str, ducklake_block: str) -> list[str]:
    """Save a SqlAlchemyConnector (psycopg 3) and a DuckLakeBronze block; returns what was saved."""
    pg = settings.postgres
    SqlAlchemyConnector(
        connection_info=ConnectionComponents(
            driver="postgresql+psycopg",
            host=pg.host,
            port=pg.port,
            database=pg.database,
            username=pg.user,
            password=pg.password.get_secret_value() or None,
        )
    ).save(postgres_block, overwrite=True)
    lake = settings.ducklake
    DuckLakeBronze.from_settings(lake).save(ducklake_block, overwrite=True)
    return [
        f"saved sqlalchemy-connector/{postgres_block} ({pg.describe()})",
        f"saved ducklake-bronze/{ducklake_block} (data path {lake.data_path})",
    ]
