"""A loopback webhook receiver that records what Prefect's notification blocks post."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[dict] = []
        self.paths: list[str] = []  # path and query string of each request (where a webhook's token lives)
        received, paths = self.received, self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                paths.append(self.path)
                try:
                    received.append(json.loads(body))
                except ValueError:
                    received.append({"raw": body.decode(errors="replace")})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, text: str, timeout: float = 90) -> dict:
        """The first message whose subject or body contains `text` (a test's patience, not a speed claim)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in list(self.received):
                if text in json.dumps(message):
                    return message
            time.sleep(0.2)
        raise AssertionError(f"no webhook message containing {text!r}; got {self.received}")

    def wait_after(self, action: Callable[[], object], text: str, attempts: int = 6, timeout: float = 20) -> dict:
        """Run `action` (which should make Prefect send an alert) until a message containing `text` arrives.

        The server loads a newly created automation a moment after it is created (longer on a busy machine); events
        it has not loaded for are not counted, so the action is repeated, at most `attempts` times.
        """
        for _ in range(attempts):
            action()
            try:
                return self.wait_for(text, timeout)
            except AssertionError:
                pass
        raise AssertionError(f"no webhook message containing {text!r} after {attempts} tries; got {self.received}")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
