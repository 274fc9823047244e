"""Prefect layer: flows, tasks and blocks on prefect_test_harness (an in-process API), no separate server."""
