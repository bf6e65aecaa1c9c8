"""What the fake SGLang server scripts (sglang_server.py, sglang_bench_server.py) share: the answer to eaglectl's
probe of the installed SGLang, the JSON reply, and a quiet exit on a forwarded signal. The scripts run as
`python tests/fakes/NAME.py`, so they import this module by its bare name from their own directory."""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def answer_probe(args):
    """`-c ...` is eaglectl's probe of the installed SGLang: answer "installed", with the version in
    FAKE_SGLANG_VERSION (default 0.5.15), and exit."""
    if args[:1] == ["-c"]:
        print(json.dumps({"installed": True, "version": os.environ.get("FAKE_SGLANG_VERSION", "0.5.15")}))
        sys.exit(0)


class JSONHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and replies with JSON bodies."""

    def log_message(self, *a):
        pass

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(host, port, handler):
    """Serve until SIGINT/SIGTERM, then exit quietly, as a server does on a forwarded signal."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: os._exit(0))
    ThreadingHTTPServer((host, port), handler).serve_forever()
