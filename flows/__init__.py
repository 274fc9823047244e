"""Prefect flows: bronze-flush and bronze-maintenance. Imported as `flusher.flows`."""
