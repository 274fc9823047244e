"""A TCP proxy that adds network round-trip time and counts what crosses it, for the deployed-regime benchmark.

    python -m bench.proxy [--listen 15432] --target 127.0.0.1:5432 --rtt-ms 30 --kind postgres [--trace FILE]

Each direction delays every chunk by RTT/2 from the moment it arrived (order kept, bandwidth not limited), so a
request-response pair costs one RTT, as across a network. The proxy counts, from the client's bytes:
- postgres: statements (a simple 'Q' query or an extended-protocol 'E' execute) and round trips ('Q' or 'S' sync),
  with --trace writing each 'Q' text and each 'P' parse text to a file;
- s3: HTTP requests, by their request line (GET, PUT, POST, HEAD, DELETE).
It prints `ready LISTEN_PORT CONTROL_PORT` once listening. The control port answers `stats` with the counters
as JSON and `reset` by zeroing them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

_SPECIAL_STARTUP = {80877103, 80877104, 80877102}  # SSLRequest, GSSENCRequest, CancelRequest: no typed messages yet
_REQUEST_LINE = re.compile(rb"^(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/1\.[01]$")


@dataclass
class PostgresParser:
    """Follows one client's frontend protocol stream; counts statements and round trips."""

    counts: Counter = field(default_factory=Counter)
    trace: TextIO | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _started: bool = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if not self._started:
                if len(self._buffer) < 8:
                    return
                length, code = struct.unpack("!ii", self._buffer[:8])
                if len(self._buffer) < length:
                    return
                del self._buffer[:length]
                self._started = code not in _SPECIAL_STARTUP  # after an SSLRequest comes the real startup
                if self._started:
                    self.counts["connections"] += 1
                continue
            if len(self._buffer) < 5:
                return
            kind = chr(self._buffer[0])
            (length,) = struct.unpack("!i", self._buffer[1:5])
            if len(self._buffer) < 1 + length:
                return
            body = bytes(self._buffer[5 : 1 + length])
            del self._buffer[: 1 + length]
            self._message(kind, body)

    def _message(self, kind: str, body: bytes) -> None:
        if kind == "Q":
            self.counts["statements"] += 1
            self.counts["round_trips"] += 1
            self._trace("Q", body.rstrip(b"\0").decode(errors="replace"))
        elif kind == "E":
            self.counts["statements"] += 1
        elif kind == "S":
            self.counts["round_trips"] += 1
        elif kind == "P":
            name, _, rest = body.partition(b"\0")
            self._trace("P", rest.partition(b"\0")[0].decode(errors="replace"))

    def _trace(self, kind: str, text: str) -> None:
        if self.trace is not None:
            self.trace.write(f"{time.time():.3f} {kind} {' '.join(text.split())}\n")


