"""A dataset mirror for tests: a 127.0.0.1 HTTP server for a few named archives.

It honours ``Range`` requests (so downloads can resume), can cut its first response halfway (an
interrupted transfer) or ignore ``Range``, records every request, and stops when its ``with``
block ends, or by itself after ``lifetime_s`` should a test hang.
"""

from __future__ import annotations

import http.server
import threading


class ArchiveServer:
    """Serves ``GET /<name>`` for each ``name`` of ``files``; any other path is a 404."""

    def __init__(self, files: dict[str, bytes], *, truncate_first: bool = False,
                 honour_range: bool = True, lifetime_s: float = 120.0) -> None:
        self.files = files
        self.truncate_first = truncate_first
        self.honour_range = honour_range
        self.lifetime_s = lifetime_s
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                header = self.headers.get("Range")
                server.requests.append((self.path, header))
                payload = server.files.get(self.path.lstrip("/"))
                if payload is None:
                    self.send_error(404)
                    return
                partial = header is not None and server.honour_range
                start = int(header.removeprefix("bytes=").rstrip("-")) if partial else 0
                if start >= len(payload) > 0:
                    self.send_error(416)
                    return
                body = payload[start:]
                self.send_response(206 if partial else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.truncate_first and len(server.requests) == 1:
                    body = body[: len(body) // 2]  # then hang up: an interrupted download
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._timer = threading.Timer(lifetime_s, self.httpd.shutdown)
        self._timer.daemon = True

    def url_of(self, name: str) -> str:
        """The URL of one served file."""
        return f"{self.base}/{name}"

    def __enter__(self) -> ArchiveServer:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
