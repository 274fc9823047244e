"""Prefect tasks: each does one step of a flush and is callable as a plain function through `.fn`."""
