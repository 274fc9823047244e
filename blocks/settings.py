"""Where a run's settings come from: a YAML file, Prefect blocks, or both (blocks win for credentials)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flusher.config import CONFIG_ENV, ConfigError, Settings, load_settings, read_config_file, settings_from_mapping

# Folders (os.pathsep-separated) whose files a deployment run's config_path parameter may name, besides $FLUSHER_CONFIG.
CONFIG_DIR_ENV = "FLUSHER_CONFIG_DIR"


def allowed_config_path(path: str, environ: dict[str, str] | None = None) -> Path:
    """The resolved `path`, if a run parameter may name it: the file $FLUSHER_CONFIG names, or one under a folder of
    $FLUSHER_CONFIG_DIR (symlinks and .. resolved first). Otherwise a ConfigError, and the file is not opened.

    Anyone who may start a deployment run may set its parameters, while the run reads files with the worker's rights:
    without this, config_path=/etc/shadow would have the worker read that file for them.
    """
    environ = dict(os.environ if environ is None else environ)
    resolved = Path(path).expanduser().resolve()
    configured = environ.get(CONFIG_ENV)
    if configured and resolved == Path(configured).expanduser().resolve():
        return resolved
    folders = [Path(d).expanduser().resolve() for d in environ.get(CONFIG_DIR_ENV, "").split(os.pathsep) if d.strip()]
    if any(resolved != folder and resolved.is_relative_to(folder) for folder in folders):
        return resolved
    allowed = [f"${CONFIG_ENV} ({configured})" if configured else f"${CONFIG_ENV} (not set)"]
    allowed.append(
        f"files under ${CONFIG_DIR_ENV} ({os.pathsep.join(map(str, folders))})"
        if folders
        else f"${CONFIG_DIR_ENV} is not set"
    )
    raise ConfigError(
        f"config_path {path!r} refused, and not read: a deployment run may only read its config from the worker's "
        f"{allowed[0]} or from {allowed[1]}. Set {CONFIG_DIR_ENV} in the worker's environment to allow a folder"
    )


def postgres_from_connector(name: str) -> dict[str, Any]:
    """The `postgres` section from a prefect-sqlalchemy SqlAlchemyConnector block."""
    from prefect_sqlalchemy import SqlAlchemyConnector  # here: Prefect loads only when a block is named

    info = SqlAlchemyConnector.load(name).connection_info
    if isinstance(info, str) or not hasattr(info, "host"):
        raise ConfigError(f"block {name!r} must use ConnectionComponents (host, port, ...), not a URL string")
    section = {"host": info.host, "port": info.port, "database": info.database, "user": info.username}
    if info.password is not None:
        section["password"] = info.password.get_secret_value()
    return {k: v for k, v in section.items() if v is not None}


def ducklake_from_block(name: str) -> dict[str, Any]:
    """The `ducklake` keys a DuckLakeBronze block holds, from its validated settings (secrets stay SecretStr).

    Only the block's own fields: the file's tuning keys (memory_limit, threads, ...) stay as the file sets them.
    """
    from flusher.blocks.ducklake import DuckLakeBronze  # here: DuckDB and Prefect load only when a block is named

    block = DuckLakeBronze.load(name)
    return block.get_settings().model_dump(include=set(block.lake_fields()), exclude_none=True)


def _consumer_from_block(entry: dict[str, Any]) -> dict[str, Any]:
    """A downstream entry with `block: NAME` turned into connection fields (the block's password stays secret)."""
    name = entry["block"]
    if not isinstance(name, str):
        raise ConfigError(f"downstream block: expected the name of a block, got {type(name).__name__}")
    try:
        fields = postgres_from_connector(name)
    except ValueError as exc:  # Prefect's "no block document named ..." is a ValueError
        raise ConfigError(f"downstream block {name!r}: {exc}") from None
    resolved = {k: v for k, v in entry.items() if k != "block"}
    resolved.setdefault("name", f"block {name}")
    return {**resolved, **fields}


def resolve_downstream_blocks(raw: dict[str, Any]) -> dict[str, Any]:
    """Replace each `downstream` entry naming a Prefect block by that block's connection (Prefect only if one does)."""
    section = raw.get("downstream")
    entries = section if isinstance(section, list) else [section] if isinstance(section, dict) else []
    if not any(isinstance(e, dict) and e.get("block") for e in entries):
        return raw
    resolved = [_consumer_from_block(e) if isinstance(e, dict) and e.get("block") else e for e in entries]
    return {**raw, "downstream": resolved if isinstance(section, list) else resolved[0]}


def resolve_settings(
    config_path: str | None = None,
    postgres_block: str | None = None,
    ducklake_block: str | None = None,
    restricted: bool = False,
) -> Settings:
    """Settings from the config file (or $FLUSHER_CONFIG), with the named blocks' credentials on top.

    restricted: config_path is a deployment run's parameter (set by whoever started the run, not by the operator):
    it must pass allowed_config_path before it is read.
    """
    if config_path and restricted:
        config_path = str(allowed_config_path(config_path))
    config_path = config_path or os.environ.get(CONFIG_ENV)
    if not (postgres_block or ducklake_block):
        if not config_path:
            raise ConfigError(
                f"no configuration: pass config_path, set ${CONFIG_ENV}, or name postgres_block and ducklake_block"
            )
        raw = read_config_file(config_path)
        if not _names_a_downstream_block(raw):
            return load_settings(config_path)
        return settings_from_mapping(resolve_downstream_blocks(raw), str(config_path))
    raw: Any = {}
    if config_path:
        raw = read_config_file(config_path)
    source = f"blocks {postgres_block!r}/{ducklake_block!r}" + (f" and {config_path}" if config_path else "")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"invalid configuration in {config_path}: expected a mapping of sections, got {type(raw).__name__}"
        )
    raw = resolve_downstream_blocks(raw)
    if postgres_block:
        raw = with_block_section(raw, "postgres", postgres_from_connector(postgres_block), config_path)
    if ducklake_block:
        raw = with_block_section(raw, "ducklake", ducklake_from_block(ducklake_block), config_path)
    return settings_from_mapping(raw, source)


def with_block_section(raw: dict[str, Any], section: str, fields: dict[str, Any], source: str | None) -> dict[str, Any]:
    """`raw` with a block's fields over the file's `section` (the block wins); a section that is no mapping is named."""
    current = raw.get(section)
    if current is not None and not isinstance(current, dict):
        raise ConfigError(
            f"invalid configuration in {source}:\n  {section}: expected a mapping of keys (the block "
            f"fills in its credentials), got {type(current).__name__}"
        )
    return {**raw, section: {**(current or {}), **fields}}


def _names_a_downstream_block(raw: Any) -> bool:
    section = raw.get("downstream") if isinstance(raw, dict) else None
    entries = section if isinstance(section, list) else [section]
    return any(isinstance(e, dict) and e.get("block") for e in entries)
