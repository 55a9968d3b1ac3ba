"""A webhook for the notification tests: an HTTP server on 127.0.0.1 that keeps every POSTed JSON body (the sandbox
hosts share this machine's network, so they reach it too)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextlib.contextmanager
def webhook_server(path: str) -> Iterator[tuple[str, list[dict]]]:
    """Yields (its URL ending in PATH, the bodies posted so far)."""
    bodies: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}", bodies
    finally:
        server.shutdown()
        server.server_close()