@dataclass
class HttpParser:
    """Follows one client's HTTP/1.1 request stream (Content-Length bodies); counts requests by method."""

    counts: Counter = field(default_factory=Counter)
    trace: TextIO | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _body_left: int = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if self._body_left:
                skipped = min(self._body_left, len(self._buffer))
                del self._buffer[:skipped]
                self._body_left -= skipped
                if self._body_left:
                    return
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).split(b"\r\n")
            del self._buffer[: end + 4]
            match = _REQUEST_LINE.match(head[0])
            if match is None:
                continue  # not a request head (should not happen on a well-formed stream)
            method = match.group(1).decode()
            self.counts["requests"] += 1
            self.counts[method] += 1
            for line in head[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    self._body_left = int(value.strip() or 0)
            if self.trace is not None:
                self.trace.write(f"{time.time():.3f} {method} {match.group(2).decode(errors='replace')}\n")


class Proxy:
    """Forwards connections on `listen` to `target`, RTT/2 late each way, counting with one parser per connection."""

    def __init__(self, target: tuple[str, int], rtt_ms: float, kind: str, trace: TextIO | None = None) -> None:
        self.target = target
        self.delay = rtt_ms / 2000
        self.kind = kind
        self.trace = trace
        self.counts: Counter = Counter()

    def parser(self) -> PostgresParser | HttpParser:
        return (PostgresParser if self.kind == "postgres" else HttpParser)(self.counts, self.trace)

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        host, port = self.target
        try:
            if host.startswith("/"):  # a PostgreSQL socket folder, as libpq names it
                server_reader, server_writer = await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
            else:
                server_reader, server_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        parser = self.parser()
        await asyncio.gather(
            self._pipe(client_reader, server_writer, parser.feed),
            self._pipe(server_reader, client_writer, None),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, observe) -> None:
        """Copy reader to writer, each chunk written `delay` after it arrived; a queue keeps chunks in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            loop = asyncio.get_running_loop()
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.create_task(send())
        loop = asyncio.get_running_loop()
        try:
            while chunk := await reader.read(1 << 16):
                if observe is not None:
                    observe(chunk)
                queue.put_nowait((loop.time() + self.delay, chunk))
        finally:
            queue.put_nowait((0.0, b""))
            try:
                await sender
            finally:
                writer.close()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        command = (await reader.readline()).decode().strip()
        if command == "reset":
            self.counts.clear()
        writer.write((json.dumps(dict(self.counts)) + "\n").encode())
        await writer.drain()
        writer.close()


def ask(port: int, command: str) -> dict[str, int]:
    """Send `stats` or `reset` to a proxy's control port; returns its counters (before a reset)."""
    import socket

    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(command.encode() + b"\n")
        return json.loads(sock.makefile().readline())


@dataclass(frozen=True)
class RunningProxy:
    """A proxy subprocess: clients connect to `port`; `control` answers stats / reset."""

    port: int
    control: int

    def reset(self) -> None:
        ask(self.control, "reset")

    def stats(self) -> dict[str, int]:
        return ask(self.control, "stats")


@contextmanager
def running(target: str, rtt_ms: float, kind: str, trace: Path | None = None) -> Iterator[RunningProxy]:
    """Run a proxy in its own process (its event loop never waits on the benchmark's GIL); stop it on exit."""
    command = [sys.executable, "-m", "bench.proxy", "--target", target, "--rtt-ms", str(rtt_ms), "--kind", kind]
    proc = subprocess.Popen(
        command + (["--trace", str(trace)] if trace else []),
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        words = (proc.stdout.readline() if proc.stdout else "").split()
        if words[:1] != ["ready"]:
            raise RuntimeError(f"the {kind} proxy to {target} did not start (exit code {proc.poll()})")
        yield RunningProxy(int(words[1]), int(words[2]))
    finally:
        proc.terminate()
        proc.wait()


async def serve(args: argparse.Namespace) -> None:
    host, _, port = args.target.rpartition(":")
    trace = Path(args.trace).open("a", buffering=1) if args.trace else None  # noqa: SIM115 (open while serving)
    proxy = Proxy((host or "127.0.0.1", int(port)), args.rtt_ms, args.kind, trace)
    servers = [
        await asyncio.start_server(proxy.handle, "127.0.0.1", args.listen),
        await asyncio.start_server(proxy.control, "127.0.0.1", args.control),
    ]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(f"ready {ports[0]} {ports[1]}", flush=True)  # port 0 asks for a free one: the caller reads them here
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, default=0, help="local port to accept on (0: a free one)")
    parser.add_argument("--target", required=True, help="host:port to forward to (host: a socket folder too)")
    parser.add_argument("--rtt-ms", type=float, default=30.0, help="round-trip time to add (each way: half)")
    parser.add_argument("--kind", choices=("postgres", "s3"), required=True, help="what to count")
    parser.add_argument("--control", type=int, default=0, help="port answering `stats` / `reset` (0: a free one)")
    parser.add_argument("--trace", default=None, help="append each statement / request line to this file")
    asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
