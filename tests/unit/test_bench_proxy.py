"""bench/proxy.py: what it counts from a PostgreSQL or HTTP byte stream, and that bytes cross it unchanged."""

from __future__ import annotations

import asyncio
import io
import struct

from bench.proxy import HttpParser, PostgresParser, Proxy


def _startup(code: int) -> bytes:
    return struct.pack("!ii", 8, code)


def _message(kind: str, body: bytes) -> bytes:
    return kind.encode() + struct.pack("!i", len(body) + 4) + body


def test_postgres_counts_simple_queries_executes_and_round_trips_across_chunk_boundaries():
    trace = io.StringIO()
    parser = PostgresParser(trace=trace)
    stream = (
        _startup(80877103)  # SSLRequest, answered 'N' by the server
        + struct.pack("!ii", 10, 196608)
        + b"u\0"  # the real startup message (protocol 3.0), one parameter byte pair
        + _message("Q", b"SELECT 1\0")
        + _message("P", b"\0SELECT  $1\0\0\0")
        + _message("B", b"\0\0\0\0\0\0\0")
        + _message("E", b"\0\0\0\0\0")
        + _message("S", b"")
        + _message("Q", b"BEGIN; COMMIT\0")
    )
    for i in range(0, len(stream), 3):  # the network splits messages anywhere
        parser.feed(stream[i : i + 3])
    assert dict(parser.counts) == {"connections": 1, "statements": 3, "round_trips": 3}
    assert [line.split(" ", 2)[1:] for line in trace.getvalue().splitlines()] == [
        ["Q", "SELECT 1"],
        ["P", "SELECT $1"],
        ["Q", "BEGIN; COMMIT"],
    ]


def test_http_counts_requests_by_method_and_skips_bodies_that_look_like_requests():
    parser = HttpParser()
    body = b"GET /inside-the-body HTTP/1.1\r\n\r\n"
    stream = (
        b"PUT /bronze/a.parquet HTTP/1.1\r\nHost: s3\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
        + b"GET /bronze/?list-type=2 HTTP/1.1\r\nHost: s3\r\n\r\n"
        + b"HEAD /bronze/a.parquet HTTP/1.1\r\nHost: s3\r\n\r\n"
    )
    for i in range(0, len(stream), 7):
        parser.feed(stream[i : i + 7])
    assert dict(parser.counts) == {"requests": 3, "PUT": 1, "GET": 1, "HEAD": 1}


def test_a_loopback_echo_crosses_the_proxy_unchanged_and_is_counted():
    async def scenario() -> tuple[bytes, dict]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
            writer.close()

        upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
        proxy = Proxy(upstream.sockets[0].getsockname()[:2], rtt_ms=10, kind="s3")
        front = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*front.sockets[0].getsockname()[:2])
        request = b"GET /bronze/x HTTP/1.1\r\nHost: s3\r\n\r\n"
        writer.write(request[:10])
        writer.write(request[10:])
        await writer.drain()
        echoed = await reader.readexactly(len(request))
        writer.close()
        front.close()
        upstream.close()
        return echoed, dict(proxy.counts)

    echoed, counts = asyncio.run(scenario())
    assert echoed == b"GET /bronze/x HTTP/1.1\r\nHost: s3\r\n\r\n"
    assert counts == {"requests": 1, "GET": 1}
