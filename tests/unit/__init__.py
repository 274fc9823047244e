"""Unit layer: no servers, no Prefect API; `make test-fast` runs it."""
