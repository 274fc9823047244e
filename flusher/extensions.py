"""Loading DuckDB's ducklake, postgres and httpfs extensions from their PyPI wheels, with no network."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb

from flusher.quoting import quote_literal
from flusher.secrets import MaskedMessage

# extension name -> the Python package whose wheel carries it
EXTENSION_PACKAGES = {
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "ducklake": "duckdb_extension_ducklake",
    "httpfs": "duckdb_extension_httpfs",
}


class ExtensionMissing(MaskedMessage, RuntimeError):
    """An extension wheel is not installed."""


def extension_path(name: str) -> Path:
    """The .duckdb_extension file that the wheel for `name` installed, matching this DuckDB's version."""
    package = EXTENSION_PACKAGES[name]
    hint = f"pip install {package.replace('_', '-')}=={duckdb.__version__}"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionMissing(f"DuckDB extension {name!r} is not installed; run: {hint}")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        found = sorted(p.parent.name for p in root.glob("extensions/*/*.duckdb_extension"))
        raise ExtensionMissing(
            f"DuckDB {duckdb.__version__} needs extension {name!r} built for v{duckdb.__version__}, "
            f"but the installed wheel has {found or 'none'}; run: {hint}"
        )
    return path


def load_extensions(con: duckdb.DuckDBPyConnection, names: tuple[str, ...] = tuple(EXTENSION_PACKAGES)) -> None:
    """LOAD each extension straight from its wheel file (never from the network)."""
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    for name in names:
        con.execute(f"LOAD {quote_literal(str(extension_path(name)))}")
