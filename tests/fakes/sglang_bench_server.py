"""Stands in for `python -m sglang.launch_server` in bench tests: /health, streamed /generate, /get_server_info.

Without `--speculative-algorithm` it decodes one token per step (the baseline); with it, FAKE_SGLANG_ACCEPT
(JSON: config label "steps,topk,draft_tokens" -> whole tokens per verify step, default 2) tokens per step, and
meta_info carries spec_accept_length, spec_verify_ct and spec_accept_histogram (FAKE_SGLANG_NO_HISTOGRAM=1:
none). Each step sleeps FAKE_SGLANG_STEP_S seconds (default 0.002); FAKE_SGLANG_STEP_CYCLE="a,b,..." gives the
server's k-th request (the warm-up included) the step time of entry k mod the count instead (a noisy server).
Outputs are a function of the prompt;
FAKE_SGLANG_DIVERGE=1 makes speculative outputs differ from position 2 on (a drafter that breaks
verification). FAKE_SGLANG_FAIL="label;label" exits at start-up for those configs ("baseline" too).
FAKE_SGLANG_BARRIER=N holds every request of more than 8 new tokens until N are in flight (proves the
client's concurrency; the 8-token warm-up is exempt). FAKE_SGLANG_INCREMENTAL=1 streams only the new ids.
Logs: FAKE_SGLANG_PIDS (one pid per line), FAKE_SGLANG_ARGVS (one JSON argv per line), FAKE_SGLANG_REQLOG
(JSON lines: config, start, end wall-clock times). `-c ...` (the installed-SGLang probe) answers 0.5.15.
"""

import json
import os
import sys
import threading
import time

from server_common import JSONHandler, answer_probe, serve

args = sys.argv[1:]
answer_probe(args)


def _append(var, line):
    if os.environ.get(var):
        with open(os.environ[var], "a") as fh:
            fh.write(line + "\n")


def _flag(name):
    return args[args.index(name) + 1] if name in args else None


_append("FAKE_SGLANG_PIDS", str(os.getpid()))
_append("FAKE_SGLANG_ARGVS", json.dumps(args))
spec = "--speculative-algorithm" in args
label = ",".join(_flag(f) for f in ("--speculative-num-steps", "--speculative-eagle-topk",
                                    "--speculative-num-draft-tokens")) if spec else "baseline"
print(f"fake sglang starting ({label})", flush=True)
if label in os.environ.get("FAKE_SGLANG_FAIL", "").split(";"):
    print(f"RuntimeError: fake failure during start-up of {label}", flush=True)
    sys.exit(3)
host, port = _flag("--host"), int(_flag("--port"))
accept = int(json.loads(os.environ.get("FAKE_SGLANG_ACCEPT", "{}")).get(label, 2)) if spec else 1
step_s = float(os.environ.get("FAKE_SGLANG_STEP_S", "0.002"))
cycle = [float(x) for x in os.environ.get("FAKE_SGLANG_STEP_CYCLE", "").split(",") if x]
served = [0]
served_lock = threading.Lock()
barrier = threading.Barrier(int(os.environ["FAKE_SGLANG_BARRIER"])) if os.environ.get("FAKE_SGLANG_BARRIER") else None
diverge = spec and os.environ.get("FAKE_SGLANG_DIVERGE") == "1"


def outputs(prompt, n):
    seed = sum(prompt) if isinstance(prompt, list) else sum(map(ord, prompt))
    return [(seed + i * 7) % 97 + 3 + (50 if diverge and i >= 2 else 0) for i in range(n)]


class Handler(JSONHandler):
    def do_GET(self):
        if self.path == "/health":
            self._send(200, {})
        elif self.path == "/get_server_info":
            self._send(200, {"internal_states": [{"memory_usage": {"weight": 1.5 + (0.25 if spec else 0.0),
                                                                   "kvcache": 2.0, "token_capacity": 1000}}]})
        else:
            self._send(404, {})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        start = time.time()
        n = body["sampling_params"]["max_new_tokens"]
        prompt = body.get("input_ids") or body.get("text")
        if barrier is not None and n > 8:
            try:
                barrier.wait(timeout=20)
            except threading.BrokenBarrierError:
                self._send(500, {"error": "barrier: requests were not concurrent"})
                return
        out = outputs(prompt, n)
        with served_lock:
            k, served[0] = served[0], served[0] + 1
        step = cycle[k % len(cycle)] if cycle else step_s
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        done, steps, hist = 0, 0, [0] * accept
        while done < n:
            time.sleep(step)
            k = 1 if done == 0 else min(accept, n - done)  # the first token comes from prefill
            if done > 0:
                steps += 1
                hist[k - 1] += 1
            new = out[done:done + k]
            done += k
            meta = {"completion_tokens": done}
            if spec and done == n:
                steps = max(steps, 1)
                meta.update(spec_verify_ct=steps, spec_accept_length=round(n / steps, 6))
                if os.environ.get("FAKE_SGLANG_NO_HISTOGRAM") != "1":
                    meta["spec_accept_histogram"] = hist
            ids = new if os.environ.get("FAKE_SGLANG_INCREMENTAL") == "1" else out[:done]
            self.wfile.write(b"data: " + json.dumps({"output_ids": ids, "meta_info": meta}).encode() + b"\n\n")
            self.wfile.flush()
        # logged before [DONE]: once the client has its answer, the server may be stopped at any moment
        _append("FAKE_SGLANG_REQLOG", json.dumps({"config": label, "n": n, "start": start, "end": time.time()}))
        self.wfile.write(b"data: [DONE]\n\n")


serve(host, port, Handler)
