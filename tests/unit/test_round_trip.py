"""The catalog round-trip probe gives up quietly on a catalog it cannot reach: the lake's attach reports it."""

from __future__ import annotations

import socket

from flusher.round_trip import catalog_round_trip_ms


def test_an_unreachable_catalog_is_not_measured():
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        assert catalog_round_trip_ms(f"host=127.0.0.1 port={port} dbname=x user=x password=s3cret") is None
