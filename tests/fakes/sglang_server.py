"""Stands in for `python -m sglang.launch_server` in serve tests: /health and /generate on --host/--port.

FAKE_SGLANG_MODE=die exits before serving; FAKE_SGLANG_PIDFILE records the pid; FAKE_SGLANG_ACCEPT sets the
reported spec_accept_length. `-c ...` (eaglectl's probe of the installed SGLang) answers "installed", with the
version in FAKE_SGLANG_VERSION (default 0.5.15).
"""

import json
import os
import sys

from server_common import JSONHandler, answer_probe, serve

args = sys.argv[1:]
answer_probe(args)
if os.environ.get("FAKE_SGLANG_PIDFILE"):
    with open(os.environ["FAKE_SGLANG_PIDFILE"], "w") as fh:
        fh.write(str(os.getpid()))
with open(os.environ.get("FAKE_SGLANG_ARGV", os.devnull), "w") as fh:
    json.dump(args, fh)
print("fake sglang starting", flush=True)
if os.environ.get("FAKE_SGLANG_MODE") == "die":
    print("RuntimeError: fake failure during start-up", flush=True)
    sys.exit(3)
host, port = args[args.index("--host") + 1], int(args[args.index("--port") + 1])
accept = float(os.environ.get("FAKE_SGLANG_ACCEPT", "2.0"))


class Handler(JSONHandler):
    def do_GET(self):
        self._send(200 if self.path == "/health" else 404, {})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = body["sampling_params"]["max_new_tokens"]
        ids = body.get("input_ids") or [1, 2, 3]
        self._send(200, {"output_ids": [(ids[-1] + i) % 97 for i in range(n)],
                         "meta_info": {"completion_tokens": n, "spec_accept_length": accept,
                                       "spec_verify_ct": max(1, round(n / accept))}})


serve(host, port, Handler)
