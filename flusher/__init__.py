"""postgres-ducklake-flusher. This folder is the core (no Prefect); the folders beside it are mapped into the package.

pyproject.toml installs `tasks/`, `flows/`, `blocks/`, `app/` and `schema/` as `flusher.tasks`, `flusher.flows`, ...
When a process imports `flusher` from a checkout instead (its working directory on sys.path, as a Prefect worker
running `flows/bronze_flush.py` does), the same folders are found next to this one.
"""

from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
_MAPPED = ("tasks", "flows", "blocks", "app", "schema")
if all((_CHECKOUT / name / "__init__.py").is_file() for name in _MAPPED) and str(_CHECKOUT) not in __path__:
    __path__.append(str(_CHECKOUT))
