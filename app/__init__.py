"""The application edge: command line, long-running service, demo, alerts, deployment and settings sources.

Imported as `flusher.app` (pyproject maps the folder into the one installed package).
"""
